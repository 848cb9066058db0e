"""A month of history of the bench underlying ``NSE@BENCHMNY@equity_spot``, loaded into the bench
database for the historical endpoints (``bench_moneyness`` in-process, ``bench_serving`` under load).

* **ATM IV** (``signal_atm_iv``): the NSE sessions of the 30 calendar days before today
  (``get_calendar("NSE")``, 19-21 x 375 minutes), weekly (Tuesday) option expiries registered, one
  row per (expiry, minute) for every expiry listed that day (each expiry on or after the session's
  date), ~28,000 rows of realistic values (a random walk spot, forward, ATM/call/put IV with term
  structure and skew, Black-76 Greeks of the ATM call and put).
* **One option's day** (``greeks_option_1m``): the call at the last of those sessions' opening ATM
  strike, of the nearest expiry not before today (so the option is active), every minute of that
  session (375 rows), priced at a fixed strike from the same spot, forward and call IV.

Both are deterministic (seeded), loaded by COPY (``copy_upsert``) and reloaded only when not exactly
there, so a second run costs a few queries.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

IST = ZoneInfo("Asia/Kolkata")
HIST_SYMBOL = "BENCHMNY"
HIST_KEY = f"NSE@{HIST_SYMBOL}@equity_spot"
HIST_DAYS = 30
STRIKE_STEP = 50.0
RATE = 0.065
GREEK_NAMES = ("delta", "gamma", "theta", "vega", "rho", "vanna", "vomma", "charm")


@dataclass(frozen=True)
class OptionDay:
    """One option's 1-minute Greeks over one session: its key, the session's bounds, the rows."""

    key: str
    start: dt.datetime
    end: dt.datetime
    rows: int


def history_sessions():
    """The NSE sessions of the ``HIST_DAYS`` calendar days before today (whole days only, so the
    set is stable all day)."""
    from signalsvc.core.calendar import get_calendar

    today = dt.datetime.now(IST).date()
    end = dt.datetime.combine(today, dt.time(0), tzinfo=IST)
    return get_calendar("NSE").sessions_overlapping(end - dt.timedelta(days=HIST_DAYS), end)


def expiries(sessions) -> list[dt.date]:
    """Weekly expiries (Tuesday; the previous session when the Tuesday is a holiday) from the
    first session's week to the first one after the last session, and one more."""
    from signalsvc.core.calendar import get_calendar

    calendar = get_calendar("NSE")
    day = sessions[0].date + dt.timedelta(days=(1 - sessions[0].date.weekday()) % 7)
    out: list[dt.date] = []
    while len([e for e in out if e > sessions[-1].date]) < 2:
        before = calendar.sessions(day - dt.timedelta(days=6), day)
        out.append(before[-1].date if before else day)
        day += dt.timedelta(days=7)
    return out


def _expiry_instant(expiry: dt.date) -> np.datetime64:
    from greeks.services import expiry_datetime

    return np.datetime64(expiry_datetime(expiry).astimezone(dt.UTC).replace(tzinfo=None), "us")


def history_frame(sessions, expiry_dates) -> dict[str, np.ndarray]:
    """Per (expiry, minute) columns of ``signal_atm_iv``, deterministic (seeded)."""
    from greeks import engine
    from greeks.engine.chain import year_fraction

    minute = dt.timedelta(minutes=1)
    stamps = [s.open + i * minute for s in sessions for i in range(s.minutes)]
    days = np.array([s.date for s in sessions for _ in range(s.minutes)], dtype="datetime64[D]")
    ts = np.array([t.replace(tzinfo=None) for t in stamps], dtype="datetime64[us]")
    rng = np.random.default_rng(8)
    n = ts.size
    spot = 24_000.0 + np.cumsum(rng.normal(0.0, 4.0, n))
    level = np.clip(0.13 + np.cumsum(rng.normal(0.0, 0.0004, n)), 0.08, 0.30)  # short-dated ATM vol
    parts: dict[str, list[np.ndarray]] = {}
    for expiry in expiry_dates:
        live = days <= np.datetime64(expiry)
        if not live.any():
            continue
        t = year_fraction((_expiry_instant(expiry) - ts[live]) / np.timedelta64(1, "s"))
        s = spot[live]
        forward = s * np.exp(RATE * t)
        m = int(live.sum())
        iv = level[live] + 0.01 * np.sqrt(t) + rng.normal(0.0, 0.0015, m)  # term structure, noise
        call_iv = iv - 0.0015 + rng.normal(0.0, 0.0005, m)
        put_iv = iv + 0.0015 + rng.normal(0.0, 0.0005, m)
        strike = np.round(forward / STRIKE_STEP) * STRIKE_STEP
        lower = np.floor(forward / STRIKE_STEP) * STRIKE_STEP
        call = engine.greeks("call", forward, strike, t, RATE, call_iv, model="black76")
        put = engine.greeks("put", forward, strike, t, RATE, put_iv, model="black76")
        columns = {
            "ts": ts[live], "expiry": np.full(m, np.datetime64(expiry)), "underlying_price": s,
            "forward": forward, "time_to_expiry": t, "atm_strike": strike, "iv": iv, "call_iv": call_iv,
            "put_iv": put_iv, "iv_skew": put_iv - call_iv, "lower_strike": lower,
            "upper_strike": lower + STRIKE_STEP, "option_count": 290 - rng.integers(0, 8, m),
        }  # fmt: skip
        for side, values in (("call", call), ("put", put)):
            for name in GREEK_NAMES:
                columns[f"{side}_{name}"] = values[name]
            columns[f"{side}_option_price"] = values["price"]
        for name, values in columns.items():
            parts.setdefault(name, []).append(values)
    return {name: np.concatenate(values) for name, values in parts.items()}


