"""Shared Redis clients: one connection pool per (URL, options) in each process.

A client made per call opens a new TCP connection per call (a request paid ~2 ms for it). The URL
is read from settings at each call, so a changed ``REDIS_URL`` (tests) gets its own client; redis-py
pools notice a fork and reconnect in the child.
"""

from __future__ import annotations

import secrets
from functools import lru_cache

import redis
from django.conf import settings


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
