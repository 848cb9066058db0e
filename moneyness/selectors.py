"""Reads of the moneyness app.

Realtime: one Redis read (``HGET``/``HMGET`` of the underlying's hash) gives the latest chain
snapshot of an expiry and/or the latest analytics; any level, delta or tenor is then computed with
numpy. A realtime read never recomputes a chain and never reads one key per option.

Historical: the per-minute tables, bucketed at any timeframe by the timeframes capability
(``timeframes.selectors.bucketed_series``), over each session's front expiry or a pinned one.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from zoneinfo import ZoneInfo

import numpy as np
from cachetools import TTLCache
from django.conf import settings
from django.db import connection

from moneyness.core import snapshot as snapshots
from moneyness.core import summary
from moneyness.core.analytics import atm_iv, level_greeks, otm_by_delta
from moneyness.core.smile import SviParams
from moneyness.core.snapshot import ChainSnapshot
from moneyness.core.term import constant_maturity_iv, years_from_days
from moneyness.models import GROUP_FIELDS, GROUPS
from moneyness.services import FRONT_FIELD, LATEST_FIELD, chain_key, level_json
from signalsvc.core.calendar import Session
from signalsvc.core.keys import OPTIONS, SPOT, InvalidKey, format_strike, parse_key
from signalsvc.core.numbers import finite_or_none, finite_or_none_list
from signalsvc.instruments.selectors import instrument_ref
from signalsvc.redis_clients import redis_client
from timeframes.core.grammar import Timeframe
from timeframes.selectors import FRONTS_CTE, bucketed_series, front_expiries, fronts_params, market_calendar

DEFAULT_EXCHANGE = "NSE"


class NotAnUnderlying(ValueError):
    """A well-formed key of an option or future where an underlying is expected."""


class NoMoneynessData(LookupError):
    """Nothing computed yet for the underlying (or that expiry)."""


@dataclass(frozen=True)
class ExpiryNotLive(LookupError):
    """``expiry`` is not among the expiries with a live chain: ``expired`` tells whether it lies in
    the past (or expired today), ``live`` lists the expiries there are."""

    expiry: dt.date
    expired: bool
    live: list[dt.date]


@dataclass(frozen=True)
class Underlying:
    id: int
    key: str
    symbol: str


def underlying_get(text: str) -> Underlying:
    """``NIFTY`` (exchange NSE) or ``NSE@NIFTY@equity_spot``. InvalidKey when malformed,
    NotAnUnderlying for an option or future key, UnknownInstrument when not registered."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidKey(
            "empty underlying; expected a symbol such as NIFTY or a key such as NSE@NIFTY@equity_spot"
        )
    key_text = text.strip() if "@" in text else f"{DEFAULT_EXCHANGE}@{text.strip().upper()}@{SPOT}"
    parsed = parse_key(key_text)
    if parsed.product != SPOT:
        raise NotAnUnderlying(
            f"{text} is not an underlying: give a symbol (NIFTY) or an index/spot key (NSE@NIFTY@equity_spot)"
        )
    ref = instrument_ref(str(parsed))
    return Underlying(ref.id, ref.key, parsed.symbol)


def _client():
    return redis_client(decode_responses=False, socket_timeout=5.0)


def _live_expiries(latest: dict | None) -> list[dt.date]:
    if latest is None:
        return []
    return [dt.date.fromisoformat(e["expiry"]) for e in latest["expiries"]]


def _today() -> dt.date:
    return dt.datetime.now(ZoneInfo(settings.MARKET_TIMEZONE)).date()


def _expiry_error(underlying: Underlying, expiry: dt.date, latest: dict | None) -> Exception:
    live = _live_expiries(latest)
    if latest is None:
        return NoMoneynessData(f"no moneyness computed yet for {underlying.key}")
    expired = expiry < _today() or (bool(live) and expiry < live[0])
    return ExpiryNotLive(expiry, expired, live)