def _stamps(values: np.ndarray) -> list[dt.datetime]:
    return [t.replace(tzinfo=dt.UTC) for t in values.astype(dt.datetime)]


def _upsert(*, table: str, columns, rows, key: list[str], delete_sql: str, params, start, end) -> None:
    """Replace the rows that ``delete_sql`` selects with ``rows`` (COPY), then ANALYZE."""
    from django.db import connection, transaction

    from signalsvc.db.copy import copy_upsert
    from signalsvc.db.partitions import partitions_ensure

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(delete_sql, params)
        partitions_ensure(table=table, start=start, end=end)
        copy_upsert(
            table=table,
            columns=columns,
            rows=rows,
            conflict=key,
            update_sql=", ".join(f"{c} = excluded.{c}" for c in columns if c not in key),
        )
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {table}")


def history_load(sessions) -> tuple[int, int]:
    """The bench underlying, its options and its ATM IV rows (reloaded only when not exactly
    there). Returns (underlying id, rows)."""
    from django.db import connection

    from moneyness.services import ATM_COLUMNS, ATM_TABLE
    from signalsvc.core.keys import OPTIONS, InstrumentSpec, build_key
    from signalsvc.instruments.models import Instrument
    from signalsvc.instruments.services import instruments_upsert

    expiry_dates = expiries(sessions)
    frame = history_frame(sessions, expiry_dates)
    today = dt.datetime.now(IST).date()
    strikes = np.arange(
        frame["atm_strike"].min() - 10 * STRIKE_STEP,
        frame["atm_strike"].max() + 11 * STRIKE_STEP,
        STRIKE_STEP,
    )
    specs = [InstrumentSpec.from_key(HIST_KEY)] + [
        InstrumentSpec.from_key(
            build_key("NSE", HIST_SYMBOL, OPTIONS, e, side, float(k)), lot_size=75, active=e >= today
        )
        for e in expiry_dates
        for k in strikes
        for side in ("call", "put")
    ]
    instruments_upsert(specs=specs)
    underlying_id = Instrument.objects.get(key=HIST_KEY).id
    n = frame["ts"].size
    first = frame["ts"].min().astype(dt.datetime).replace(tzinfo=dt.UTC)
    last = frame["ts"].max().astype(dt.datetime).replace(tzinfo=dt.UTC)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT count(*), min(ts), max(ts), sum(iv) FROM {ATM_TABLE} WHERE underlying_id = %s",
            [underlying_id],
        )
        count, lo, hi, iv_sum = cur.fetchone()
    if count == n and lo == first and hi == last and abs((iv_sum or 0.0) - frame["iv"].sum()) < 1e-6 * n:
        return underlying_id, n

    ids = {
        (expiry, option_type, float(strike)): i
        for i, expiry, option_type, strike in Instrument.objects.filter(
            symbol=HIST_SYMBOL, product=OPTIONS
        ).values_list("id", "expiry", "option_type", "strike")
    }
    stamps = _stamps(frame["ts"])
    expiry_list = frame["expiry"].astype(object).tolist()
    strike_list = frame["atm_strike"].tolist()
    written = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    columns = {name: values.tolist() for name, values in frame.items() if name not in ("ts", "expiry")}
    columns.update(
        underlying_id=[underlying_id] * n,
        expiry=expiry_list,
        ts=stamps,
        source_ts=[t + dt.timedelta(seconds=12) for t in stamps],
        model=["black76"] * n,
        forward_source=["future"] * n,
        call_instrument_id=[ids[(e, "call", k)] for e, k in zip(expiry_list, strike_list, strict=True)],
        put_instrument_id=[ids[(e, "put", k)] for e, k in zip(expiry_list, strike_list, strict=True)],
        svi_points=[0] * n,  # the smile fit is not read by these endpoints
        svi_status=["not_loaded"] * n,
        computed_at=[written] * n,
    )
    for name in ("svi_a", "svi_b", "svi_rho", "svi_m", "svi_sigma", "svi_rmse_vol"):
        columns[name] = [None] * n
    _upsert(
        table=ATM_TABLE,
        columns=ATM_COLUMNS,
        rows=list(zip(*(columns[c] for c in ATM_COLUMNS), strict=True)),
        key=["underlying_id", "expiry", "ts"],
        delete_sql=f"DELETE FROM {ATM_TABLE} WHERE underlying_id = %s",
        params=[underlying_id],
        start=first,
        end=last,
    )
    return underlying_id, n


