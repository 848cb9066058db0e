"""The WebSocket endpoint (SPEC §10): ``/api/v2/signals/subscriptions/websocket?client_id=…``.

The Channels consumer handles the connection: origin, API key and limits at connect, the protocol
(``streaming.protocol``) for each client message, a heartbeat, and the tracking rows. Updates do
not pass through it: the process's hub (``streaming.hub``) writes them to the connection's outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
import uuid
import weakref
from urllib.parse import parse_qs, urlsplit

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from signalsvc.accounts.selectors import api_key_for
from streaming import metrics, tracking
from streaming.feeds import FeedError
from streaming.hub import Outbox, hub, now_iso
from streaming.loops import PerLoop
from streaming.protocol import ProtocolError, Subscription, parse_message, subscription_from

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER = 1013  # over WEBSOCKET_MAX_CONNECTIONS
CLOSE_POLICY = 1008  # flooding, a client that does not read, a forbidden origin
CLOSE_UNAUTHORIZED = 4401  # bad or missing API key
CLOSE_TOO_MANY = 4429  # the key's tier allows no more connections
# Codes of snapshot errors that leave the subscription in place (the data arrives later).
_KEEP_ON = {"no_data"}
_FLOOD_LIMIT = 100  # messages past the rate in a row before the connection is closed

_open_connections = 0
_clock = time.monotonic  # the message-rate allowance's clock (tests hold it still)
_live: weakref.WeakSet = weakref.WeakSet()  # consumers with an open, accepted connection
_connects_since_freeze = 0
_shutdown_notice_installed = False


def open_connections() -> int:
    return _open_connections


def _connected() -> None:
    """Every WEBSOCKET_GC_FREEZE_AFTER new connections, move every object alive now (sockets,
    consumers, outboxes) out of the collector's full passes. With 10,000 sockets a full collection
    walked them all and paused the process 0.5-1 s (measured by the load bench). Freezing during
    the burst, without a collection first (itself a ~1 s pause at 10k), keeps each pass small."""
    global _connects_since_freeze
    _connects_since_freeze += 1
    if _connects_since_freeze >= settings.WEBSOCKET_GC_FREEZE_AFTER:
        gc.freeze()
        metrics.GC_FREEZES.inc()
        _connects_since_freeze = 0


# Heartbeats go round a wheel of this many slots, one slot per 1/_HEARTBEAT_SLOTS of the interval.
_HEARTBEAT_SLOTS = 256
_heartbeat_wheel: list[weakref.WeakSet] = [weakref.WeakSet() for _ in range(_HEARTBEAT_SLOTS)]
_heartbeat_position = 0  # the slot the loop visited last
_heartbeat_joins = 0


def _heartbeat_join(consumer) -> int:
    """A new connection's slot: round-robin over the half of the wheel that the loop reaches
    between half an interval and an interval from now. Its first heartbeat comes in that window
    (never right behind the greeting), and a burst of connections is spread over 128 slots."""
    global _heartbeat_joins
    half = _HEARTBEAT_SLOTS // 2
    slot = (_heartbeat_position + half + _heartbeat_joins % half) % _HEARTBEAT_SLOTS
    _heartbeat_joins += 1
    _heartbeat_wheel[slot].add(consumer)
    return slot


async def _heartbeat_loop() -> None:
    """One heartbeat loop per process, not a task and a timer per connection, spread over the
    interval: each connection has a slot of the wheel, and each tick (1/256 of the interval) sends
    to one slot's connections, so every connection hears one every interval. Sent to all at once,
    10,000 sockets took a few hundred milliseconds of the event loop every interval, and the
    updates queued behind them set the fan-out's tail. Each send is its own task, so that a client
    that does not read never holds up the others."""
    global _heartbeat_position
    loop = asyncio.get_running_loop()
    due = loop.time()
    while True:
        due += settings.WEBSOCKET_HEARTBEAT_INTERVAL / _HEARTBEAT_SLOTS
        await asyncio.sleep(max(0.0, due - loop.time()))
        due = max(due, loop.time() - 1.0)  # after a stall, catch up without a burst of ticks
        _heartbeat_position = slot = (_heartbeat_position + 1) % _HEARTBEAT_SLOTS
        consumers = list(_heartbeat_wheel[slot])
        if consumers:
            message = orjson.dumps({"type": "heartbeat", "timestamp": timezone.now().isoformat()}).decode()
            for consumer in consumers:
                _spawn(consumer.heartbeat(message))


_sends: set[asyncio.Task] = set()


def _spawn(coroutine) -> None:
    """Run ``coroutine`` as a task held in ``_sends`` until it is done (the loop keeps only a weak
    reference to a task)."""
    task = asyncio.ensure_future(coroutine)
    _sends.add(task)
    task.add_done_callback(_sends.discard)


_heartbeats: PerLoop[asyncio.Task] = PerLoop(
    lambda: asyncio.get_running_loop().create_task(_heartbeat_loop()), alive=lambda task: not task.done()
)


def _install_shutdown_notice() -> None:
    """On SIGTERM/SIGINT, tell every client to reconnect elsewhere before the server (uvicorn or
    daphne, whose own handler still runs) closes the sockets with 1012/1001.

    The server's handler runs only once the notices are written: uvicorn closes every socket as
    soon as its 0.1 s tick sees the exit flag, and when the signal landed just before a tick the
    close went out ahead of the notice. A second signal goes to the server's handler at once."""
    global _shutdown_notice_installed
    if _shutdown_notice_installed:
        return
    _shutdown_notice_installed = True
    loop = asyncio.get_running_loop()
    signalled = False
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def handler(number, frame, previous=previous):
            nonlocal signalled
            server_exit = (lambda: previous(number, frame)) if callable(previous) else (lambda: None)
            if signalled:
                server_exit()
                return
            signalled = True
            loop.call_soon_threadsafe(_spawn, notify_closing_then(server_exit))

        try:
            signal.signal(signum, handler)
        except ValueError:  # not the main thread (an embedded loop, tests): nothing to chain
            return