def latest_get(underlying: Underlying) -> dict:
    """The latest analytics of the underlying (``services.latest_json``): one HGET."""
    raw = _client().hget(chain_key(underlying.key), LATEST_FIELD)
    if raw is None:
        raise NoMoneynessData(f"no moneyness computed yet for {underlying.key}")
    return json.loads(raw)


def snapshot_get(underlying: Underlying, expiry: dt.date | None) -> ChainSnapshot:
    """The latest chain of ``expiry`` (None: the nearest live expiry): one HGET."""
    field = FRONT_FIELD if expiry is None else expiry.isoformat()
    raw = _client().hget(chain_key(underlying.key), field)
    if raw is None:
        raise _miss(underlying, expiry)
    return snapshots.decode(raw)


def snapshot_and_latest_get(underlying: Underlying, expiry: dt.date | None) -> tuple[ChainSnapshot, dict]:
    """The chain of ``expiry`` and the latest analytics, in one HMGET."""
    field = FRONT_FIELD if expiry is None else expiry.isoformat()
    raw, latest = _client().hmget(chain_key(underlying.key), [field, LATEST_FIELD])
    if raw is None or latest is None:
        raise _miss(underlying, expiry, json.loads(latest) if latest is not None else None)
    return snapshots.decode(raw), json.loads(latest)


def _miss(underlying: Underlying, expiry: dt.date | None, latest: dict | None = None) -> Exception:
    if expiry is None:
        return NoMoneynessData(f"no moneyness computed yet for {underlying.key}")
    if latest is None:  # the error path may cost a second read
        raw = _client().hget(chain_key(underlying.key), LATEST_FIELD)
        latest = json.loads(raw) if raw is not None else None
    return _expiry_error(underlying, expiry, latest)


# -- historical ------------------------------------------------------------------------------------------

LEVEL_VALUE_COLUMNS = tuple(f"{g}_{f}" for g in GROUPS for f in GROUP_FIELDS)
LEVEL_COUNT_COLUMNS = tuple(f"{g}_count" for g in GROUPS)
LEVEL_META = ("expiry", "spot", "forward", "time_to_expiry", "strike_min", "strike_max", "strike_count",
              "call_interp_strike", "call_interp_iv", "put_interp_strike", "put_interp_iv", "source_ts")  # fmt: skip
ATM_IV_VALUES = ("iv", "call_iv", "put_iv", "iv_skew", "forward", "atm_strike")
ATM_IV_META = ("expiry", "time_to_expiry", "option_count", "underlying_price", "source_ts")
CM_VALUES = ("iv", "lower_iv", "upper_iv", "weight")
CM_META = ("status", "lower_expiry", "upper_expiry", "source_ts")
KINDS = {
    "expiry": "date", "lower_expiry": "date", "upper_expiry": "date", "source_ts": "ts", "status": "text",
    "strike_count": "i8", "option_count": "i8", "all_count": "i8", "calls_count": "i8", "puts_count": "i8",
}  # fmt: skip


def _fronts(underlying: Underlying, start: dt.datetime, end: dt.datetime, expiry: dt.date | None):
    sessions = market_calendar().sessions_overlapping(start, end)
    return front_expiries(underlying_id=underlying.id, sessions=sessions, pinned=expiry)


