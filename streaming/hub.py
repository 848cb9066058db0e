"""The per-process fan-out hub (SPEC §10; issue: streaming).

channels_redis's layers were measured to saturate at 1,000-5,000 connections (the core layer
loses messages, the pub/sub layer's queues grow without bound), and Channels 4.2+ adds a thread
hop per dispatched message. So broadcasts do not go through the channel layer:

* one Redis pub/sub connection per process, subscribed to each topic that has local subscribers
  (``signal:moneyness:<underlying>``, ``signal:greeks:<underlying>``, ``signal:bars:<id>``).
  :meth:`Hub.add` returns once Redis has confirmed the topic's SUBSCRIBE, so that the snapshot read
  after it cannot miss a publish: SUBSCRIBE is only written to the socket, and a PUBLISH from
  another connection could be read by Redis first (it reached nobody, CI lost an update so);
* an announcement on a topic makes the hub compute every feed of that topic once
  (``streaming.feeds``, in Channels' database thread), encode each feed's data once, and hand
  it to the sockets;
* announcements that arrive while a topic is being computed are coalesced into one more run;
* each connection has an :class:`Outbox`: the latest data per subscription (conflation), drained
  by the connection's own writer task, so a stalled client never delays its topic or anyone else.
  A client that lets more than ``WEBSOCKET_MAX_BACKLOG`` updates be conflated away is closed;
* under backpressure (HIGH, CRITICAL) each topic is computed and delivered at most once per
  ``BACKPRESSURE_STREAM_INTERVALS`` of the level (1 s, 2 s): the announcements in between are
  coalesced into the next run, which reads the latest values. That spares the farm's Redis and
  the database thread as well as the sockets; a new subscription's snapshot is never delayed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings

from signalsvc.farm.backpressure import current_level, stream_interval
from streaming import metrics
from streaming.feeds import FeedError, feeds_compute, greeks_read
from streaming.loops import PerLoop
from streaming.protocol import Feed, Subscription

log = logging.getLogger(__name__)

# How long a first subscriber to a topic waits for Redis to confirm the SUBSCRIBE; past it (Redis
# away: the listener resubscribes when it is back) the subscription goes on unconfirmed.
SUBSCRIBE_CONFIRM_SECONDS = 5.0

_hubs: PerLoop[Hub] = PerLoop(lambda: Hub())


def hub() -> Hub:
    """This event loop's hub (one per process in a server)."""
    return _hubs.get()


# Feeds read Redis and PostgreSQL: in Channels' database thread, which closes stale connections
# (one thread per process, so the connections stay bounded however many topics update).
_compute = database_sync_to_async(feeds_compute)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class Outbox:
    """What one connection still has to send: the latest per subscription, in arrival order."""

    def __init__(
        self, send: Callable[[str], Awaitable[None]], *, max_backlog: int, on_overflow: Callable[[], None]
    ):
        self._send = send
        self._pending: dict[str, tuple[Subscription, str, str, bool]] = {}
        self._seq: dict[str, int] = defaultdict(int)
        self._wake = asyncio.Event()
        self._held: set[str] = set()
        self.max_backlog = max_backlog
        self.conflated = 0  # updates replaced before they were sent, since the last drain
        self.sent = 0
        self._on_overflow = on_overflow
        self._task = asyncio.create_task(self._run())

    def offer(self, sub: Subscription, data: str, timestamp: str, *, snapshot: bool = False) -> None:
        waiting = self._pending.get(sub.key)
        if waiting is not None:
            if snapshot:
                # An update came while the snapshot was computed: it is at least as new; it is
                # what the client gets first, marked as the snapshot.
                self._pending[sub.key] = (*waiting[:3], True)
                return
            self.conflated += 1
            metrics.CONFLATED.inc()
            snapshot = waiting[3]
            if self.conflated > self.max_backlog:
                metrics.DROPPED.inc(len(self._pending))
                metrics.SLOW_CLIENTS_CLOSED.inc()
                self._pending.clear()
                self._on_overflow()
                return
        self._pending[sub.key] = (sub, data, timestamp, snapshot)
        if sub.key not in self._held:
            self._wake.set()

    def hold(self, sub_key: str) -> None:
        """Keep this subscription's updates until :meth:`release` (while it is being confirmed)."""
        self._held.add(sub_key)

    def release(self, sub_key: str) -> None:
        self._held.discard(sub_key)
        if sub_key in self._pending:
            self._wake.set()

    def forget(self, sub_key: str) -> None:
        self._pending.pop(sub_key, None)
        self._seq.pop(sub_key, None)
        self._held.discard(sub_key)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            drained = 0
            while True:
                key = next((k for k in self._pending if k not in self._held), None)
                if key is None:
                    break
                sub, data, timestamp, snapshot = self._pending.pop(key)
                self._seq[key] += 1
                await self._send(_data_message(sub, data, timestamp, self._seq[key], snapshot))
                drained += 1
            self.sent += drained
            metrics.SENT.inc(drained)
            self.conflated = 0

    def close(self) -> None:
        self._task.cancel()


