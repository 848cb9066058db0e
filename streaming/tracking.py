"""Book-keeping of connections and subscriptions, off the delivery path.

* Connections per API key, across every web process: a Redis sorted set per key of connection ids
  scored by an expiry time, so the connections of a process that died stop counting after three
  heartbeats without anyone cleaning up. Claimed atomically at connect.
* ``signal_websocket_subscriptions`` rows (admin): one per active subscription. Writes are queued
  and applied by one task per process every ``FLUSH_SECONDS`` (bulk insert, one delete), and the
  process touches all its rows (and its keys' leases) once per heartbeat interval: 10,000
  connections cost a few statements a second, not a statement per subscribe and per heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from streaming.loops import PerLoop
from streaming.models import WebSocketSubscription

log = logging.getLogger(__name__)

NODE = f"{socket.gethostname()}:{os.getpid()}"
FLUSH_SECONDS = 0.5
_PREFIX = "ws:conns:"
# Drop expired members, count, and add this connection if there is room: one atomic call.
_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def _lease() -> float:
    return 3 * settings.WEBSOCKET_HEARTBEAT_INTERVAL + 30


class Tracker:
    """This event loop's queue of row changes and its live keyed connections."""

    def __init__(self) -> None:
        self._redis = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        self._added: dict[tuple[str, str], WebSocketSubscription] = {}
        self._removed: set[tuple[str, str]] = set()
        self._gone: set[str] = set()  # connections whose rows all go
        self.keyed: dict[str, int] = {}  # connection id -> API key id, for the lease refresh
        self._flusher: asyncio.Task | None = None
        self._toucher: asyncio.Task | None = None

    def _start(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())
        if self._toucher is None or self._toucher.done():
            self._toucher = asyncio.create_task(self._touch_loop())

    # -- connections per key -----------------------------------------------------------------

    async def claim(self, key_id: int, connection_id: str, limit: int) -> bool:
        now = time.time()
        lease = _lease()
        ok = bool(
            await self._redis.eval(
                _CLAIM, 1, f"{_PREFIX}{key_id}", now, now + lease, limit, connection_id, int(lease) + 60
            )
        )
        if ok:
            self.keyed[connection_id] = key_id
            self._start()
        return ok

    async def release(self, key_id: int, connection_id: str) -> None:
        self.keyed.pop(connection_id, None)
        await self._redis.zrem(f"{_PREFIX}{key_id}", connection_id)

    # -- rows ------------------------------------------------------------------------------------

    def subscription_add(self, consumer, sub) -> None:
        ident = (consumer.connection_id, sub.key[:512])
        self._removed.discard(ident)
        self._added[ident] = WebSocketSubscription(
            node=NODE,
            connection_id=consumer.connection_id,
            client_id=consumer.client_id,
            api_key=getattr(consumer.api_key, "prefix", "") or "",
            channel=sub.feed.channel,
            subscription_key=sub.key[:512],
            instrument_key=sub.instrument_key[:128],
            params=sub.feed.params_dict,
            last_seen=timezone.now(),
        )
        self._start()

    def subscription_remove(self, connection_id: str, subscription_key: str) -> None:
        ident = (connection_id, subscription_key[:512])
        if self._added.pop(ident, None) is None:
            self._removed.add(ident)

    def connection_forget(self, connection_id: str) -> None:
        for ident in [i for i in self._added if i[0] == connection_id]:
            del self._added[ident]
        self._removed = {i for i in self._removed if i[0] != connection_id}
        self._gone.add(connection_id)

    async def flush(self) -> None:
        added, removed, gone = list(self._added.values()), self._removed, self._gone
        self._added, self._removed, self._gone = {}, set(), set()
        if added or removed or gone:
            try:
                await _write(added, removed, gone)
            except DatabaseError as exc:  # kept for the next flush: the rows are book-keeping
                log.warning("websocket tracking not written yet: %s", exc)
                for row in added:
                    self._added.setdefault((row.connection_id, row.subscription_key), row)
                self._removed |= removed
                self._gone |= gone

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()

    async def _touch_loop(self) -> None:
        while True:
            await asyncio.sleep(settings.WEBSOCKET_HEARTBEAT_INTERVAL)
            try:
                await _touch()
                if self.keyed:
                    expires = time.time() + _lease()
                    pipe = self._redis.pipeline(transaction=False)
                    for connection_id, key_id in self.keyed.items():
                        pipe.zadd(f"{_PREFIX}{key_id}", {connection_id: expires})
                    await pipe.execute()
            except (DatabaseError, aioredis.RedisError, OSError) as exc:
                log.warning("websocket leases not refreshed: %s", exc)


@database_sync_to_async
def _write(added, removed, gone) -> None:
    if gone:
        WebSocketSubscription.objects.filter(connection_id__in=gone).delete()
    for connection_id, key in removed:
        WebSocketSubscription.objects.filter(connection_id=connection_id, subscription_key=key).delete()
    if added:
        WebSocketSubscription.objects.bulk_create(added, ignore_conflicts=True)


@database_sync_to_async
def _touch() -> None:
    WebSocketSubscription.objects.filter(node=NODE).update(last_seen=timezone.now())


_trackers: PerLoop[Tracker] = PerLoop(lambda: Tracker())


def tracker() -> Tracker:
    return _trackers.get()
