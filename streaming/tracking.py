"""Book-keeping of connections and subscriptions, off the delivery path.

* Connections per API key, across every web process: a Redis sorted set per key of connection ids
  scored by an expiry time, refreshed every heartbeat, so the connections of a process that died
  stop counting after three heartbeats without anyone cleaning up.
* ``signal_websocket_subscriptions`` rows (admin): one per active subscription.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from streaming.models import WebSocketSubscription

_PREFIX = "ws:conns:"
# Drop expired members, count, and add this connection if there is room: one atomic call.
_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""
_clients: dict = {}


def _redis() -> aioredis.Redis:
    import asyncio

    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = aioredis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2
        )
    return client


def _lease() -> float:
    return 3 * settings.WEBSOCKET_HEARTBEAT_INTERVAL + 30


async def connection_claim(key_id: int, connection_id: str, limit: int) -> bool:
    now = time.time()
    lease = _lease()
    return bool(
        await _redis().eval(
            _CLAIM, 1, f"{_PREFIX}{key_id}", now, now + lease, limit, connection_id, int(lease) + 60
        )
    )


async def connection_release(key_id: int, connection_id: str) -> None:
    await _redis().zrem(f"{_PREFIX}{key_id}", connection_id)


@database_sync_to_async
def subscription_add(consumer, sub) -> None:
    now = timezone.now()
    WebSocketSubscription.objects.update_or_create(
        connection_id=consumer.connection_id,
        subscription_key=sub.key[:512],
        defaults={
            "node": consumer.node,
            "client_id": consumer.client_id,
            "api_key": getattr(consumer.api_key, "prefix", "") or "",
            "channel": sub.feed.channel,
            "instrument_key": sub.instrument_key[:128],
            "params": sub.feed.params_dict,
            "last_seen": now,
        },
    )


@database_sync_to_async
def subscription_remove(connection_id: str, subscription_key: str) -> None:
    WebSocketSubscription.objects.filter(
        connection_id=connection_id, subscription_key=subscription_key
    ).delete()


@database_sync_to_async
def _forget(connection_id: str) -> None:
    WebSocketSubscription.objects.filter(connection_id=connection_id).delete()


async def connection_forget(connection_id: str) -> None:
    await _forget(connection_id)


@database_sync_to_async
def _touch(connection_id: str) -> None:
    WebSocketSubscription.objects.filter(connection_id=connection_id).update(last_seen=timezone.now())


async def connection_touch(consumer) -> None:
    await _touch(consumer.connection_id)
    if consumer.api_key is not None:
        await _redis().zadd(
            f"{_PREFIX}{consumer.api_key.pk}", {consumer.connection_id: time.time() + _lease()}
        )
