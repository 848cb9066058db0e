"""The WebSocket protocol (SPEC §10) through the real routing stack: every message type, every
channel's snapshot against the REST realtime body, live updates from the chain's publish, and an
error (with the connection left open) for every kind of bad message."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.test import override_settings

from greeks.services import chain_compute
from signalsvc.marketdata.stream import ticks_ingest
from streaming import consumers
from streaming.models import WebSocketSubscription
from streaming.tracking import tracker
from tests.conftest import DEMO_START
from tests.streaming.conftest import NIFTY, SEED_SUBSCRIBE, connect, receive, receive_until, send

# Channels closes a connection that is inside a transaction (database_sync_to_async), so these
# tests commit, like the server does.
pytestmark = pytest.mark.django_db(transaction=True)

REALTIME = "/api/v2/signals/realtime/"


def run(scenario):
    return async_to_sync(scenario)()


def _option_key(api) -> str:
    body = api.get(REALTIME + "moneyness/NIFTY/greeks/ATM", {"include": "instruments"}).json()
    return body["instruments"][0]["instrument_key"]


def test_the_seed_example_gets_a_confirmation_then_the_snapshot(api, live):
    rest = api.get(REALTIME + "moneyness/NIFTY/greeks/ATM").json()

    async def scenario():
        ws = await connect()
        hello = await receive(ws)
        await send(ws, SEED_SUBSCRIBE)
        confirmed = await receive(ws)
        snapshot = await receive(ws)
        await ws.disconnect()
        return hello, confirmed, snapshot

    hello, confirmed, snapshot = run(scenario)

    assert hello["type"] == "connection"
    assert (hello["status"], hello["client_id"], hello["heartbeat_interval"]) == ("connected", "user123", 30)
    assert confirmed["type"] == "subscription" and confirmed["status"] == "subscribed"
    assert confirmed["channel"] == "moneyness"
    assert confirmed["params"] == {"expiry_date": None, "moneyness_level": "ATM"}
    key = confirmed["subscription_key"]
    assert snapshot["type"] == "data"
    assert (snapshot["subscription_key"], snapshot["seq"], snapshot["snapshot"]) == (key, 1, True)
    assert (snapshot["channel"], snapshot["instrument_key"]) == ("moneyness", "moneyness_greeks")
    assert snapshot["data"] == rest
    assert dt.datetime.fromisoformat(snapshot["timestamp"]).tzinfo is not None


def test_every_channel_snapshots_what_the_rest_endpoint_returns(api, live):
    option = _option_key(api)
    expected = {
        "greeks": api.get(REALTIME + f"greeks/{option}").json(),
        "atm_iv": api.get(REALTIME + "moneyness/NIFTY/atm-iv").json(),
        "indicators": api.get(
            REALTIME + f"indicators/{NIFTY}/ema", {"timeframe": "1m", "period": "3"}
        ).json(),
        "moneyness": api.get(REALTIME + "moneyness/NIFTY/greeks/OTM2").json(),
    }
    subscriptions = {
        "greeks": {"channel": "greeks", "instrument_key": option},
        "atm_iv": {"channel": "atm_iv", "instrument_key": "NIFTY"},
        "indicators": {
            "channel": "indicators",
            "instrument_key": NIFTY,
            "params": {"indicator": "ema", "timeframe": "1m", "period": 3},
        },
        "moneyness": {"channel": "moneyness", "params": {"underlying": NIFTY, "moneyness_level": "otm2"}},
        "bars": {"channel": "bars", "instrument_key": NIFTY, "params": {"timeframe": "1m"}},
    }

    async def scenario():
        ws = await connect()
        await receive(ws)
        got = {}
        for name, message in subscriptions.items():
            await send(ws, {"type": "subscribe", **message})
            reply = await receive(ws)
            assert reply.get("status") == "subscribed", (name, reply)
            got[name] = await receive(ws)
        await send(ws, {"type": "list"})
        listing = await receive(ws)
        await ws.disconnect()
        return got, listing

    got, listing = run(scenario)

    for name, body in expected.items():
        assert got[name]["data"] == body, name
    bar = got["bars"]["data"]
    assert bar["instrument_key"] == NIFTY and bar["timeframe"] == "1m"
    assert set(bar["value"]) == {"open", "high", "low", "close", "volume", "oi"}
    assert bar["value"]["low"] <= bar["value"]["close"] <= bar["value"]["high"]
    assert listing["type"] == "subscriptions"
    assert sorted(s["channel"] for s in listing["subscriptions"]) == sorted(subscriptions)


def test_updates_follow_each_chain_computation_with_a_per_subscription_seq(api, live, redis_client):
    def advance(seconds: int):
        ticks = []
        for second in range(12, 12 + seconds):
            ticks += live.step(DEMO_START + dt.timedelta(seconds=second))
        ticks_ingest(redis_client, ticks, consumer_name="test")
        chain_compute(underlying_key=NIFTY, client=redis_client)

    async def scenario():
        ws = await connect()
        await receive(ws)
        await send(ws, SEED_SUBSCRIBE)
        await send(ws, {"type": "subscribe", "channel": "atm_iv", "params": {"underlying": "NIFTY"}})
        first = [await receive(ws) for _ in range(4)]
        await sync_to_async(advance)(20)
        updates = [await receive_until(ws, "data") for _ in range(2)]
        await ws.disconnect()
        return first, updates

    first, updates = run(scenario)

    snapshots = {m["channel"]: m for m in first if m["type"] == "data"}
    assert {m["channel"]: (m["seq"], m["snapshot"]) for m in updates} == {
        "moneyness": (2, False),
        "atm_iv": (2, False),
    }
    for update in updates:
        assert update["data"]["timestamp"] > snapshots[update["channel"]]["data"]["timestamp"]
    assert {m["channel"]: m["data"] for m in updates}["moneyness"] == api.get(
        REALTIME + "moneyness/NIFTY/greeks/ATM"
    ).json()


def test_ping_and_heartbeat(live):
    async def scenario():
        ws = await connect()
        await receive(ws)
        await send(ws, {"type": "ping"})
        pong = await receive(ws)
        heartbeat = await receive_until(ws, "heartbeat", timeout=5)
        await ws.disconnect()
        return pong, heartbeat

    with override_settings(WEBSOCKET_HEARTBEAT_INTERVAL=1):
        pong, heartbeat = run(scenario)
    assert pong["type"] == "pong" and "timestamp" in pong
    assert heartbeat["type"] == "heartbeat"


def test_heartbeats_are_spread_over_the_interval_not_sent_in_one_burst(live):
    """Connections opened together take consecutive slots of the heartbeat wheel: each hears one
    between half an interval and an interval after connecting, each from its own tick (its own
    timestamp), not all from one burst."""

    async def scenario():
        sockets = [await connect(f"client_id=hb{i}") for i in range(8)]
        for ws in sockets:
            await receive(ws)
        loop = asyncio.get_running_loop()
        started = loop.time()
        beats = [await receive_until(ws, "heartbeat", timeout=5) for ws in sockets]
        waited = loop.time() - started
        for ws in sockets:
            await ws.disconnect()
        return beats, waited

    with override_settings(WEBSOCKET_HEARTBEAT_INTERVAL=2):
        beats, waited = run(scenario)
    assert len({beat["timestamp"] for beat in beats}) == 8, beats
    assert 0.5 <= waited < 2 * 2  # within an interval of connecting (and a margin for a loaded machine)


def test_unsubscribe_stops_updates_and_removes_the_row(live):
    async def scenario():
        ws = await connect()
        await receive(ws)
        await send(ws, SEED_SUBSCRIBE)
        key = (await receive(ws))["subscription_key"]
        await receive(ws)
        await tracker().flush()  # the process writes its rows every half second
        rows = await sync_to_async(
            lambda: list(WebSocketSubscription.objects.values("channel", "subscription_key", "client_id"))
        )()
        await send(ws, {"type": "unsubscribe", "subscription_key": key})
        gone = await receive(ws)
        await send(ws, {"type": "unsubscribe", **{k: v for k, v in SEED_SUBSCRIBE.items() if k != "type"}})
        again = await receive(ws)
        await tracker().flush()
        after = await sync_to_async(WebSocketSubscription.objects.count)()
        await send(ws, {"type": "list"})
        listing = await receive(ws)
        await ws.disconnect()
        return key, rows, gone, again, after, listing

    key, rows, gone, again, after, listing = run(scenario)
    assert rows == [{"channel": "moneyness", "subscription_key": key, "client_id": "user123"}]
    assert (gone["type"], gone["status"], gone["subscription_key"]) == ("subscription", "unsubscribed", key)
    assert (again["type"], again["code"]) == ("error", "not_subscribed")
    assert after == 0
    assert listing["subscriptions"] == []


def test_rows_go_with_the_socket(live):
    async def scenario():
        ws = await connect()
        await receive(ws)
        await send(ws, SEED_SUBSCRIBE)
        await receive(ws)
        await tracker().flush()
        during = await sync_to_async(WebSocketSubscription.objects.count)()
        await ws.disconnect()
        await tracker().flush()
        return during

    assert run(scenario) == 1
    assert WebSocketSubscription.objects.count() == 0


BAD_MESSAGES = [
    ("not json", "invalid_json"),
    ("[1, 2]", "invalid_message"),
    ({"type": "dance"}, "unknown_type"),
    ({"no": "type"}, "unknown_type"),
    ({"type": "subscribe", "channel": "weather"}, "unknown_channel"),
    ({"type": "subscribe", "channel": "moneyness", "params": "ATM"}, "invalid_parameter"),
    ({"type": "subscribe", "channel": "moneyness", "params": {}}, "missing_parameter"),
    ({"type": "subscribe", "channel": "moneyness", "params": {"underlying": "NIFTY", "moneyness_level": "XYZ"}},
     "invalid_level"),
    ({"type": "subscribe", "channel": "moneyness", "params": {"underlying": "NIFTY", "moneyness_level": "OTM150"}},
     "level_beyond_chain"),
    ({"type": "subscribe", "channel": "moneyness", "params": {"underlying": "NIFTY", "expiry_date": "soon"}},
     "invalid_parameter"),
    ({"type": "subscribe", "channel": "atm_iv", "params": {"underlying": "NIFTY", "expiry_date": "2031-01-30"}},
     "unknown_expiry"),
    ({"type": "subscribe", "channel": "atm_iv", "params": {"underlying": "NIFTY", "expiry_date": "2020-01-30"}},
     "expiry_expired"),
    ({"type": "subscribe", "channel": "atm_iv", "params": {"underlying": "NOPE"}}, "unknown_underlying"),
    ({"type": "subscribe", "channel": "atm_iv", "params": {"underlying": "NSE@NIFTY@equity_options@2026-12-08@call@25500"}},
     "not_an_underlying"),
    ({"type": "subscribe", "channel": "greeks", "instrument_key": NIFTY}, "not_an_option"),
    ({"type": "subscribe", "channel": "greeks", "instrument_key": "NSE@NOPE@equity_spot"}, "unknown_instrument"),
    ({"type": "subscribe", "channel": "greeks", "instrument_key": "garbage"}, "invalid_instrument_key"),
    ({"type": "subscribe", "channel": "greeks"}, "missing_parameter"),
    ({"type": "subscribe", "channel": "greeks", "instrument_key": 5}, "invalid_instrument_key"),
    ({"type": "subscribe", "channel": "bars", "instrument_key": NIFTY, "params": {"timeframe": "7x"}},
     "invalid_timeframe"),
    ({"type": "subscribe", "channel": "indicators", "instrument_key": NIFTY, "params": {"timeframe": "5m"}},
     "missing_parameter"),
    ({"type": "subscribe", "channel": "indicators", "instrument_key": NIFTY, "params": {"indicator": "nope"}},
     "invalid_indicator"),
    ({"type": "subscribe", "channel": "indicators", "instrument_key": NIFTY,
      "params": {"indicator": "rsi", "period": 0}}, "invalid_indicator"),
    ({"type": "unsubscribe", "subscription_key": "nothing"}, "unknown_channel"),
]  # fmt: skip


@pytest.mark.parametrize(("message", "code"), BAD_MESSAGES)
def test_bad_messages_get_an_error_and_the_connection_stays_open(live, message, code):
    async def scenario():
        ws = await connect()
        await receive(ws)
        await send(ws, message)
        error = await receive(ws)
        await send(ws, {"type": "ping"})
        pong = await receive(ws)
        await ws.disconnect()
        return error, pong

    error, pong = run(scenario)
    assert error["type"] == "error"
    assert error["code"] == code, error
    assert error["message"]
    assert pong["type"] == "pong"


def test_binary_oversize_and_floods(live, monkeypatch):
    monkeypatch.setattr(consumers, "_clock", lambda: 1000.0)  # no allowance refills during the flood

    async def scenario():
        ws = await connect()
        await receive(ws)
        await ws.send_to(bytes_data=b"\x00\x01")
        binary = await receive(ws)
        await send(ws, {"type": "ping", "pad": "x" * 5000})
        oversize = await receive(ws)
        for _ in range(60):
            await send(ws, {"type": "ping"})
        replies = [await receive(ws) for _ in range(60)]
        await ws.disconnect()
        return binary, oversize, replies

    with override_settings(WEBSOCKET_MAX_MESSAGES_PER_SECOND=10):
        binary, oversize, replies = run(scenario)
    assert binary["code"] == "binary_not_supported"
    assert oversize["code"] == "message_too_large"
    kinds = [r.get("code", r["type"]) for r in replies]
    # A burst of 10 (the rate) is allowed, binary and oversize included; with the clock still,
    # nothing refills: exactly 8 pings are answered and the other 52 refused.
    assert kinds == ["pong"] * 8 + ["rate_limited"] * 52


def test_a_flood_is_measured_as_it_arrives_not_as_slowly_as_it_is_answered(live, monkeypatch):
    """Each ping here takes a second of the allowance's clock to answer. Measured when the consumer
    got to each message, the allowance refilled while it answered, and 200 pings sent at once were
    all answered and never closed (a subscribe flood on a loaded server, in the fuzz test)."""
    now = [1000.0]
    monkeypatch.setattr(consumers, "_clock", lambda: now[0])
    answer_ping = consumers.SignalConsumer._on_ping

    async def slow_ping(self, message):
        now[0] += 1.0
        await answer_ping(self, message)

    monkeypatch.setattr(consumers.SignalConsumer, "_on_ping", slow_ping)

    async def scenario():
        ws = await connect()
        await receive(ws)
        for _ in range(200):
            await send(ws, {"type": "ping"})
        replies = []
        while True:
            output = await ws.receive_output(timeout=5)
            if output["type"] == "websocket.close":
                return replies, output["code"]
            replies.append(json.loads(output["text"]))

    with override_settings(WEBSOCKET_MAX_MESSAGES_PER_SECOND=20):
        replies, code = run(scenario)
    kinds = [r.get("code", r["type"]) for r in replies]
    # All 200 arrived within an instant: the first 20 (the allowance a connection starts with)
    # are answered, the next 100 refused, and the 101st refused in a row closes the connection.
    assert kinds == ["pong"] * 20 + ["rate_limited"] * 100
    assert code == consumers.CLOSE_POLICY


def test_subscriptions_per_connection_are_limited(live):
    async def scenario():
        ws = await connect()
        await receive(ws)
        replies = []
        for level in ("ATM", "OTM1", "OTM2"):
            await send(ws, {**SEED_SUBSCRIBE, "params": {"underlying": "NIFTY", "moneyness_level": level}})
            replies.append(await receive(ws))
            if replies[-1]["type"] == "subscription":
                await receive(ws)  # its snapshot
        await ws.disconnect()
        return replies

    with override_settings(WEBSOCKET_ANONYMOUS_SUBSCRIPTIONS=2):
        replies = run(scenario)
    assert [r["type"] for r in replies] == ["subscription", "subscription", "error"]
    assert replies[-1]["code"] == "too_many_subscriptions"


def test_a_subscription_before_the_first_chain_waits_for_it(demo_market, redis_client):
    async def scenario():
        ws = await connect()
        await receive(ws)
        await send(ws, SEED_SUBSCRIBE)
        confirmed = await receive(ws)
        no_data = await receive(ws)
        await sync_to_async(chain_compute)(underlying_key=NIFTY, client=redis_client)
        first = await receive_until(ws, "data")
        await ws.disconnect()
        return confirmed, no_data, first

    confirmed, no_data, first = run(scenario)
    assert confirmed["status"] == "subscribed"
    assert (no_data["type"], no_data["code"]) == ("error", "no_data")
    assert no_data["details"]["subscription_key"] == confirmed["subscription_key"]
    assert first["data"]["moneyness_level"] == "ATM" and first["seq"] == 1


def test_two_connections_with_one_client_id_keep_their_own_subscriptions(live, redis_client):
    async def scenario():
        a, b = await connect(), await connect()
        await receive(a)
        await receive(b)
        await send(a, SEED_SUBSCRIBE)
        await send(b, {"type": "subscribe", "channel": "atm_iv", "params": {"underlying": "NIFTY"}})
        for ws in (a, b):
            await receive(ws)
            await receive(ws)
        await a.disconnect()
        await send(b, {"type": "list"})
        listing = await receive(b)
        await b.disconnect()
        return listing

    listing = run(scenario)
    assert [s["channel"] for s in listing["subscriptions"]] == ["atm_iv"]


def test_messages_are_json_text(live):
    async def scenario():
        ws = await connect()
        raw = await ws.receive_output(timeout=5)
        await ws.disconnect()
        return raw

    raw = run(scenario)
    assert raw["type"] == "websocket.send" and json.loads(raw["text"])["type"] == "connection"