async def notify_closing_then(server_exit, timeout: float = 1.0) -> None:
    """Send every open connection the ``closing`` notice, then let the server exit. A send is a
    write to the socket's buffer, not a wait for the client; the timeout bounds the wait anyway."""
    sends = [asyncio.ensure_future(consumer.closing_notice()) for consumer in list(_live)]
    try:
        if sends:
            done, _ = await asyncio.wait(sends, timeout=timeout)
            for task in done:  # a socket that closed meanwhile had nothing more to hear
                if not task.cancelled():
                    task.exception()
    finally:
        server_exit()


def _origin_allowed(origin: str | None) -> bool:
    if origin is None:
        return True  # not a browser: nothing for the check to protect
    if settings.WEBSOCKET_ALLOWED_ORIGINS:
        return origin in settings.WEBSOCKET_ALLOWED_ORIGINS or "*" in settings.WEBSOCKET_ALLOWED_ORIGINS
    host = urlsplit(origin).hostname or ""
    for allowed in settings.ALLOWED_HOSTS:
        allowed = allowed.strip("[]")
        if allowed == "*" or host == allowed or (allowed.startswith(".") and host.endswith(allowed)):
            return True
    return False


_RATE_LIMITED = {"type": "websocket.receive", "rate_limited": True}
_FLOODED = {"type": "websocket.receive", "rate_limited": True, "flooded": True}


