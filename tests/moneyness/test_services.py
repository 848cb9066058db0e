"""Moneyness computed with the chain, on the simulated market, checked against its true surface
(``DemoMarket.truth()``): ATM IV, the 25-delta put, the smile fit and the 30-day value."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math

import numpy as np
import pytest
from django.conf import settings
from django.db import connection

from greeks.services import chain_compute
from moneyness.core import snapshot as snapshots
from moneyness.core.smile import SviParams
from moneyness.services import CHAIN_KEY_PREFIX, FRONT_FIELD, LATEST_FIELD, UPDATES_CHANNEL_PREFIX
from signalsvc.simulator.surface import ssvi_total_variance

pytestmark = pytest.mark.django_db

UNDERLYINGS = {"NIFTY": "NSE@NIFTY@equity_spot", "BANKNIFTY": "NSE@BANKNIFTY@equity_spot"}
ONE_DAY = 1 / 365


def _rows(sql: str, params=()) -> list[dict]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        names = [c.name for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


@pytest.fixture
def computed(demo_market, redis_client):
    for key in UNDERLYINGS.values():
        chain_compute(underlying_key=key, client=redis_client)
    return demo_market.truth()


def _true_vol(expiry_truth: dict, strike: float) -> float:
    s = expiry_truth["surface"]
    k = math.log(strike / expiry_truth["forward"])
    w = float(ssvi_total_variance(k, s["theta"], s["rho"], s["eta"], s["gamma"]))
    return math.sqrt(w / expiry_truth["t"])


def _live_expiries(truth: dict, symbol: str) -> list[dict]:
    return [e for e in truth["underlyings"][symbol]["expiries"].values() if e["t"] > ONE_DAY]


def test_every_stored_level_of_every_live_expiry_is_written_once(computed):
    for symbol, key in UNDERLYINGS.items():
        expiries = _live_expiries(computed, symbol)
        rows = _rows(
            "SELECT m.level, m.expiry FROM signal_moneyness_greeks m JOIN instruments_instrument i "
            "ON i.id = m.underlying_id WHERE i.key = %s",
            [key],
        )
        stored = {(r["level"], r["expiry"].isoformat()) for r in rows}
        expected = {(lv, e["expiry"]) for lv in settings.MONEYNESS_STORED_LEVELS for e in expiries}
        assert stored == expected
        assert len(rows) == len(expected)


@pytest.mark.parametrize("symbol", UNDERLYINGS)
def test_atm_iv_recovers_the_true_atm_vol_of_every_expiry(computed, symbol):
    rows = {
        r["expiry"].isoformat(): r
        for r in _rows(
            "SELECT a.* FROM signal_atm_iv a JOIN instruments_instrument i ON i.id = a.underlying_id WHERE i.key = %s",
            [UNDERLYINGS[symbol]],
        )
    }
    expiries = _live_expiries(computed, symbol)
    assert len(expiries) >= 3
    for truth in expiries:
        row = rows[truth["expiry"]]
        assert row["iv"] == pytest.approx(truth["atm_vol"], abs=0.0025), truth["expiry"]
        assert row["lower_strike"] <= row["forward"] <= row["upper_strike"]
        assert row["iv_skew"] == pytest.approx(row["put_iv"] - row["call_iv"])
        assert row["option_count"] > 100


@pytest.mark.parametrize("symbol", UNDERLYINGS)
def test_the_25_delta_put_iv_is_the_true_vol_at_its_interpolated_strike(computed, symbol):
    rows = {
        r["expiry"].isoformat(): r
        for r in _rows(
            "SELECT m.* FROM signal_moneyness_greeks m JOIN instruments_instrument i ON i.id = m.underlying_id "
            "WHERE i.key = %s AND m.level = 'OTM25delta'",
            [UNDERLYINGS[symbol]],
        )
    }
    for truth in _live_expiries(computed, symbol):
        row = rows[truth["expiry"]]
        strike = row["put_interp_strike"]
        assert strike < truth["forward"]
        assert row["put_interp_iv"] == pytest.approx(_true_vol(truth, strike), abs=0.005), truth["expiry"]
        assert row["puts_count"] == 1 and row["calls_count"] == 1
        assert abs(row["puts_delta"]) == pytest.approx(0.25, abs=0.05)


@pytest.mark.parametrize("symbol", UNDERLYINGS)
def test_the_smile_fit_is_within_0_3_vol_points_rms_of_the_true_vols(computed, symbol):
    rows = {
        r["expiry"].isoformat(): r
        for r in _rows(
            "SELECT a.* FROM signal_atm_iv a JOIN instruments_instrument i ON i.id = a.underlying_id WHERE i.key = %s",
            [UNDERLYINGS[symbol]],
        )
    }
    tick = computed["tick_size"]
    for truth in _live_expiries(computed, symbol):
        row = rows[truth["expiry"]]
        assert row["svi_status"] == "ok"
        params = SviParams(row["svi_a"], row["svi_b"], row["svi_rho"], row["svi_m"], row["svi_sigma"])
        forward = truth["forward"]
        otm = [
            o
            for o in truth["options"].values()
            if (o["type"] == "call") == (o["strike"] >= forward) and o["price"] >= 20 * tick
        ]
        assert len(otm) > 30
        strikes = np.array([o["strike"] for o in otm])
        true = np.array([o["vol"] for o in otm])
        fitted = params.implied_vol(np.log(strikes / row["forward"]), row["time_to_expiry"])
        rms = float(np.sqrt(np.mean((fitted - true) ** 2)))
        assert rms < 0.003, (truth["expiry"], rms)


def test_the_30_day_value_lies_between_its_bracketing_expiries_in_total_variance(computed):
    rows = _rows(
        "SELECT c.*, i.key FROM signal_atm_iv_cm c JOIN instruments_instrument i ON i.id = c.underlying_id"
    )
    by_key = {r["key"]: r for r in rows}
    nifty = by_key[UNDERLYINGS["NIFTY"]]
    assert nifty["status"] == "interpolated"
    expiries = computed["underlyings"]["NIFTY"]["expiries"]
    lower, upper = expiries[nifty["lower_expiry"].isoformat()], expiries[nifty["upper_expiry"].isoformat()]
    t30 = 30 / 365
    assert lower["t"] <= t30 <= upper["t"]
    w30 = nifty["iv"] ** 2 * t30
    w_lower, w_upper = nifty["lower_iv"] ** 2 * lower["t"], nifty["upper_iv"] ** 2 * upper["t"]
    assert min(w_lower, w_upper) <= w30 <= max(w_lower, w_upper)
    weight = (t30 - lower["t"]) / (upper["t"] - lower["t"])
    assert w30 == pytest.approx(w_lower + weight * (w_upper - w_lower), rel=1e-3)
    # BANKNIFTY lists monthlies only; on this date all of them lie beyond 30 days: no value, and why.
    banknifty = by_key[UNDERLYINGS["BANKNIFTY"]]
    assert (banknifty["iv"], banknifty["status"]) == (None, "only_longer_expiries")


def test_the_latest_chain_of_every_expiry_is_one_compact_value_in_redis(computed, redis_client):
    import redis as redis_lib

    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    fields = client.hgetall(CHAIN_KEY_PREFIX + UNDERLYINGS["NIFTY"])
    latest = json.loads(fields[LATEST_FIELD.encode()])
    expiries = [e["expiry"] for e in latest["expiries"]]
    assert sorted(expiries) == expiries and len(expiries) >= 3
    front = snapshots.decode(fields[FRONT_FIELD.encode()])
    assert front.expiry.isoformat() == expiries[0]
    for expiry in expiries:
        snap = snapshots.decode(fields[expiry.encode()])
        assert len(snap) > 100
        assert (np.diff(snap.strikes) >= 0).all()
        assert snap.is_call[::2].all() and not snap.is_call[1::2].any()  # call then put at each strike
    client.close()


def test_an_older_computation_never_replaces_the_latest_in_redis(demo_market, redis_client):
    import redis as redis_lib

    from greeks.services import chain_price
    from moneyness.services import moneyness_derive, moneyness_latest_publish

    chain = chain_price(underlying_key=UNDERLYINGS["NIFTY"], client=redis_client)
    analytics = moneyness_derive(chain=chain)
    assert moneyness_latest_publish(analytics=analytics, client=redis_client) is True
    older = dataclasses.replace(analytics, source_ts=analytics.source_ts - dt.timedelta(seconds=5))
    assert moneyness_latest_publish(analytics=older, client=redis_client) is False
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    latest = json.loads(client.hget(CHAIN_KEY_PREFIX + UNDERLYINGS["NIFTY"], LATEST_FIELD))
    assert latest["timestamp"] == analytics.source_ts.isoformat()
    client.close()


def test_one_update_per_underlying_is_published(demo_market, redis_client):
    """Pub/sub channels are shared by every Redis database, so a parallel test worker may publish
    on the same channel: this computation's message is told apart by its computed_at."""
    pubsub = redis_client.pubsub()
    pubsub.subscribe(UPDATES_CHANNEL_PREFIX + UNDERLYINGS["NIFTY"])
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    chain_compute(underlying_key=UNDERLYINGS["NIFTY"], client=redis_client)
    latest = json.loads(redis_client.hget(CHAIN_KEY_PREFIX + UNDERLYINGS["NIFTY"], LATEST_FIELD))
    messages = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        body = json.loads(message["data"])
        if body["computed_at"] == latest["computed_at"]:
            messages.append(body)
    assert messages == [latest]
    assert {"ATM", "OTM25delta"} <= set(latest["expiries"][0]["levels"])
    pubsub.close()


def test_an_older_computation_never_overwrites_stored_rows(demo_market, redis_client):
    chain_compute(underlying_key=UNDERLYINGS["NIFTY"], client=redis_client)
    with connection.cursor() as cur:
        cur.execute("UPDATE signal_atm_iv SET source_ts = source_ts + interval '1 hour', iv = 9.99")
        cur.execute(
            "UPDATE signal_moneyness_greeks SET source_ts = source_ts + interval '1 hour', all_iv = 9.99"
        )
    chain_compute(underlying_key=UNDERLYINGS["NIFTY"], client=redis_client)
    assert {r["iv"] for r in _rows("SELECT iv FROM signal_atm_iv")} == {9.99}
    assert {r["all_iv"] for r in _rows("SELECT all_iv FROM signal_moneyness_greeks")} == {9.99}


def test_the_chain_result_reports_the_moneyness_cost(demo_market, redis_client):
    result = chain_compute(underlying_key=UNDERLYINGS["NIFTY"], client=redis_client)
    assert set(result.timings) == {
        "price",
        "moneyness",
        "smile",
        "store",
        "moneyness_store",
        "publish",
        "moneyness_publish",
    }
    assert all(v > 0 for v in result.timings.values())
