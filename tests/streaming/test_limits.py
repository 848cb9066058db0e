"""Who may connect and how much (API keys, tiers, origins, the per-process limit), slow clients,
the garbage collector after a burst, the shutdown notice, and the process's metrics."""

from __future__ import annotations

import asyncio
import gc

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from prometheus_client import REGISTRY

from signalsvc.accounts.models import Subscription, Tier
from signalsvc.accounts.services import api_key_create
from streaming import consumers
from streaming.hub import Outbox
from streaming.protocol import Feed
from streaming.protocol import Subscription as Sub
from tests.streaming.conftest import PATH, SEED_SUBSCRIBE, application, connect, receive, send

pytestmark = pytest.mark.django_db(transaction=True)


def run(scenario):
    return async_to_sync(scenario)()


def _key(connections: int = 5, subscriptions: int = 100) -> str:
    tier = Tier.objects.create(name=f"t{connections}-{subscriptions}", websocket_connections=connections,
                               subscriptions_per_connection=subscriptions)  # fmt: skip
    subscription = Subscription.objects.create(name=f"s{connections}-{subscriptions}", tier=tier)
    return api_key_create(subscription=subscription, name="ws")[1]


async def _refused(query: str = "", headers=None) -> tuple[dict, dict]:
    ws = WebsocketCommunicator(application(), f"{PATH}?{query}", headers=headers or [])
    connected, _ = await ws.connect(timeout=5)
    assert connected
    error = await receive(ws)
    closed = await ws.receive_output(timeout=5)
    await ws.wait()
    return error, closed


@override_settings(API_ANONYMOUS_READ=False)
def test_without_a_key_when_anonymous_access_is_off(db):
    async def scenario():
        return await _refused("client_id=x")

    error, closed = run(scenario)
    assert (error["type"], error["code"]) == ("error", "not_authenticated")
    assert (closed["type"], closed["code"]) == ("websocket.close", consumers.CLOSE_UNAUTHORIZED)


def test_a_bad_key_is_refused(db):
    async def scenario():
        return await _refused("api_key=sk_nope_nope")

    error, closed = run(scenario)
    assert error["code"] == "authentication_failed"
    assert closed["code"] == consumers.CLOSE_UNAUTHORIZED


@override_settings(API_ANONYMOUS_READ=False)
def test_a_key_in_the_query_or_the_header_and_its_tier_limits(live):
    raw = _key(connections=1, subscriptions=1)

    async def scenario():
        first = await connect(f"api_key={raw}")
        hello = await receive(first)
        second_error, second_closed = await _refused("", headers=[(b"x-api-key", raw.encode())])
        await send(first, SEED_SUBSCRIBE)
        await receive(first)
        await receive(first)
        await send(first, {**SEED_SUBSCRIBE, "params": {"underlying": "NIFTY", "moneyness_level": "OTM1"}})
        too_many = await receive(first)
        await first.disconnect()
        # The connection was given back: the key may connect again, by header this time.
        third = await connect("", headers=[(b"x-api-key", raw.encode())])
        again = await receive(third)
        await third.disconnect()
        return hello, second_error, second_closed, too_many, again

    hello, second_error, second_closed, too_many, again = run(scenario)
    assert hello["limits"]["subscriptions"] == 1
    assert second_error["code"] == "too_many_connections"
    assert second_closed["code"] == consumers.CLOSE_TOO_MANY
    assert too_many["code"] == "too_many_subscriptions"
    assert again["type"] == "connection"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [(None, True), (b"http://localhost:8003", True), (b"https://evil.example", False)],
)
def test_browser_origins_must_be_this_service(db, origin, allowed):
    async def scenario():
        headers = [(b"origin", origin)] if origin else []
        ws = WebsocketCommunicator(application(), f"{PATH}?client_id=o", headers=headers)
        connected, code = await ws.connect(timeout=5)
        if connected:
            await ws.disconnect()
        return connected, code

    connected, code = run(scenario)
    assert connected is allowed
    if not allowed:
        assert code == consumers.CLOSE_POLICY


@override_settings(WEBSOCKET_ALLOWED_ORIGINS=["https://desk.example"])
def test_an_explicit_origin_list(db):
    async def scenario():
        results = []
        for origin in (b"https://desk.example", b"http://localhost:8003"):
            ws = WebsocketCommunicator(application(), PATH, headers=[(b"origin", origin)])
            connected, _ = await ws.connect(timeout=5)
            results.append(connected)
            if connected:
                await ws.disconnect()
        return results

    assert run(scenario) == [True, False]


@override_settings(WEBSOCKET_MAX_CONNECTIONS=1)
def test_past_the_process_limit_the_close_code_is_1013(db):
    async def scenario():
        first = await connect()
        await receive(first)
        error, closed = await _refused()
        await first.disconnect()
        return error, closed

    error, closed = run(scenario)
    assert error["code"] == "too_many_connections"
    assert closed["code"] == 1013


