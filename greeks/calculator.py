"""Body: {"model": "black_scholes" | "black76" (default black_scholes), "rows": [...]}, at most
GREEKS_CALCULATOR_MAX_ROWS rows. Each row: option_type (call/put/c/p/CE/PE), underlying_price
(spot, or the forward for black76), strike, and either time_to_expiry (years, ACT/365) or expiry
(ISO date: to 15:30 Asia/Kolkata, from valuation_time or now); optional rate (default
RISK_FREE_RATE), dividend_yield (default DIVIDEND_YIELD); and exactly one of volatility (decimal:
price and Greeks) or option_price (implied volatility, then Greeks at it). Results come back in
order; an option whose IV has no solution has iv null and iv_reason saying why."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
from django.conf import settings

from greeks import engine
from greeks.engine.chain import year_fraction
from greeks.services import GREEK_NAMES, expiry_datetime
from signalsvc.api.errors import ApiError
from signalsvc.api.params import parse_time

ROW_FIELDS = {
    "option_type", "underlying_price", "strike", "time_to_expiry", "expiry", "valuation_time", "rate",
    "dividend_yield", "volatility", "option_price",
}  # fmt: skip
OPTION_TYPES = {"call", "put", "c", "p", "ce", "pe"}
MODELS = ("black_scholes", "black76")


def _number(row: dict, name: str, errors: list, *, positive: bool = False, default=None):
    value = row.get(name, default)
    if value is None:
        errors.append(f"{name} is required")
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors.append(f"{name} must be a finite number")
        return math.nan
    if positive and value <= 0:
        errors.append(f"{name} must be positive")
    return float(value)


def _parse_row(row, now: dt.datetime) -> tuple[tuple | None, list[str]]:
    if not isinstance(row, dict):
        return None, ["each row must be an object"]
    errors: list[str] = []
    unknown = sorted(set(row) - ROW_FIELDS)
    if unknown:
        errors.append(f"unknown fields {unknown}; allowed {sorted(ROW_FIELDS)}")
    option_type = row.get("option_type")
    if not isinstance(option_type, str) or option_type.lower() not in OPTION_TYPES:
        errors.append("option_type must be call or put (also c/p, CE/PE)")
    s = _number(row, "underlying_price", errors, positive=True)
    k = _number(row, "strike", errors, positive=True)
    if ("time_to_expiry" in row) == ("expiry" in row):
        errors.append("give exactly one of time_to_expiry (years) or expiry (ISO date)")
        t = math.nan
    elif "time_to_expiry" in row:
        t = _number(row, "time_to_expiry", errors)
        if t < 0:
            errors.append("time_to_expiry must be >= 0")
    else:
        try:
            expiry = dt.date.fromisoformat(str(row["expiry"]))
            valuation = parse_time("valuation_time", row.get("valuation_time"), required=False) or now
            t = float(year_fraction((expiry_datetime(expiry) - valuation).total_seconds()))
        except (ValueError, ApiError):
            errors.append("expiry must be an ISO date and valuation_time an ISO-8601 time")
            t = math.nan
    r = _number(row, "rate", errors, default=settings.RISK_FREE_RATE)
    q = _number(row, "dividend_yield", errors, default=settings.DIVIDEND_YIELD)
    if ("volatility" in row) == ("option_price" in row):
        errors.append("give exactly one of volatility or option_price")
        sigma = price = math.nan
    elif "volatility" in row:
        sigma, price = _number(row, "volatility", errors, positive=True), math.nan
    else:
        sigma, price = math.nan, _number(row, "option_price", errors, positive=True)
    if errors:
        return None, errors
    return (option_type.lower(), s, k, t, r, q, sigma, price), []


def calculate(payload, *, max_rows: int, now: dt.datetime | None = None) -> dict:
    if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list) or not payload["rows"]:
        raise ApiError(
            status_code=400, code="invalid_input", message='body must be {"model": ..., "rows": [...]}'
        )
    model = payload.get("model", "black_scholes")
    if model not in MODELS:
        raise ApiError(status_code=400, code="invalid_input", message=f"model must be one of {list(MODELS)}")
    rows = payload["rows"]
    if len(rows) > max_rows:
        raise ApiError(status_code=400, code="too_many_rows", message=f"at most {max_rows} rows per call")
    now = now or dt.datetime.now(dt.UTC)
    parsed, problems = [], []
    for index, row in enumerate(rows):
        values, errors = _parse_row(row, now)
        if errors:
            problems.append({"index": index, "errors": errors})
        else:
            parsed.append(values)
    if problems:
        raise ApiError(
            status_code=400,
            code="invalid_input",
            message="some rows are invalid",
            details={"rows": problems[:50]},
        )
    option_type, s, k, t, r, q, sigma, price = (np.array(column) for column in zip(*parsed, strict=True))
    wants_iv = np.isfinite(price)
    iv, reason = engine.implied_vol(price, option_type, s, k, t, r, q=q, model=model, return_reason=True)
    vol = np.where(wants_iv, iv, sigma)
    values = engine.greeks(option_type, s, k, t, r, vol, q=q, model=model)
    names = ("price", *GREEK_NAMES)
    columns = {name: values[name].tolist() for name in names}
    results = []
    for i in range(len(parsed)):
        item = {name: (columns[name][i] if math.isfinite(columns[name][i]) else None) for name in names}
        item["iv"] = float(vol[i]) if math.isfinite(vol[i]) else None
        if wants_iv[i]:
            item["iv_reason"] = engine.describe_reason(int(reason[i]))
        results.append(item)
    return {"model": model, "count": len(results), "results": results}
