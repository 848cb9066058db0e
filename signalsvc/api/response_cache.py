"""Historical responses cached under the version of the data they were computed from.

Greeks, ATM IV and moneyness history are written only by an underlying's chain computation, in
one transaction, after which the chain service gives the underlying a new random **chain
version** (``chain:ver:<underlying key>``). A historical response on that underlying is stored
under its identity (the view, its path arguments and the query) with the version read *before*
its rows were read, and served as stored while
the version holds: one Redis round trip (``MGET`` of the version and the entry) instead of the
query and the bucketing (a month of 5-minute ATM IV cost ~30 ms a request). The response of a
request that raced a computation carries the old stamp and is recomputed by the next reader. A
lost version is replaced by a fresh random one (never a reused value), so no stale entry can
match it. Rows written by other means (bulk loads, retention) show after
``HISTORY_CACHE_TTL_SECONDS`` at the latest. Only successes are stored (an error is an exception).
The view and the fast lane (signalsvc/api/fastlane.py) share the entries.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import redis
from django.conf import settings

from signalsvc.redis_clients import VERSION_BYTES, redis_client, version_get

log = logging.getLogger(__name__)

VERSION_PREFIX = "chain:ver:"
ENTRY_PREFIX = "resp:"


def chain_version_key(underlying_key: str) -> str:
    return VERSION_PREFIX + underlying_key


def _client() -> redis.Redis:
    return redis_client(decode_responses=False, socket_timeout=2)


def response_identity(view: type, kwargs: dict, query) -> str:
    """What names a response: the view, its path arguments and its query (a QueryDict)."""
    return f"{view.__qualname__}|{sorted(kwargs.items())}|{query.urlencode()}"


def versioned(identity: str, *, version_key: str, compute: Callable[[], bytes]) -> bytes:
    """``compute()``'s body, from the cache when it was stored under the current version of its data
    (``chain_version_key``: an underlying's stored rows; the moneyness snapshot's, for realtime)."""
    entry_key = ENTRY_PREFIX + hashlib.sha1(identity.encode()).hexdigest()
    client = _client()
    try:
        version, entry = client.mget(version_key, entry_key)
        if version is not None and entry is not None and entry[:VERSION_BYTES] == version:
            return entry[VERSION_BYTES:]
        if version is None:
            version = version_get(client, version_key)
    except redis.RedisError as exc:  # the cache is an accelerator: answer from PostgreSQL
        log.warning("history cache unavailable: %s", exc)
        return compute()
    body = compute()
    if version is not None:
        try:
            client.set(entry_key, version + body, ex=settings.HISTORY_CACHE_TTL_SECONDS)
        except redis.RedisError as exc:
            log.warning("history cache not written: %s", exc)
    return body