class Inbox:
    """A connection's messages from the server, read as they arrive, ahead of the consumer.

    The message rate limits the client, so each message is measured when it arrives, not when the
    consumer gets to it. Measured by the consumer, a flood of messages it answers slowly (subscribes
    on a loaded server, 50 ms and more) was read at the consumer's own pace and never exceeded the
    rate: the flooder was never closed. A message past the rate (a token bucket: ``rate`` a second,
    bursts of twice that) is replaced by a marker without its text, answered in its turn with
    ``rate_limited``; the one that makes ``_FLOOD_LIMIT`` in a row closes the connection, and what
    arrives after it is dropped unread. The inbox is bounded: when it is full, reading stops and
    the socket's buffers hold the client back, as they did before."""

    def __init__(self, receive, rate: float) -> None:
        self._receive = receive
        self._rate = rate
        self._allowance = rate
        self._allowance_at = _clock()
        self._refused_in_a_row = 0
        self._flooded = False
        # Room for a full burst and a flood's markers: a flood is seen before reading stops.
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=int(2 * rate) + _FLOOD_LIMIT + 1)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def get(self) -> dict:
        message = await self._queue.get()
        if isinstance(message, Exception):  # the server's receive failed: the consumer hears it
            raise message
        return message

    def stop(self) -> None:
        self._reader.cancel()

    async def _read(self) -> None:
        try:
            while True:
                message = await self._receive()
                if message["type"] == "websocket.receive":
                    if self._flooded:
                        continue
                    message = self._admit(message)
                await self._queue.put(message)
                if message["type"] == "websocket.disconnect":
                    return
        except Exception as exc:
            await self._queue.put(exc)

    def _admit(self, message: dict) -> dict:
        now = _clock()
        self._allowance = min(2 * self._rate, self._allowance + (now - self._allowance_at) * self._rate)
        self._allowance_at = now
        if self._allowance >= 1:
            self._allowance -= 1
            self._refused_in_a_row = 0
            return message
        self._refused_in_a_row += 1
        if self._refused_in_a_row > _FLOOD_LIMIT:
            self._flooded = True
            return _FLOODED
        return _RATE_LIMITED


