"""Validation of bars posted to the API or read from CSV: every problem is reported with the
row it belongs to, and nothing is written unless every row is valid."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from signalsvc.core.keys import InvalidKey, parse_key

BAR_FIELDS = ("instrument_key", "timestamp", "open", "high", "low", "close", "volume", "oi")
REQUIRED = ("instrument_key", "timestamp", "open", "high", "low", "close")
MAX_REPORTED_ERRORS = 50


@dataclass(frozen=True)
class BarDraft:
    key: str
    ts: dt.datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    oi: float | None


def _number(row: dict, name: str, errors: list, *, allow_none: bool = False, text_ok: bool = False):
    value = row.get(name)
    if value is None or value == "":
        if allow_none:
            return None
        errors.append(f"{name} is required")
        return None
    if isinstance(value, str) and text_ok:
        try:
            value = float(value)
        except ValueError:
            errors.append(f"{name} must be a number, got '{value[:40]}'")
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.append(f"{name} must be a number, got {type(value).__name__}")
        return None
    value = float(value)
    if not math.isfinite(value):
        errors.append(f"{name} must be finite")
        return None
    return value


# The years the market calendar covers (as timeframes.apis reads them): a bar outside them could
# not be read back, and its month may have no partition bounds (December 9999 has no end).
EARLIEST = dt.datetime(1971, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2199, 1, 1, tzinfo=dt.UTC)


def parse_timestamp(value, market_tz: str) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("timestamp must be an ISO-8601 string")
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(market_tz))
    try:
        parsed = parsed.astimezone(dt.UTC)
    except OverflowError:  # a naive 0001-01-01 in the market's zone lies before datetime.min in UTC
        parsed = dt.datetime.min.replace(tzinfo=dt.UTC)
    if not EARLIEST <= parsed < LATEST:
        raise ValueError(f"timestamp must lie between {EARLIEST.date()} and {LATEST.date()} (UTC)")
    if parsed.second or parsed.microsecond:
        raise ValueError("timestamp must be a minute start (seconds = 0)")
    return parsed


def validate_bar(row, *, market_tz: str, from_text: bool = False) -> tuple[BarDraft | None, list[str]]:
    """One bar from a JSON object (or a CSV row when ``from_text``)."""
    if not isinstance(row, dict):
        return None, [f"each bar must be an object, got {type(row).__name__}"]
    errors: list[str] = []
    unknown = sorted(set(row) - set(BAR_FIELDS))
    if unknown:
        errors.append(f"unknown fields {unknown}; allowed {list(BAR_FIELDS)}")
    for name in REQUIRED:
        if row.get(name) in (None, ""):
            errors.append(f"{name} is required")
    key = row.get("instrument_key")
    if key not in (None, ""):
        if not isinstance(key, str):
            errors.append("instrument_key must be a string")
        else:
            try:
                key = str(parse_key(key))
            except InvalidKey as exc:
                errors.append(str(exc))
    ts = None
    if row.get("timestamp") not in (None, ""):
        try:
            ts = parse_timestamp(row["timestamp"], market_tz)
        except ValueError as exc:
            errors.append(f"timestamp: {exc}")
    values = {}
    for name in ("open", "high", "low", "close"):
        if row.get(name) not in (None, ""):
            values[name] = _number(row, name, errors, text_ok=from_text)
    volume = _number(row, "volume", errors, allow_none=True, text_ok=from_text)
    oi = _number(row, "oi", errors, allow_none=True, text_ok=from_text)
    if errors:
        return None, errors
    o, h, low, c = values["open"], values["high"], values["low"], values["close"]
    if min(o, h, low, c) <= 0:
        errors.append("prices must be positive")
    if h < max(o, c, low) or low > min(o, c):
        errors.append("need low <= open, close <= high")
    if volume is not None and volume < 0:
        errors.append("volume must be >= 0")
    if oi is not None and oi < 0:
        errors.append("oi must be >= 0")
    if errors:
        return None, errors
    return BarDraft(key, ts, o, h, low, c, volume or 0.0, oi), []


def validate_bars(rows, *, market_tz: str, from_text: bool = False, first_row: int = 0):
    """Validate all rows. Returns (drafts, errors) where errors is [{"index", "errors"}], capped."""
    drafts: list[BarDraft] = []
    problems: list[dict] = []
    seen: dict[tuple[str, dt.datetime], int] = {}  # (key, minute) -> row that first had it
    for index, row in enumerate(rows, start=first_row):
        draft, errors = validate_bar(row, market_tz=market_tz, from_text=from_text)
        if draft is not None:
            first = seen.setdefault((draft.key, draft.ts), index)
            if first != index:  # two bars for one minute: which one is meant is not ours to guess
                errors = [f"duplicate of row {first}: same instrument_key and minute {draft.ts.isoformat()}"]
        if errors:
            if len(problems) < MAX_REPORTED_ERRORS:
                problems.append({"index": index, "errors": errors})
            else:
                problems[-1:] = [{"index": "…", "errors": ["more rows have errors"]}]
        elif draft is not None:
            drafts.append(draft)
    return drafts, problems