def option_day_load(sessions) -> OptionDay:
    """The 1-minute Greeks of one bench option over the last of ``sessions`` (see the module
    docstring), reloaded only when not exactly there. Call after ``history_load``, which registers
    the option."""
    from django.db import connection

    from greeks import engine
    from greeks.services import COLUMNS, TABLE
    from signalsvc.core.keys import OPTIONS, build_key
    from signalsvc.instruments.models import Instrument

    session = sessions[-1]
    today = dt.datetime.now(IST).date()
    expiry_dates = expiries(sessions)
    expiry = min((e for e in expiry_dates if e >= today), default=None)
    if expiry is None:
        raise RuntimeError(f"no bench expiry on or after {today} in {expiry_dates}")
    frame = history_frame(sessions, expiry_dates)
    day = np.datetime64(session.open.replace(tzinfo=None), "us")
    close = np.datetime64(session.close.replace(tzinfo=None), "us")
    rows_of = (frame["expiry"] == np.datetime64(expiry)) & (frame["ts"] >= day) & (frame["ts"] < close)
    ts = frame["ts"][rows_of]
    strike = float(frame["atm_strike"][rows_of][0])  # the opening ATM strike, held all day
    key = build_key("NSE", HIST_SYMBOL, OPTIONS, expiry, "call", strike)
    instrument_id = Instrument.objects.get(key=key).id
    underlying_id = Instrument.objects.get(key=HIST_KEY).id
    n = ts.size
    stamps = _stamps(ts)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT count(*), min(ts), max(ts) FROM {TABLE} WHERE instrument_id = %s",
            [instrument_id],
        )
        count, lo, hi = cur.fetchone()
    if count == n and lo == stamps[0] and hi == stamps[-1]:
        return OptionDay(key, session.open, session.close, n)

    forward, t, iv = (frame[c][rows_of] for c in ("forward", "time_to_expiry", "call_iv"))
    values = engine.greeks("call", forward, np.full(n, strike), t, RATE, iv, model="black76")
    written = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    columns = {
        "instrument_id": [instrument_id] * n, "ts": stamps, "underlying_id": [underlying_id] * n,
        "expiry": [expiry] * n, "strike": [strike] * n, "option_type": ["call"] * n,
        "model": ["black76"] * n, "source_ts": [s + dt.timedelta(seconds=12) for s in stamps],
        "underlying_price": frame["underlying_price"][rows_of].tolist(), "forward": forward.tolist(),
        "forward_source": ["future"] * n, "option_price": values["price"].tolist(),
        "price_source": ["mid"] * n, "time_to_expiry": t.tolist(), "iv": iv.tolist(), "iv_reason": [0] * n,
        **{name: values[name].tolist() for name in GREEK_NAMES}, "computed_at": [written] * n,
    }  # fmt: skip
    _upsert(
        table=TABLE,
        columns=COLUMNS,
        rows=list(zip(*(columns[c] for c in COLUMNS), strict=True)),
        key=["instrument_id", "ts"],
        delete_sql=f"DELETE FROM {TABLE} WHERE instrument_id = %s",
        params=[instrument_id],
        start=stamps[0],
        end=stamps[-1],
    )
    return OptionDay(key, session.open, session.close, n)
