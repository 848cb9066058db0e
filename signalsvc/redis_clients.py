"""Shared Redis clients: one connection pool per (URL, options) in each process.

A client made per call opens a new TCP connection per call (a request paid ~2 ms for it). The URL
is read from settings at each call, so a changed ``REDIS_URL`` (tests) gets its own client; redis-py
pools notice a fork and reconnect in the child.
"""

from __future__ import annotations

import secrets
from functools import cache, lru_cache

import redis
from django.conf import settings
from redis.commands.core import Script


@lru_cache(maxsize=32)
def _client(url: str, decode_responses: bool, socket_timeout: float) -> redis.Redis:
    return redis.Redis.from_url(
        url, decode_responses=decode_responses, socket_timeout=socket_timeout, socket_connect_timeout=2
    )


def redis_client(*, decode_responses: bool = True, socket_timeout: float = 5.0) -> redis.Redis:
    return _client(settings.REDIS_URL, decode_responses, socket_timeout)


def client_for_url(url: str, *, decode_responses: bool = False, socket_timeout: float = 5.0) -> redis.Redis:
    """A shared client of another Redis URL (the Celery broker's, when it is not REDIS_URL)."""
    return _client(url, decode_responses, socket_timeout)


@cache
def lua(script: str) -> Script:
    """A Lua script, hashed once per process (``client.register_script`` hashes it on every call, on
    every request for the rate limit); run it with ``lua(TEXT)(keys=..., args=..., client=...)``:
    EVALSHA, and the text again after a Redis restart. The client given here only encodes."""
    return Script(redis.Redis(), script)


# Data versions: random tokens in Redis that a writer replaces after each change. A cached value
# is stamped with the version read before its data and served while the version holds. Random,
# never a counter, so that a version lost from Redis can never come back and vouch for an old value.
VERSION_BYTES = 16


def version_new() -> bytes:
    return secrets.token_bytes(VERSION_BYTES)


def version_get(client: redis.Redis, key: str) -> bytes:
    """The current version under ``key``, made if Redis has none (first use, or lost)."""
    token = client.get(key)
    if token is None:
        client.set(key, version_new(), nx=True)
        token = client.get(key)
    return token


# Replace a hash with a newer computation's fields, never with an older one (a retried, late or
# stolen task must not undo a newer result), then optionally set a version key and publish one
# message, all atomically. KEYS[1]: the hash; KEYS[2] (optional): a version key.
# ARGV: source_us, ttl seconds, channel, message, version, then field/value pairs.
_HASH_REPLACE_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], 'source_us')
if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'source_us', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
if #KEYS > 1 then redis.call('SET', KEYS[2], ARGV[5]) end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""
SOURCE_FIELD = "source_us"


def hash_replace_if_newer(
    client: redis.Redis,
    key: str,
    *,
    source_us: int,
    ttl: int,
    fields: list,
    channel: str,
    message: bytes | str,
    version_key: str | None = None,
) -> bool:
    """Store ``fields`` (flat field/value list) as the whole hash ``key`` when ``source_us`` is
    not older than what it holds (field ``source_us``); then set ``version_key`` to a new version
    and publish ``message`` on ``channel``. Returns whether it was written. EVALSHA: the script is
    loaded once per server (redis-py resends the text after a restart)."""
    keys = [key] if version_key is None else [key, version_key]
    args = [source_us, ttl, channel, message, version_new(), *fields]
    return bool(lua(_HASH_REPLACE_IF_NEWER)(keys=keys, args=args, client=client))