def level_series_at(
    *,
    underlying: Underlying,
    level: str,
    timeframe: Timeframe,
    start: dt.datetime,
    end: dt.datetime,
    agg: str,
    expiry: dt.date | None,
) -> list[dict]:
    """Aggregated Greeks of a stored level per bucket, over each session's front expiry (or
    ``expiry``). Counts are the bucket's last observation whatever ``agg`` is."""
    fronts = _fronts(underlying, start, end, expiry)
    if not fronts:
        return []
    minute_sql = f"""
        {FRONTS_CTE}
        SELECT m.ts, {", ".join(f"m.{c}" for c in (*LEVEL_VALUE_COLUMNS, *LEVEL_COUNT_COLUMNS, *LEVEL_META))}
        FROM f JOIN signal_moneyness_greeks m
          ON m.underlying_id = %(uid)s AND m.level = %(level)s AND m.expiry = f.fx AND m.ts >= f.fo AND m.ts < f.fc
    """
    return bucketed_series(
        minute_sql=minute_sql,
        value_columns=LEVEL_VALUE_COLUMNS,
        kinds=KINDS,
        meta_columns=(*LEVEL_COUNT_COLUMNS, *LEVEL_META),
        timeframe=timeframe,
        agg=agg,
        sessions=[s for s, _ in fronts],
        params={"uid": underlying.id, "level": level, **fronts_params(fronts)},
        start=start,
        end=end,
    )


def atm_iv_series_at(
    *,
    underlying: Underlying,
    timeframe: Timeframe,
    start: dt.datetime,
    end: dt.datetime,
    agg: str,
    expiry: dt.date | None,
) -> list[dict]:
    """ATM IV per bucket over each session's front expiry (or ``expiry``)."""
    fronts = _fronts(underlying, start, end, expiry)
    if not fronts:
        return []
    minute_sql = f"""
        {FRONTS_CTE}
        SELECT a.ts, {", ".join(f"a.{c}" for c in (*ATM_IV_VALUES, *ATM_IV_META))}
        FROM f JOIN signal_atm_iv a
          ON a.underlying_id = %(uid)s AND a.expiry = f.fx AND a.ts >= f.fo AND a.ts < f.fc
    """
    return bucketed_series(
        minute_sql=minute_sql,
        value_columns=ATM_IV_VALUES,
        kinds=KINDS,
        meta_columns=ATM_IV_META,
        timeframe=timeframe,
        agg=agg,
        sessions=[s for s, _ in fronts],
        params={"uid": underlying.id, **fronts_params(fronts)},
        start=start,
        end=end,
    )


def constant_maturity_series_at(
    *,
    underlying: Underlying,
    tenor_days: int,
    timeframe: Timeframe,
    start: dt.datetime,
    end: dt.datetime,
    agg: str,
) -> list[dict]:
    sessions = market_calendar().sessions_overlapping(start, end)
    if not sessions:
        return []
    minute_sql = f"""
        SELECT c.ts, {", ".join(f"c.{x}" for x in (*CM_VALUES, *CM_META))} FROM signal_atm_iv_cm c
        WHERE c.underlying_id = %(uid)s AND c.tenor_days = %(tenor)s AND c.ts >= %(lo)s AND c.ts < %(hi)s
    """
    return bucketed_series(
        minute_sql=minute_sql,
        value_columns=CM_VALUES,
        kinds=KINDS,
        meta_columns=CM_META,
        timeframe=timeframe,
        agg=agg,
        sessions=sessions,
        params={"uid": underlying.id, "tenor": tenor_days},
        start=start,
        end=end,
    )


def series_statistics(values: Sequence[float | None]) -> dict:
    """mean, std (population), min, max, current (the last value), change (last − first) and
    change_pct over the non-null values; all null without values."""
    finite = np.array([v for v in values if v is not None], dtype=float)
    if finite.size == 0:
        return dict.fromkeys(("mean", "std", "min", "max", "current", "change", "change_pct"))
    first, last = float(finite[0]), float(finite[-1])
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "current": last,
        "change": last - first,
        "change_pct": (last - first) / first * 100.0 if first != 0 else None,
        "observations": int(finite.size),
    }


# -- summary inputs from the database (cached per process for a minute) ---------------------------------

# The summary's database reads change at most once a minute: cached briefly in each process.
_cache: TTLCache = TTLCache(maxsize=1024, ttl=30.0)
_cache_lock = threading.Lock()


def _cached(key: tuple, compute):
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    value = compute()
    with _cache_lock:
        _cache[key] = value
    return value