def test_a_stalled_client_keeps_the_latest_per_subscription_and_is_closed_past_its_backlog():
    async def scenario():
        stalled = asyncio.Event()
        sent: list[str] = []
        overflowed: list[bool] = []

        async def slow_send(text: str) -> None:
            sent.append(text)
            await stalled.wait()  # the client does not read

        outbox = Outbox(slow_send, max_backlog=5, on_overflow=lambda: overflowed.append(True))
        feed = Feed("atm_iv", "NSE@NIFTY@equity_spot", 1, ())
        sub = Sub("k", feed, "t", "NIFTY")
        outbox.offer(sub, '{"n":0}', "t0")
        await asyncio.sleep(0.01)  # the first message is being written, and hangs
        for n in range(1, 5):
            outbox.offer(sub, f'{{"n":{n}}}', "t")
        pending = dict(outbox._pending)
        for n in range(5, 9):
            outbox.offer(sub, f'{{"n":{n}}}', "t")
        outbox.close()
        return sent, pending, overflowed

    sent, pending, overflowed = run(scenario)
    assert len(sent) == 1 and '"data":{"n":0}' in sent[0]
    assert [value[1] for value in pending.values()] == ['{"n":4}']  # only the latest waits
    assert overflowed == [True]  # the 6th replaced update is past the backlog of 5


@override_settings(WEBSOCKET_GC_FREEZE_AFTER=3)
def test_objects_are_frozen_out_of_the_collector_during_a_burst(db, monkeypatch):
    monkeypatch.setattr(consumers, "_connects_since_freeze", 0)  # earlier tests' connections
    before = REGISTRY.get_sample_value("signal_ws_gc_freezes_total") or 0
    gc.unfreeze()

    async def scenario():
        sockets = [await connect() for _ in range(7)]
        for ws in sockets:
            await receive(ws)
        frozen = gc.get_freeze_count()
        for ws in sockets:
            await ws.disconnect()
        return frozen

    frozen = run(scenario)
    assert REGISTRY.get_sample_value("signal_ws_gc_freezes_total") == before + 2  # at 3 and at 6
    assert frozen > 0
    gc.unfreeze()


def test_shutdown_tells_every_client_to_reconnect_before_the_server_closes_its_socket(db):
    async def scenario():
        sockets = [await connect() for _ in range(2)]
        for ws in sockets:
            await receive(ws)
        # The server's own exit handler (uvicorn's closes every socket at its next tick) runs only
        # after the notice is on every socket.
        queued_at_exit = []
        await consumers.notify_closing_then(
            lambda: queued_at_exit.extend(ws.output_queue.qsize() for ws in sockets)
        )
        notices = [await receive(ws) for ws in sockets]
        for ws in sockets:
            await ws.disconnect()
        return queued_at_exit, notices

    queued_at_exit, notices = run(scenario)
    assert queued_at_exit == [1, 1]
    assert [(n["type"], n["reason"]) for n in notices] == [("closing", "server_shutdown")] * 2


def test_metrics_count_connections_subscriptions_and_messages(live):
    def sample(name):
        return REGISTRY.get_sample_value(name) or 0

    before = {
        n: sample(n)
        for n in ("signal_ws_connections", "signal_ws_subscriptions", "signal_ws_messages_sent_total")
    }

    async def scenario():
        ws = await connect()
        await receive(ws)
        await send(ws, SEED_SUBSCRIBE)
        await receive(ws)
        await receive(ws)
        during = {n: sample(n) for n in before}
        await ws.disconnect()
        return during

    during = run(scenario)
    assert during["signal_ws_connections"] == before["signal_ws_connections"] + 1
    assert during["signal_ws_subscriptions"] == before["signal_ws_subscriptions"] + 1
    assert during["signal_ws_messages_sent_total"] >= before["signal_ws_messages_sent_total"] + 1
    assert sample("signal_ws_connections") == before["signal_ws_connections"]
    assert sample("signal_ws_subscriptions") == before["signal_ws_subscriptions"]


def test_rows_of_a_dead_node_are_swept_and_the_admin_lists_the_rest(admin_client):
    import datetime as dt

    from django.utils import timezone

    from streaming.models import WebSocketSubscription
    from streaming.tasks import subscriptions_sweep

    now = timezone.now()

    def row(connection: str, seen: dt.datetime) -> WebSocketSubscription:
        return WebSocketSubscription.objects.create(
            node="host:1", connection_id=connection, client_id="desk", channel="atm_iv",
            subscription_key=f"atm_iv:{connection}", instrument_key="NIFTY", last_seen=seen,
        )  # fmt: skip

    row("alive", now)
    row("dead", now - dt.timedelta(minutes=10))

    assert subscriptions_sweep() == 1
    assert list(WebSocketSubscription.objects.values_list("connection_id", flat=True)) == ["alive"]
    page = admin_client.get("/admin/streaming/websocketsubscription/")
    assert page.status_code == 200 and b"atm_iv:alive" in page.content
