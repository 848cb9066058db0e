"""Moneyness analytics of a priced chain, computed with the chain task from the arrays in memory
(never read back), stored every minute and kept latest in Redis (SPEC §7, docs/moneyness.md).

Pipeline, called by ``greeks.services.chain_compute``:

1. :func:`moneyness_derive` — per live expiry: the chain snapshot (sorted columns), the ATM IV
   record, the aggregated Greeks of ``MONEYNESS_STORED_LEVELS`` (the delta levels with their
   interpolated strikes); per underlying: the constant-maturity ATM IV.
   :func:`moneyness_smiles_fit` — the smile of every expiry (a step of its own: issue 8 budgets the
   analytics above, and the smile's cost is reported beside them).
2. :func:`moneyness_rows_store` — COPY into ``signal_moneyness_greeks``, ``signal_atm_iv`` and
   ``signal_atm_iv_cm``, in the chain's transaction, never over a row computed from newer data.
3. :func:`moneyness_latest_publish` — the latest chain of every expiry as one compact value and
   the latest analytics as JSON, in one Redis hash per underlying replaced atomically (and only
   by newer data), plus one update message per underlying for streaming.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import orjson
import redis
from django.conf import settings
from django.db import transaction

from moneyness.core import snapshot as snapshots
from moneyness.core.analytics import AtmIv, GreeksStats, LevelGreeks, atm_iv, levels_greeks
from moneyness.core.levels import Level, parse_level
from moneyness.core.smile import SviFit, fit_svi
from moneyness.core.snapshot import ChainSnapshot
from moneyness.core.term import ConstantMaturity, constant_maturity_iv, years_from_days
from moneyness.models import ATM_SIDE_FIELDS, GROUP_FIELDS, GROUPS
from signalsvc.core.numbers import finite_or_none
from signalsvc.db.copy import Upsert, copy_upsert_many
from signalsvc.db.partitions import partitions_ensure
from signalsvc.redis_clients import hash_replace_if_newer
from timeframes.core.buckets import aware_to_us

if TYPE_CHECKING:
    from greeks.services import PricedChain

GREEKS_TABLE = "signal_moneyness_greeks"
ATM_TABLE = "signal_atm_iv"
CM_TABLE = "signal_atm_iv_cm"
CHAIN_KEY_PREFIX = "mny:chain:"  # hash per underlying: <expiry ISO> / "front" -> snapshot, "latest" -> JSON
FRONT_FIELD = "front"
LATEST_FIELD = "latest"
UPDATES_CHANNEL_PREFIX = settings.PUBSUB_PREFIX + "signal:moneyness:"  # see settings.PUBSUB_PREFIX
LATEST_TTL_SECONDS = 7 * 86400
SNAPSHOT_COLUMNS = ("iv", "delta", "gamma", "theta", "vega", "rho", "vanna", "vomma", "charm")


@dataclass(frozen=True)
class ExpiryAnalytics:
    snapshot: ChainSnapshot
    atm: AtmIv
    option_count: int  # options of the expiry with an IV
    atm_call: int | None  # index in the snapshot of the ATM call / put (None when not listed)
    atm_put: int | None
    levels: list[LevelGreeks]
    smile: SviFit


@dataclass(frozen=True)
class MoneynessAnalytics:
    underlying_key: str
    underlying_id: int
    minute: dt.datetime
    source_ts: dt.datetime
    spot: float
    computed_at: dt.datetime
    expiries: list[ExpiryAnalytics]
    tenor_days: int
    constant_maturity: ConstantMaturity


# -- 1. derive ----------------------------------------------------------------------------------------


def chain_snapshots(*, chain: PricedChain) -> list[ChainSnapshot]:
    """One snapshot per live expiry (time to expiry > 0), nearest first; options sorted by strike,
    the call before the put."""
    out = []
    for expiry in sorted(set(chain.expiries)):
        t = chain.expiry_time(expiry)
        if not t > 0:
            continue  # expired today at 15:30: nothing to analyse, and not a "live" expiry
        index = np.flatnonzero(chain.expiry_days == np.datetime64(expiry))
        index = index[np.lexsort((~chain.is_call[index], chain.strikes[index]))]
        columns = {name: chain.values[name][index] for name in SNAPSHOT_COLUMNS if name != "iv"}
        columns.update(
            strike=chain.strikes[index], iv=chain.iv[index], option_price=chain.price[index],
            oi=chain.oi[index], instrument_id=chain.ids[index], is_call=chain.is_call[index],
        )  # fmt: skip
        out.append(
            ChainSnapshot(
                underlying_key=chain.underlying_key,
                expiry=expiry,
                minute=chain.minute,
                source_ts=chain.reference,
                spot=float(chain.spot),
                forward=float(chain.forward[index[0]]),
                forward_source=str(chain.forward_source[index[0]]),
                t=t,
                model=chain.model,
                columns=columns,
            )
        )
    return out


def smile_fit(snapshot: ChainSnapshot) -> SviFit:
    """Raw SVI through the out-of-the-money IVs (puts below the forward, calls above) of options
    priced at least ``MONEYNESS_SMILE_MIN_PRICE``, weighted by vega: a quote's price error moves its
    IV by about error / vega, and the IV of a price of a few ticks is mostly rounding (one tick of
    a 0.10 option is half its price)."""
    strikes, is_call, iv = snapshot.strikes, snapshot.is_call, snapshot.columns["iv"]
    priced = np.isfinite(iv) & (snapshot.columns["option_price"] >= settings.MONEYNESS_SMILE_MIN_PRICE)
    otm = np.where(is_call, strikes >= snapshot.forward, strikes < snapshot.forward) & priced
    vega = snapshot.columns["vega"][otm]
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.log(strikes[otm] / snapshot.forward)
    key = (snapshot.underlying_key, snapshot.expiry)
    weights = np.where(np.isfinite(vega), vega, 0.0)
    # A chain is computed in one place (its shard's worker), so this process holds the slice's last
    # fit. A minute later the slice has moved little: start from it alone, and keep the result when
    # it fits about as well as last time; otherwise (a jump, a stale start) fit from the grid too.
    last = _fits.get(key)
    fit = None
    if last is not None:
        fit = fit_svi(k, iv[otm], snapshot.t, weights=weights, previous=last.params, grid=False)
        if fit.status != "ok" or not fit.rmse_vol <= max(1.5 * last.rmse_vol, WARM_FIT_TOLERANCE_VOL):
            fit = None
    if fit is None:
        fit = fit_svi(k, iv[otm], snapshot.t, weights=weights, previous=last.params if last else None)
    if fit.params is not None:
        if len(_fits) > 4096:
            _fits.clear()
        _fits[key] = fit
    return fit


WARM_FIT_TOLERANCE_VOL = 0.001  # a warm refit within 0.1 vol points RMS is kept as it is
_fits: dict[tuple[str, dt.date], SviFit] = {}


def _atm_index(snapshot: ChainSnapshot, strike: float, call: bool) -> int | None:
    found = np.flatnonzero((snapshot.strikes == strike) & (snapshot.is_call == call))
    return int(found[0]) if found.size else None


def expiry_analytics(snapshot: ChainSnapshot, levels: Sequence[Level]) -> ExpiryAnalytics:
    strikes, is_call, forward = snapshot.strikes, snapshot.is_call, snapshot.forward
    values = snapshot.greeks()
    atm = atm_iv(strikes, is_call, forward, snapshot.t, values["iv"])
    return ExpiryAnalytics(
        snapshot=snapshot,
        atm=atm,
        option_count=int(np.isfinite(values["iv"]).sum()),
        atm_call=_atm_index(snapshot, atm.atm_strike, True),
        atm_put=_atm_index(snapshot, atm.atm_strike, False),
        levels=levels_greeks(list(levels), strikes, is_call, forward, values),
        smile=NOT_FITTED,
    )


NOT_FITTED = SviFit(None, math.nan, math.nan, 0, False, "not_fitted")


def moneyness_smiles_fit(*, analytics: MoneynessAnalytics) -> MoneynessAnalytics:
    """The analytics with the smile of every expiry fitted (:func:`smile_fit`)."""
    expiries = [dataclasses.replace(e, smile=smile_fit(e.snapshot)) for e in analytics.expiries]
    return dataclasses.replace(analytics, expiries=expiries)


def stored_levels() -> list[Level]:
    return _parsed_levels(tuple(settings.MONEYNESS_STORED_LEVELS))


@functools.lru_cache(maxsize=8)
def _parsed_levels(names: tuple[str, ...]) -> list[Level]:
    return [parse_level(name) for name in names]


def moneyness_derive(*, chain: PricedChain) -> MoneynessAnalytics:
    """Everything stored and published for one priced chain (pure computation on its arrays)."""
    levels = stored_levels()
    expiries = [expiry_analytics(s, levels) for s in chain_snapshots(chain=chain)]
    tenor = settings.MONEYNESS_CM_TENOR_DAYS
    cm = constant_maturity_iv(
        [e.snapshot.t for e in expiries], [e.atm.iv for e in expiries], target_t=years_from_days(tenor)
    )
    return MoneynessAnalytics(
        underlying_key=chain.underlying_key,
        underlying_id=chain.underlying_id,
        minute=chain.minute,
        source_ts=chain.reference,
        spot=float(chain.spot),
        computed_at=chain.computed_at,
        expiries=expiries,
        tenor_days=tenor,
        constant_maturity=cm,
    )


# -- 2. store -----------------------------------------------------------------------------------------


GREEKS_COLUMNS = [
    "underlying_id", "expiry", "level", "ts", "source_ts", "spot", "forward", "time_to_expiry",
    *(f"{g}_{f}" for g in GROUPS for f in (*GROUP_FIELDS, "count")),
    "strike_min", "strike_max", "strike_count",
    "call_interp_strike", "call_interp_iv", "put_interp_strike", "put_interp_iv", "computed_at",
]  # fmt: skip
ATM_COLUMNS = [
    "underlying_id", "expiry", "ts", "source_ts", "model", "underlying_price", "forward", "forward_source",
    "time_to_expiry", "atm_strike", "iv", "call_iv", "put_iv", "iv_skew", "lower_strike", "upper_strike",
    "option_count", "call_instrument_id", "put_instrument_id",
    *(f"{side}_{f}" for side in ("call", "put") for f in ATM_SIDE_FIELDS),
    "svi_a", "svi_b", "svi_rho", "svi_m", "svi_sigma", "svi_rmse_vol", "svi_points", "svi_status", "computed_at",
]  # fmt: skip
CM_COLUMNS = [
    "underlying_id", "tenor_days", "ts", "source_ts", "iv", "status", "lower_expiry", "upper_expiry",
    "lower_iv", "upper_iv", "weight", "computed_at",
]  # fmt: skip


def _stats_row(stats: GreeksStats) -> list:
    return [*(finite_or_none(getattr(stats, f)) for f in GROUP_FIELDS), stats.count]


def _level_row(a: MoneynessAnalytics, e: ExpiryAnalytics, lv: LevelGreeks) -> tuple:
    interp = lv.interpolated or {}
    picks = [interp.get(side) for side in ("call", "put")]
    snap = e.snapshot
    return (
        a.underlying_id, snap.expiry, lv.level, a.minute, a.source_ts, a.spot, finite_or_none(snap.forward), snap.t,
        *(v for g in GROUPS for v in _stats_row(lv.groups[g])),
        finite_or_none(lv.strike_min), finite_or_none(lv.strike_max), lv.strike_count,
        *(v for p in picks for v in ((p.interpolated_strike, p.interpolated_iv) if p else (None, None))),
        a.computed_at,
    )  # fmt: skip


def _side(e: ExpiryAnalytics, index: int | None) -> list:
    columns = e.snapshot.columns
    if index is None:
        return [None] * (1 + len(ATM_SIDE_FIELDS))
    return [
        int(columns["instrument_id"][index]),
        *(finite_or_none(columns[f][index]) for f in ATM_SIDE_FIELDS),
    ]


def _atm_row(a: MoneynessAnalytics, e: ExpiryAnalytics) -> tuple:
    snap, atm, fit = e.snapshot, e.atm, e.smile
    call, put = _side(e, e.atm_call), _side(e, e.atm_put)
    p = fit.params
    svi = [p.a, p.b, p.rho, p.m, p.sigma] if p is not None else [None] * 5
    return (
        a.underlying_id, snap.expiry, a.minute, a.source_ts, snap.model, a.spot, finite_or_none(snap.forward),
        snap.forward_source, snap.t, finite_or_none(atm.atm_strike), finite_or_none(atm.iv), finite_or_none(atm.call_iv),
        finite_or_none(atm.put_iv), finite_or_none(atm.skew), finite_or_none(atm.lower_strike), finite_or_none(atm.upper_strike),
        e.option_count, call[0], put[0], *call[1:], *put[1:],
        *svi, finite_or_none(fit.rmse_vol), fit.points, fit.status, a.computed_at,
    )  # fmt: skip


def _expiry_at(a: MoneynessAnalytics, index: int | None) -> ExpiryAnalytics | None:
    return a.expiries[index] if index is not None else None


def _cm_row(a: MoneynessAnalytics) -> tuple:
    cm = a.constant_maturity
    lower, upper = _expiry_at(a, cm.lower_index), _expiry_at(a, cm.upper_index)
    return (
        a.underlying_id, a.tenor_days, a.minute, a.source_ts, finite_or_none(cm.iv), cm.status,
        lower.snapshot.expiry if lower else None, upper.snapshot.expiry if upper else None,
        finite_or_none(lower.atm.iv) if lower else None, finite_or_none(upper.atm.iv) if upper else None,
        finite_or_none(cm.weight), a.computed_at,
    )  # fmt: skip


def _upsert(table: str, columns: list[str], key: list[str], rows: list[tuple]) -> Upsert:
    return Upsert(
        table=table,
        columns=columns,
        rows=rows,
        conflict=key,
        update_sql=", ".join(f"{c} = excluded.{c}" for c in columns if c not in key),
        where_sql="excluded.source_ts >= t.source_ts",
    )


def moneyness_rows_store(*, analytics: MoneynessAnalytics) -> None:
    """COPY this minute's rows of the three tables (in the fewest round trips); a row computed from
    older data than the stored one is left alone, so retried or stolen tasks are harmless."""
    a = analytics
    with transaction.atomic(savepoint=False):
        for table in (GREEKS_TABLE, ATM_TABLE, CM_TABLE):
            partitions_ensure(table=table, start=a.minute, end=a.minute)
        upserts = [_upsert(CM_TABLE, CM_COLUMNS, ["underlying_id", "tenor_days", "ts"], [_cm_row(a)])]
        if a.expiries:
            upserts += [
                _upsert(
                    GREEKS_TABLE,
                    GREEKS_COLUMNS,
                    ["underlying_id", "level", "expiry", "ts"],
                    [_level_row(a, e, lv) for e in a.expiries for lv in e.levels],
                ),
                _upsert(
                    ATM_TABLE,
                    ATM_COLUMNS,
                    ["underlying_id", "expiry", "ts"],
                    [_atm_row(a, e) for e in a.expiries],
                ),
            ]
        copy_upsert_many(upserts)


# -- 3. latest in Redis, and the update message ----------------------------------------------------------


def stats_json(stats: GreeksStats) -> dict:
    return {f: finite_or_none(getattr(stats, f)) for f in GROUP_FIELDS} | {"count": stats.count}


def level_json(lv: LevelGreeks) -> dict:
    out = {
        "aggregated_greeks": {g: stats_json(lv.groups[g]) for g in GROUPS},
        "strikes": {
            "min": finite_or_none(lv.strike_min),
            "max": finite_or_none(lv.strike_max),
            "count": lv.strike_count,
        },
    }
    if lv.interpolated is not None:
        out["interpolated"] = {
            side: {"strike": pick.interpolated_strike, "iv": pick.interpolated_iv}
            for side, pick in lv.interpolated.items()
        }
    return out


def atm_json(e: ExpiryAnalytics) -> dict:
    atm = e.atm
    return {
        "iv": finite_or_none(atm.iv),
        "call_iv": finite_or_none(atm.call_iv),
        "put_iv": finite_or_none(atm.put_iv),
        "iv_skew": finite_or_none(atm.skew),
        "forward": finite_or_none(atm.forward),
        "atm_strike": finite_or_none(atm.atm_strike),
        "bracket": {
            "lower_strike": finite_or_none(atm.lower_strike),
            "upper_strike": finite_or_none(atm.upper_strike),
        },
        "option_count": e.option_count,
    }


def smile_json(fit: SviFit) -> dict:
    return {
        "model": "svi_raw",
        "status": fit.status,
        "params": fit.params.as_dict() if fit.params is not None else None,
        "rmse_vol": finite_or_none(fit.rmse_vol),
        "max_abs_error_vol": finite_or_none(fit.max_abs_error_vol),
        "points": fit.points,
        "butterfly_arbitrage_free": fit.butterfly_arbitrage_free,
    }


def constant_maturity_json(a: MoneynessAnalytics) -> dict:
    cm = a.constant_maturity
    lower, upper = _expiry_at(a, cm.lower_index), _expiry_at(a, cm.upper_index)

    def bracket(e: ExpiryAnalytics | None) -> dict | None:
        if e is None:
            return None
        return {"expiry": e.snapshot.expiry.isoformat(), "t": e.snapshot.t, "iv": finite_or_none(e.atm.iv)}

    return {
        "tenor": f"{a.tenor_days}d",
        "tenor_days": a.tenor_days,
        "iv": finite_or_none(cm.iv),
        "status": cm.status,
        "method": "linear in total variance between the expiries bracketing the tenor",
        "lower": bracket(lower),
        "upper": bracket(upper),
        "weight_upper": finite_or_none(cm.weight),
    }


def latest_json(a: MoneynessAnalytics) -> dict:
    """The latest analytics of an underlying: what ``moneyness_latest_publish`` stores and
    publishes (the chains themselves travel as snapshots)."""
    return {
        "underlying": a.underlying_key,
        "minute": a.minute.isoformat(),
        "timestamp": a.source_ts.isoformat(),
        "spot_price": a.spot,
        "computed_at": a.computed_at.isoformat(),
        "expiries": [
            {
                "expiry": e.snapshot.expiry.isoformat(),
                "time_to_expiry": e.snapshot.t,
                "forward": finite_or_none(e.snapshot.forward),
                "forward_source": e.snapshot.forward_source,
                "atm_iv": atm_json(e),
                "smile": smile_json(e.smile),
                "levels": {lv.level: level_json(lv) for lv in e.levels},
            }
            for e in a.expiries
        ],
        "constant_maturity": constant_maturity_json(a),
    }


# Replace the underlying's hash only when the data is not older than what it holds; publish only
# what was written. KEYS[1] hash; ARGV: source µs, TTL, channel, message, then field/value pairs.
def chain_key(underlying_key: str) -> str:
    return CHAIN_KEY_PREFIX + underlying_key


def realtime_version_key(underlying_key: str) -> str:
    """The version of an underlying's moneyness snapshot, replaced with each snapshot (in the same
    atomic write): realtime moneyness responses are cached under it (signalsvc.api.response_cache)."""
    return "mny:ver:" + underlying_key


def moneyness_latest_publish(*, analytics: MoneynessAnalytics, client: redis.Redis) -> bool:
    """Store the latest snapshots and analytics of the underlying in one Redis hash, atomically and
    only when newer than what is there, and publish one update on ``signal:moneyness:<underlying>``.
    Returns whether it was written."""
    a = analytics
    payload = orjson.dumps(latest_json(a))
    fields: list[str | bytes] = [LATEST_FIELD, payload]
    for i, e in enumerate(a.expiries):
        blob = snapshots.encode(e.snapshot)
        fields += [e.snapshot.expiry.isoformat(), blob]
        if i == 0:
            fields += [FRONT_FIELD, blob]
    return hash_replace_if_newer(
        client,
        chain_key(a.underlying_key),
        source_us=aware_to_us(a.source_ts),
        ttl=LATEST_TTL_SECONDS,
        fields=fields,
        channel=UPDATES_CHANNEL_PREFIX + a.underlying_key,
        message=payload,
        # Realtime moneyness responses computed from the previous snapshot are stale now.
        version_key=realtime_version_key(a.underlying_key),
    )