def session_volumes(*, instrument_ids: np.ndarray, at: dt.datetime) -> tuple[np.ndarray, Session | None]:
    """Volume traded in the session holding ``at`` (or the last one before it) per instrument, from
    the 1-minute bars; NaN for an instrument without a bar in it."""
    calendar = market_calendar()
    sessions = calendar.sessions_overlapping(at - dt.timedelta(days=7), at + dt.timedelta(minutes=1))
    started = [s for s in sessions if s.open <= at]
    if not started:
        return np.full(len(instrument_ids), np.nan), None
    session = started[-1]
    ids = [int(i) for i in instrument_ids]

    def query():
        with connection.cursor() as cur:
            cur.execute(
                "SELECT instrument_id, sum(volume) FROM market_bar_1m "
                "WHERE instrument_id = ANY(%s) AND ts >= %s AND ts < %s GROUP BY instrument_id",
                [ids, session.open, session.close],
            )
            return dict(cur.fetchall())

    totals = _cached(("volumes", tuple(ids), session.open, at.replace(second=0, microsecond=0)), query)
    return np.array([totals.get(i, np.nan) for i in ids], dtype=float), session


def constant_maturity_history(*, underlying: Underlying, tenor_days: int, lookback_days: int) -> np.ndarray:
    """The stored per-minute constant-maturity ATM IVs of the last ``lookback_days`` (oldest first)."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=lookback_days)
    minute = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)

    def query():
        with connection.cursor() as cur:
            cur.execute(
                "SELECT string_agg(float8send(iv), '' ORDER BY ts) FROM signal_atm_iv_cm "
                "WHERE underlying_id = %s AND tenor_days = %s AND ts >= %s AND iv IS NOT NULL",
                [underlying.id, tenor_days, since],
            )
            (blob,) = cur.fetchone()
        return np.frombuffer(blob, ">f8").astype(float) if blob else np.empty(0)

    return _cached(("cm_history", underlying.id, tenor_days, lookback_days, minute), query)


# -- realtime payloads ------------------------------------------------------------------------------------


class LevelBeyondChain(LookupError):
    """A level of listed-strike steps that lies beyond the chain's strikes on both sides."""


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def option_keys(underlying: Underlying, snap: ChainSnapshot, indices) -> list[str]:
    """The registry keys of the snapshot's options at ``indices`` (the canonical spelling of
    ``build_key``, composed without parsing each one back: they come from listed instruments)."""
    exchange = underlying.key.split("@", 1)[0]
    prefix = f"{exchange}@{underlying.symbol}@{OPTIONS}@{snap.expiry.isoformat()}@"
    return [
        f"{prefix}{'call' if snap.is_call[i] else 'put'}@{format_strike(float(snap.strikes[i]))}"
        for i in indices
    ]


def _head(underlying: Underlying, snap: ChainSnapshot) -> dict:
    return {
        "underlying": underlying.symbol,
        "underlying_key": underlying.key,
        "spot_price": snap.spot,
        "expiry": snap.expiry.isoformat(),
        "timestamp": _iso(snap.source_ts),
        "minute": _iso(snap.minute),
        "forward": finite_or_none(snap.forward),
        "forward_source": snap.forward_source,
        "time_to_expiry": snap.t,
    }


def level_greeks_realtime(
    *, underlying: Underlying, level, expiry: dt.date | None, include_instruments: bool = False
) -> dict:
    snap = snapshot_get(underlying, expiry)
    result = level_greeks(level, snap.strikes, snap.is_call, snap.forward, snap.greeks())
    if level.kind == "steps" and result.members.size == 0:
        raise LevelBeyondChain(
            f"{level.name} lies beyond the listed strikes of {snap.expiry} "
            f"({int(np.unique(snap.strikes).size)} strikes from {snap.strikes.min():g} to {snap.strikes.max():g})"
        )
    payload = _head(underlying, snap) | {"moneyness_level": level.name} | level_json(result)
    if include_instruments:
        members = result.members
        columns = zip(
            option_keys(underlying, snap, members), snap.strikes[members].tolist(),
            np.where(snap.is_call[members], "call", "put").tolist(),
            finite_or_none_list(snap.columns["iv"][members]), finite_or_none_list(snap.columns["delta"][members]),
            strict=True,
        )  # fmt: skip
        payload["instruments"] = [
            {"instrument_key": key, "strike": strike, "option_type": kind, "iv": iv, "delta": delta}
            for key, strike, kind, iv, delta in columns
        ]
    return payload


