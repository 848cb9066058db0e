"""The chain service on the simulated market: IV recovers the simulator's true volatility."""

import json

import numpy as np
import pytest
from django.db import connection

from greeks.engine import IVReason
from greeks.models import OptionGreeks
from greeks.services import LATEST_PREFIX, chain_compute
from signalsvc.core.keys import parse_key

pytestmark = pytest.mark.django_db

NIFTY = "NSE@NIFTY@equity_spot"


def test_every_ticked_option_of_the_chain_is_computed(demo_market, redis_client):
    result = chain_compute(underlying_key=NIFTY, client=redis_client)
    stored = OptionGreeks.objects.filter(underlying__key=NIFTY).count()
    assert result.options == stored > 100
    assert result.expiries >= 3
    assert result.solved >= 0.9 * result.options


def test_atm_iv_recovers_the_true_volatility(demo_market, redis_client):
    chain_compute(underlying_key=NIFTY, client=redis_client)
    truth = demo_market.truth()
    spot = demo_market.spot("NIFTY")
    checked = 0
    for key in redis_client.scan_iter(LATEST_PREFIX + "NSE@NIFTY@equity_options@*"):
        value = json.loads(redis_client.get(key))
        parsed = parse_key(value["instrument_key"])
        # Near the money and out of it: prices of hundreds of rupees, where 0.05 rounding is negligible.
        if abs(float(parsed.strike) / spot - 1) > 0.01:
            continue
        true_vol = demo_market.true_vol(value["instrument_key"])
        assert value["iv"] == pytest.approx(true_vol, abs=0.001), value["instrument_key"]
        checked += 1
    assert checked >= 6
    assert truth  # the truth is readable


def test_forward_sources(demo_market, redis_client):
    chain_compute(underlying_key=NIFTY, client=redis_client)
    with connection.cursor() as cur:
        cur.execute("SELECT DISTINCT expiry, forward_source FROM greeks_option_1m ORDER BY expiry")
        sources = dict(cur.fetchall())
    futures = {
        parse_key(k).expiry
        for k in redis_client.scan_iter("md:last:NSE@NIFTY@equity_futures@*")
        for k in [k.removeprefix("md:last:")]
    }
    assert {e for e, s in sources.items() if s == "future"} == set(sources) & futures
    assert {s for e, s in sources.items() if e not in futures} == {"parity"}


def test_an_older_computation_never_overwrites_a_newer_one(demo_market, redis_client):
    chain_compute(underlying_key=NIFTY, client=redis_client)
    row = OptionGreeks.objects.order_by("instrument_id").first()
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE greeks_option_1m SET source_ts = source_ts + interval '1 hour', iv = 9.99 WHERE instrument_id = %s",
            [row.instrument_id],
        )
    chain_compute(underlying_key=NIFTY, client=redis_client)
    assert OptionGreeks.objects.get(instrument_id=row.instrument_id, ts=row.ts).iv == 9.99


def test_greeks_are_consistent_with_put_call_parity(demo_market, redis_client):
    chain_compute(underlying_key=NIFTY, client=redis_client)
    rows = OptionGreeks.objects.filter(iv__isnull=False).values("expiry", "strike", "option_type", "delta", "time_to_expiry")
    by_strike = {}
    for r in rows:
        by_strike.setdefault((r["expiry"], r["strike"]), {})[r["option_type"]] = r
    pairs = [p for p in by_strike.values() if len(p) == 2 and abs(p["call"]["time_to_expiry"] - p["put"]["time_to_expiry"]) < 1e-6]
    assert pairs
    # Black-76: call delta - put delta = e^{-rt}, when both have the same t and vol is irrelevant.
    for p in pairs:
        t = p["call"]["time_to_expiry"]
        assert p["call"]["delta"] - p["put"]["delta"] == pytest.approx(np.exp(-0.065 * t), abs=1e-9)


def test_no_spot_tick_means_nothing_computed(db, redis_client, make_instruments):
    make_instruments(NIFTY, "NSE@NIFTY@equity_options@2026-12-29@call@24000")
    result = chain_compute(underlying_key=NIFTY, client=redis_client)
    assert (result.options, result.note) == (0, "no spot tick yet")
    assert OptionGreeks.objects.count() == 0
    assert IVReason.OK == 0