def _data_message(sub: Subscription, data: str, timestamp: str, seq: int, snapshot: bool) -> str:
    # The data is encoded once per feed and the subscription's fields once per subscription; only
    # the sequence number and the flag are written per message.
    flag = "true" if snapshot else "false"
    return f'{{"type":"data",{sub.json_fields},"timestamp":"{timestamp}","seq":{seq},"snapshot":{flag},"data":{data}}}'


class Hub:
    def __init__(self) -> None:
        # topic -> feed -> outbox -> subscriptions of that outbox on that feed
        self._topics: dict[str, dict[Feed, dict[Outbox, set[Subscription]]]] = {}
        self._running: set[str] = set()
        self._again: set[str] = set()
        self._redis = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
        # Subscribe confirmations are read too: they resolve ``_unconfirmed``.
        self._pubsub = self._redis.pubsub()
        self._unconfirmed: dict[str, asyncio.Future] = {}  # topic -> set once Redis confirms it
        self._listener: asyncio.Task | None = None
        self._commands = asyncio.Lock()  # subscribe/unsubscribe, one at a time
        self._tasks: set[asyncio.Task] = set()
        self.updates = 0  # topic computations run (tests and metrics)
        self._delivered: dict[str, float] = {}  # topic -> monotonic time of its last computation
        self._pressure_interval = 0.0
        self._pressure_read_at = float("-inf")

    # -- subscriptions ------------------------------------------------------------------------

    async def add(self, outbox: Outbox, sub: Subscription) -> None:
        feeds = self._topics.get(sub.topic)
        if feeds is None:
            feeds = self._topics[sub.topic] = {}
            self._unconfirmed[sub.topic] = asyncio.get_running_loop().create_future()
            try:
                # One command at a time on the one pub/sub connection: redis-py opens a connection
                # for each first subscribe that runs concurrently, and the listener reads only one
                # of them (the load bench lost whole topics that way at 10,000 sockets).
                async with self._commands:
                    await self._pubsub.subscribe(sub.topic)
            except BaseException:
                if not feeds:
                    self._topics.pop(sub.topic, None)
                    self._unconfirmed.pop(sub.topic, None)
                raise
            metrics.TOPICS.inc()
            if self._listener is None or self._listener.done():
                self._listener = asyncio.create_task(self._listen())
        feeds.setdefault(sub.feed, {}).setdefault(outbox, set()).add(sub)
        # Every subscriber waits, not only the first: a second one may come while it is pending.
        confirmed = self._unconfirmed.get(sub.topic)
        if confirmed is not None:
            try:
                await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_CONFIRM_SECONDS)
            except TimeoutError:
                log.warning(
                    "hub: SUBSCRIBE %s not confirmed within %g s", sub.topic, SUBSCRIBE_CONFIRM_SECONDS
                )

    async def remove(self, outbox: Outbox, sub: Subscription) -> None:
        feeds = self._topics.get(sub.topic)
        if feeds is None:
            return
        outboxes = feeds.get(sub.feed, {})
        subs = outboxes.get(outbox)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del outboxes[outbox]
        if not outboxes:
            feeds.pop(sub.feed, None)
        if not feeds:
            del self._topics[sub.topic]
            self._delivered.pop(sub.topic, None)
            self._confirm(sub.topic)  # nobody left to wait for it
            metrics.TOPICS.dec()
            try:
                async with self._commands:
                    if sub.topic not in self._topics:  # not subscribed again meanwhile
                        await self._pubsub.unsubscribe(sub.topic)
            except (aioredis.RedisError, OSError) as exc:  # reconnection resubscribes what is left
                log.warning("hub: unsubscribe %s failed: %s", sub.topic, exc)

    def topics(self) -> list[str]:
        return sorted(self._topics)

    # -- updates ------------------------------------------------------------------------------

    async def _listen(self) -> None:
        while self._topics:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (aioredis.RedisError, OSError) as exc:
                log.warning("hub: Redis pub/sub unavailable (%s); retrying in 1 s", exc)
                await asyncio.sleep(1)
                # Until it works: a failed attempt leaves a pub/sub with no connection, which
                # get_message cannot read (RuntimeError), and the topics would never be heard again.
                while self._topics and not await self._resubscribe():
                    await asyncio.sleep(1)
                continue
            if message is None:
                continue
            if message["type"] == "subscribe":
                self._confirm(message["channel"].decode())
            elif message["type"] == "message":
                self.schedule(message["channel"].decode(), announced=time.perf_counter())

    def _confirm(self, topic: str) -> None:
        confirmed = self._unconfirmed.pop(topic, None)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(None)

    async def _resubscribe(self) -> bool:
        """A new pub/sub connection subscribed to every topic; False if Redis is still away."""
        try:
            async with self._commands:
                await self._pubsub.aclose()
                self._pubsub = self._redis.pubsub()
                if self._topics:
                    await self._pubsub.subscribe(*self._topics)
            if self._topics:
                # What was published while we were away: send the current values now.
                for topic in list(self._topics):
                    self.schedule(topic)
        except (aioredis.RedisError, OSError) as exc:
            log.warning("hub: resubscribe failed (%s)", exc)
            return False
        return True

    def schedule(self, topic: str, announced: float | None = None) -> None:
        """Recompute the topic's feeds: now, or once more after the run in progress."""
        if topic in self._running:
            self._again.add(topic)
            return
        self._running.add(topic)
        task = asyncio.create_task(self._update(topic, announced))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _update(self, topic: str, announced: float | None) -> None:
        try:
            while True:
                await self._pace(topic)
                self._again.discard(topic)
                started = announced or time.perf_counter()
                feeds = list(self._topics.get(topic, {}))
                if feeds:
                    self._delivered[topic] = time.monotonic()
                    results = await self.compute(feeds)
                    self.updates += 1
                    self._deliver(topic, results)
                    metrics.FANOUT_SECONDS.observe(time.perf_counter() - started)
                announced = None
                if topic not in self._again:
                    break
        except Exception:
            log.exception("hub: update of %s failed", topic)
        finally:
            self._running.discard(topic)

    async def _pace(self, topic: str) -> None:
        """Under backpressure, wait until the topic's last computation is one interval old; the
        topic stays in ``_running`` meanwhile, so the announcements that come are coalesced."""
        now = time.monotonic()
        if now - self._pressure_read_at >= settings.BACKPRESSURE_LOCAL_SECONDS:
            # Marked first: the other topics keep the last interval while this one reads the level
            # (in a thread: it may read Redis, and the event loop must not wait for it).
            self._pressure_read_at = now
            self._pressure_interval = stream_interval(await asyncio.to_thread(current_level))
        wait = self._delivered.get(topic, float("-inf")) + self._pressure_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    def _deliver(self, topic: str, results: dict[Feed, bytes | FeedError]) -> None:
        timestamp = now_iso()
        feeds = self._topics.get(topic, {})
        for feed, result in results.items():
            if isinstance(result, FeedError):
                continue  # e.g. no data yet: subscribers got the reason with their snapshot
            data = result.decode()
            for outbox, subs in list(feeds.get(feed, {}).items()):
                for sub in subs:
                    outbox.offer(sub, data, timestamp)

    async def current(self, sub: Subscription) -> bytes | FeedError:
        """The feed's current data (a new subscription's snapshot), or why there is none."""
        return (await self.compute([sub.feed]))[sub.feed]

    async def compute(self, feeds: list[Feed]) -> dict[Feed, bytes | FeedError]:
        """Greeks feeds read only Redis: one MGET in the event loop. The others (moneyness, ATM IV,
        bars, indicators) run the REST endpoints' code in the database thread."""
        greeks = [f for f in feeds if f.channel == "greeks"]
        others = [f for f in feeds if f.channel != "greeks"]
        out: dict[Feed, bytes | FeedError] = {}
        if greeks:
            out.update(await greeks_read(self._redis, greeks))
        if others:
            out.update(await _compute(others))
        return out