def atm_iv_realtime(*, underlying: Underlying, expiry: dt.date | None) -> dict:
    snap = snapshot_get(underlying, expiry)
    iv = snap.columns["iv"]
    atm = atm_iv(snap.strikes, snap.is_call, snap.forward, snap.t, iv)
    head = _head(underlying, snap)
    return {
        "underlying": head.pop("underlying"),
        "moneyness": "ATM",
        "expiry": head.pop("expiry"),
        "iv": finite_or_none(atm.iv),
        "call_iv": finite_or_none(atm.call_iv),
        "put_iv": finite_or_none(atm.put_iv),
        "iv_skew": finite_or_none(atm.skew),
        "forward": head.pop("forward"),
        "atm_strike": finite_or_none(atm.atm_strike),
        "timestamp": head.pop("timestamp"),
        "option_count": int(np.isfinite(iv).sum()),
        "bracket": {
            "lower_strike": finite_or_none(atm.lower_strike),
            "upper_strike": finite_or_none(atm.upper_strike),
        },
        **head,
    }


def atm_iv_tenor_realtime(*, underlying: Underlying, tenor_days: int) -> dict:
    """Constant-maturity ATM IV at ``tenor_days`` from the latest ATM IVs of every live expiry."""

    latest = latest_get(underlying)
    expiries = latest["expiries"]
    ivs = [e["atm_iv"]["iv"] for e in expiries]
    ts = [e["time_to_expiry"] for e in expiries]
    cm = constant_maturity_iv(
        ts, [np.nan if v is None else v for v in ivs], target_t=years_from_days(tenor_days)
    )

    def bracket(i):
        if i is None:
            return None
        return {"expiry": expiries[i]["expiry"], "time_to_expiry": ts[i], "iv": ivs[i]}

    return {
        "underlying": underlying.symbol,
        "underlying_key": underlying.key,
        "moneyness": "ATM",
        "tenor": f"{tenor_days}d",
        "tenor_days": tenor_days,
        "iv": finite_or_none(cm.iv),
        "status": cm.status,
        "method": "linear in total variance between the two expiries bracketing the tenor; never extrapolated",
        "lower": bracket(cm.lower_index),
        "upper": bracket(cm.upper_index),
        "weight_upper": finite_or_none(cm.weight),
        "spot_price": latest["spot_price"],
        "timestamp": latest["timestamp"],
        "minute": latest["minute"],
    }


def _option_json(underlying: Underlying, snap: ChainSnapshot, i: int) -> dict:
    return {
        "instrument_key": option_keys(underlying, snap, [i])[0],
        "strike": float(snap.strikes[i]),
        "option_price": finite_or_none(snap.columns["option_price"][i]),
        "greeks": {
            name: finite_or_none(snap.columns[name][i])
            for name in ("delta", "gamma", "theta", "vega", "rho", "vanna", "vomma", "charm", "iv")
        },
        "iv": finite_or_none(snap.columns["iv"][i]),
    }