class SignalConsumer(AsyncWebsocketConsumer):
    # Updates come from the process's hub, not the channel layer: no channel per socket, and no
    # per-socket Redis receive loop (channels_redis's, which also failed sockets on a slow Redis).
    channel_layer_alias = None

    async def connect(self):
        global _open_connections
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in self.scope.get("headers", [])}
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.client_id = (query.get("client_id") or [""])[0][:128]
        self.connection_id = str(uuid.uuid4())
        self.subscriptions: dict[str, Subscription] = {}
        self.outbox: Outbox | None = None
        self.tasks: list[asyncio.Task] = []
        self.api_key = None
        self.counted = False
        self.closing = False

        if not _origin_allowed(headers.get("origin")):
            await self.close(code=CLOSE_POLICY)  # before accept: the handshake is refused (403)
            return
        await self.accept()
        if _open_connections >= settings.WEBSOCKET_MAX_CONNECTIONS:
            await self._refuse(
                "too_many_connections", "this server is at its connection limit; retry", CLOSE_TRY_AGAIN_LATER
            )
            return
        raw_key = (query.get("api_key") or [""])[0] or headers.get("x-api-key", "")
        if raw_key:
            self.api_key = await database_sync_to_async(api_key_for)(raw_key=raw_key)
            if self.api_key is None:
                await self._refuse(
                    "authentication_failed", "invalid, inactive or expired API key", CLOSE_UNAUTHORIZED
                )
                return
        elif not settings.API_ANONYMOUS_READ:
            await self._refuse(
                "not_authenticated", "an API key is required: ?api_key= or X-API-Key", CLOSE_UNAUTHORIZED
            )
            return
        if self.api_key is not None:
            limit = self.api_key.tier.websocket_connections
            if not await tracking.tracker().claim(self.api_key.pk, self.connection_id, limit):
                await self._refuse(
                    "too_many_connections",
                    f"this API key's tier allows {limit} WebSocket connections",
                    CLOSE_TOO_MANY,
                )
                return
        _open_connections += 1
        self.counted = True
        metrics.CONNECTIONS.inc()
        _live.add(self)
        self.heartbeat_slot = _heartbeat_join(self)
        _connected()
        _install_shutdown_notice()
        self.outbox = Outbox(
            self._send_text, max_backlog=settings.WEBSOCKET_MAX_BACKLOG, on_overflow=self._overflow
        )
        await self._json(
            {
                "type": "connection",
                "status": "connected",
                "client_id": self.client_id,
                "connection_id": self.connection_id,
                "heartbeat_interval": settings.WEBSOCKET_HEARTBEAT_INTERVAL,
                "limits": {
                    "subscriptions": self._max_subscriptions(),
                    "message_bytes": settings.WEBSOCKET_MAX_MESSAGE_BYTES,
                    "messages_per_second": settings.WEBSOCKET_MAX_MESSAGES_PER_SECOND,
                },
            }
        )
        _heartbeats.get()

    async def disconnect(self, code):
        global _open_connections
        for task in getattr(self, "tasks", []):
            task.cancel()
        if getattr(self, "outbox", None) is not None:
            self.outbox.close()
            local = hub()
            for sub in list(self.subscriptions.values()):
                await local.remove(self.outbox, sub)
            metrics.SUBSCRIPTIONS.dec(len(self.subscriptions))
            self.subscriptions.clear()
            tracking.tracker().connection_forget(self.connection_id)
        if getattr(self, "counted", False):
            _open_connections -= 1
            self.counted = False
            metrics.CONNECTIONS.dec()
            _live.discard(self)
            _heartbeat_wheel[self.heartbeat_slot].discard(self)
            if self.api_key is not None:
                await tracking.tracker().release(self.api_key.pk, self.connection_id)

    # -- client messages ----------------------------------------------------------------------

    async def __call__(self, scope, receive, send):
        inbox = Inbox(receive, settings.WEBSOCKET_MAX_MESSAGES_PER_SECOND)
        try:
            await super().__call__(scope, inbox.get, send)
        finally:
            inbox.stop()

    async def websocket_receive(self, message):
        if not message.get("rate_limited"):
            await super().websocket_receive(message)
        elif self.outbox is not None and not self.closing:
            if message.get("flooded"):
                self._close_soon(CLOSE_POLICY)
                return
            rate = settings.WEBSOCKET_MAX_MESSAGES_PER_SECOND
            await self._error("rate_limited", f"at most {rate:g} messages per second; this one was dropped")

    async def receive(self, text_data=None, bytes_data=None):
        # Once this side has closed, the server refuses any further send (uvicorn raises, which
        # ended the consumer without its disconnect: the connection stayed counted). Messages
        # still queued behind the close are dropped.
        if self.outbox is None or self.closing:
            return
        try:
            if text_data is None:
                raise ProtocolError(
                    "binary_not_supported", "send JSON text frames; binary frames are not accepted"
                )
            # The limit is in UTF-8 bytes, as the greeting says; a character takes one to four, so
            # only a length between a quarter of the limit and the limit needs the encoding.
            limit = settings.WEBSOCKET_MAX_MESSAGE_BYTES
            size = len(text_data)
            if limit // 4 < size <= limit:
                size = len(text_data.encode(errors="surrogatepass"))
            if size > limit:
                raise ProtocolError(
                    "message_too_large",
                    f"a message may have at most {limit} bytes",
                )
            message = parse_message(text_data)
            await getattr(self, "_on_" + message["type"])(message)
        except ProtocolError as exc:
            if not self.closing:
                await self._error(exc.code, exc.message, exc.details)

    async def _on_ping(self, message):
        await self._json({"type": "pong", "timestamp": timezone.now().isoformat()})

    async def _on_list(self, message):
        await self._json(
            {
                "type": "subscriptions",
                "subscriptions": [
                    {"subscription_key": s.key, "channel": s.feed.channel, "instrument_key": s.instrument_key,
                     "params": s.feed.params_dict}
                    for s in self.subscriptions.values()
                ],
            }
        )  # fmt: skip

    async def _on_subscribe(self, message):
        sub = await database_sync_to_async(subscription_from)(message)
        again = sub.key in self.subscriptions
        if not again and len(self.subscriptions) >= self._max_subscriptions():
            raise ProtocolError(
                "too_many_subscriptions",
                f"at most {self._max_subscriptions()} subscriptions per connection",
            )
        local = hub()
        # Join the feed first, so that no update is missed while the snapshot is computed, but
        # hold its updates until the confirmation is out: subscription, then data.
        self.outbox.hold(sub.key)
        try:
            if not again:
                await local.add(self.outbox, sub)
            current = await local.current(sub)
            if isinstance(current, FeedError) and current.code not in _KEEP_ON:
                if not again:
                    await local.remove(self.outbox, sub)
                    self.outbox.forget(sub.key)
                raise ProtocolError(current.code, current.message, current.details)
            if not again:
                self.subscriptions[sub.key] = sub
                metrics.SUBSCRIPTIONS.inc()
                tracking.tracker().subscription_add(self, sub)
            await self._confirm(sub, "subscribed")
            if isinstance(current, FeedError):
                await self._error(
                    current.code, current.message, {**current.details, "subscription_key": sub.key}
                )
            else:
                self.outbox.offer(sub, current.decode(), now_iso(), snapshot=True)
        finally:
            self.outbox.release(sub.key)

    async def _on_unsubscribe(self, message):
        key = message.get("subscription_key")
        sub = self.subscriptions.get(key) if isinstance(key, str) else None
        if sub is None:
            sub = self.subscriptions.get((await database_sync_to_async(subscription_from)(message)).key)
        if sub is None:
            raise ProtocolError("not_subscribed", "no such subscription on this connection; see `list`")
        del self.subscriptions[sub.key]
        metrics.SUBSCRIPTIONS.dec()
        self.outbox.forget(sub.key)
        await hub().remove(self.outbox, sub)
        tracking.tracker().subscription_remove(self.connection_id, sub.key)
        await self._confirm(sub, "unsubscribed")

    # -- server messages ----------------------------------------------------------------------

    def _max_subscriptions(self) -> int:
        if self.api_key is not None:
            return self.api_key.tier.subscriptions_per_connection
        return settings.WEBSOCKET_ANONYMOUS_SUBSCRIPTIONS

    async def _confirm(self, sub: Subscription, status: str) -> None:
        await self._json(
            {
                "type": "subscription",
                "status": status,
                "subscription_key": sub.key,
                "channel": sub.feed.channel,
                "instrument_key": sub.instrument_key,
                "params": sub.feed.params_dict,
            }
        )

    async def _error(self, code: str, message: str, details: dict | None = None) -> None:
        await self._json({"type": "error", "code": code, "message": message, "details": details or {}})

    async def _refuse(self, code: str, message: str, close_code: int) -> None:
        await self._error(code, message)
        await self.close(code=close_code)

    async def heartbeat(self, message: str) -> None:
        # The socket may have gone meanwhile: its disconnect cleans up.
        with contextlib.suppress(OSError, RuntimeError):
            await self.send(text_data=message)

    async def closing_notice(self) -> None:
        await self._json(
            {
                "type": "closing",
                "reason": "server_shutdown",
                "message": "this server is restarting; reconnect and subscribe again",
                "reconnect_after_ms": 1000,
            }
        )

    def _overflow(self) -> None:
        log.warning("websocket %s (%s): not reading its updates; closing", self.connection_id, self.client_id)
        self._close_soon(CLOSE_POLICY)

    def _close_soon(self, code: int) -> None:
        """Close once (not once per refused message), and send nothing more from then on."""
        if not self.closing:
            self.closing = True
            self.tasks.append(asyncio.create_task(self.close(code=code)))

    async def _json(self, payload: dict) -> None:
        await self.send(text_data=orjson.dumps(payload).decode())

    async def _send_text(self, text: str) -> None:
        await self.send(text_data=text)
