"""Shared Redis clients: one connection pool per (URL, options) in each process.

A client made per call opens a new TCP connection per call (a request paid ~2 ms for it). The URL
is read from settings at each call, so a changed ``REDIS_URL`` (tests) gets its own client; redis-py
pools notice a fork and reconnect in the child.
"""

from __future__ import annotations

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