def otm_delta_realtime(*, underlying: Underlying, delta: float, call: bool, expiry: dt.date | None) -> dict:
    snap = snapshot_get(underlying, expiry)
    cols = snap.columns
    pick = otm_by_delta(delta, call, snap.strikes, snap.is_call, snap.forward, cols["delta"], cols["iv"])
    head = _head(underlying, snap)
    option = _option_json(underlying, snap, pick.index) if pick.index is not None else None
    return {
        "underlying": head.pop("underlying"),
        "expiry": head.pop("expiry"),
        "delta_target": delta,
        "option_type": "call" if call else "put",
        "strike": option["strike"] if option else None,
        "instrument_key": option["instrument_key"] if option else None,
        "greeks": option["greeks"] if option else None,
        "iv": option["iv"] if option else None,
        "option_price": option["option_price"] if option else None,
        "interpolated": {"strike": pick.interpolated_strike, "iv": pick.interpolated_iv},
        "timestamp": head.pop("timestamp"),
        "note": None if option else "no out-of-the-money option of this type has a delta",
        **head,
    }


def smile_realtime(*, underlying: Underlying, expiry: dt.date | None) -> dict:
    """Every listed strike's out-of-the-money option (put below the forward, call at or above) with
    its IV and delta, the fitted smile of that minute and its value at each strike."""

    snap, latest = snapshot_and_latest_get(underlying, expiry)
    record = next((e for e in latest["expiries"] if e["expiry"] == snap.expiry.isoformat()), None)
    fit = record["smile"] if record is not None else None
    strikes, is_call = snap.strikes, snap.is_call
    otm = np.where(is_call, strikes >= snap.forward, strikes < snap.forward)
    index = np.flatnonzero(otm)
    k = np.log(strikes[index] / snap.forward)
    fitted = np.full(index.size, np.nan)
    if fit is not None and fit.get("params"):
        with np.errstate(invalid="ignore"):
            fitted = SviParams(**fit["params"]).implied_vol(k, snap.t)
    cols = snap.columns
    columns = zip(
        strikes[index].tolist(), np.where(is_call[index], "call", "put").tolist(), k.tolist(),
        finite_or_none_list(cols["iv"][index]), finite_or_none_list(cols["delta"][index]),
        finite_or_none_list(fitted), option_keys(underlying, snap, index),
        strict=True,
    )  # fmt: skip
    names = ("strike", "option_type", "log_moneyness", "iv", "delta", "fitted_iv", "instrument_key")
    points = [dict(zip(names, row, strict=True)) for row in columns]
    return _head(underlying, snap) | {
        "atm_iv": record["atm_iv"] if record else None,
        "fit": fit,
        "points": points,
    }


def summary_realtime(*, underlying: Underlying, expiry: dt.date | None, lookback_days: int = 365) -> dict:
    snap, latest = snapshot_and_latest_get(underlying, expiry)
    cols = snap.columns
    volume, session = session_volumes(instrument_ids=cols["instrument_id"], at=snap.source_ts)
    oi = cols["oi"]
    by_oi = summary.put_call_ratio(snap.is_call, oi)
    by_volume = summary.put_call_ratio(snap.is_call, volume)
    pain = summary.max_pain(snap.strikes, snap.is_call, oi)
    tenor = settings.MONEYNESS_CM_TENOR_DAYS
    cm = latest["constant_maturity"]
    history = constant_maturity_history(underlying=underlying, tenor_days=tenor, lookback_days=lookback_days)
    current = cm["iv"] if cm.get("tenor_days") == tenor else None
    rank = summary.iv_rank_percentile(history, np.nan if current is None else current)
    return _head(underlying, snap) | {
        "put_call_ratio": {
            "open_interest": summary_json(by_oi),
            "volume": summary_json(by_volume)
            | {
                "session": session.date.isoformat() if session else None,
                "source": "1-minute bars of the session",
            },
        },
        "max_pain": summary_json(pain),
        "iv_rank": {
            "tenor": f"{tenor}d",
            "current_iv": current,
            **summary_json(rank),
            "history": {
                "lookback_days": lookback_days,
                "observations": int(history.size),
                "sampling": "per minute",
            },
        },
        "moneyness_distribution": summary.band_distribution(
            snap.strikes, snap.is_call, snap.forward, oi, volume
        ),
    }


def summary_json(value) -> dict:
    return {k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in asdict(value).items()}
