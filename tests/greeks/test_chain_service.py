"""The chain service on the simulated market: IV recovers the simulator's true volatility."""

import json

import pytest
from django.db import connection

from greeks.engine import IVReason
from greeks.models import OptionGreeks
from greeks.services import chain_compute, chain_latest_key
from signalsvc.core.keys import parse_key

pytestmark = pytest.mark.django_db

NIFTY = "NSE@NIFTY@equity_spot"


def test_every_ticked_option_of_the_chain_is_computed(demo_market, redis_client):
    result = chain_compute(underlying_key=NIFTY, client=redis_client)
    stored = OptionGreeks.objects.filter(underlying__key=NIFTY).count()
    assert result.options == stored > 100
    assert result.expiries >= 3
    assert result.solved >= 0.8 * result.options


def test_unsolved_options_say_why_and_are_only_deep_in_the_money(demo_market, redis_client):
    """Deep ITM quotes rounded to the 0.05 tick fall below the discounted intrinsic value: IV has
    no solution there, and the row says so instead of inventing one. Every OTM option is solved."""
    chain_compute(underlying_key=NIFTY, client=redis_client)
    for row in OptionGreeks.objects.all():
        in_the_money = row.strike < row.forward if row.option_type == "call" else row.strike > row.forward
        if row.iv is None:
            assert row.iv_reason != IVReason.OK
            assert row.delta is None
            assert in_the_money and abs(row.strike / row.forward - 1) > 0.03, row.strike
        else:
            assert row.iv_reason == IVReason.OK
        if not in_the_money:
            assert row.iv is not None


def test_atm_iv_recovers_the_true_volatility(demo_market, redis_client):
    chain_compute(underlying_key=NIFTY, client=redis_client)
    spot = demo_market.spot("NIFTY")
    checked = 0
    for key, raw in redis_client.hgetall(chain_latest_key(NIFTY)).items():
        if key == "source_us":
            continue
        value = json.loads(raw)
        parsed = parse_key(value["instrument_key"])
        # Near the money and out of it: prices of hundreds of rupees, where 0.05 rounding is negligible.
        if abs(float(parsed.strike) / spot - 1) > 0.01:
            continue
        true_vol = demo_market.true_vol(value["instrument_key"])
        assert value["iv"] == pytest.approx(true_vol, abs=0.001), value["instrument_key"]
        checked += 1
    assert checked >= 6


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


def test_call_and_put_iv_agree_near_the_money(demo_market, redis_client):
    """Put–call parity on the quotes means a call and a put of one strike share one IV."""
    chain_compute(underlying_key=NIFTY, client=redis_client)
    pairs = {}
    for row in OptionGreeks.objects.filter(iv__isnull=False):
        pairs.setdefault((row.expiry, row.strike), {})[row.option_type] = row
    near = [p for p in pairs.values() if len(p) == 2 and abs(p["call"].strike / p["call"].forward - 1) < 0.01]
    assert len(near) >= 6
    for p in near:
        assert p["call"].iv == pytest.approx(p["put"].iv, abs=0.002)


def test_no_spot_tick_means_nothing_computed(db, redis_client, make_instruments):
    make_instruments(NIFTY, "NSE@NIFTY@equity_options@2026-12-29@call@24000")
    result = chain_compute(underlying_key=NIFTY, client=redis_client)
    assert (result.options, result.note) == (0, "no spot tick yet")
    assert OptionGreeks.objects.count() == 0
