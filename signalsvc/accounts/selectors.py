"""Reads of API keys, cached in each process.

A request authenticated by ``X-API-Key`` used to cost an indexed query. Keys are now kept in an
in-process cache (``API_KEY_CACHE_SECONDS``, 60 s), invalidated everywhere through one Redis
counter, ``auth:version``: every change to a key, subscription or tier increments it (and clears
this process's cache at once), and each process compares its last seen value at most every
``API_KEY_VERSION_CHECK_SECONDS`` (0.5 s). A revoked, deactivated or re-tiered key therefore stops
working on every process within a second; an expired one at once (``expires_at`` is checked on
every request). While Redis cannot be read the cache is not trusted and every lookup goes to
PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import threading
import time

import redis
from cachetools import TTLCache
from django.conf import settings

from signalsvc.accounts.models import ApiKey
from signalsvc.accounts.services import AUTH_VERSION_KEY, digest_of, prefix_of
from signalsvc.redis_clients import redis_client

log = logging.getLogger(__name__)
_MISSING = object()


class _KeyCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: TTLCache = TTLCache(maxsize=10_000, ttl=settings.API_KEY_CACHE_SECONDS)
        self._version: bytes | None = None
        self._checked_at = float("-inf")
        self._trusted = False

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
            self._checked_at = float("-inf")

    def _check_version(self) -> bool:
        """Whether the cache may be used: the Redis version read at most every check interval
        (a changed version empties the cache)."""
        now = time.monotonic()
        if now - self._checked_at < settings.API_KEY_VERSION_CHECK_SECONDS:
            return self._trusted
        try:
            version = redis_client(decode_responses=False, socket_timeout=0.25).get(AUTH_VERSION_KEY)
        except redis.RedisError as exc:
            log.warning("auth cache off: cannot read %s (%s)", AUTH_VERSION_KEY, exc)
            with self._lock:
                self._keys.clear()
                self._checked_at, self._trusted = now, False
            return False
        with self._lock:
            if version != self._version:
                self._keys.clear()
                self._version = version
            self._checked_at, self._trusted = now, True
        return True

    def get(self, prefix: str):
        if not self._check_version():
            return _MISSING
        with self._lock:
            return self._keys.get(prefix, _MISSING)

    def put(self, prefix: str, key: ApiKey | None) -> None:
        if self._trusted:
            with self._lock:
                self._keys[prefix] = key


_cache: _KeyCache | None = None


def _key_cache() -> _KeyCache:
    global _cache
    if _cache is None:
        _cache = _KeyCache()
    return _cache


def api_key_cache_clear() -> None:
    """Forget every cached key in this process (the version bump does it; tests too)."""
    if _cache is not None:
        _cache.clear()


def api_key_for(*, raw_key: str) -> ApiKey | None:
    """The active, unexpired key whose secret is ``raw_key``, or None.

    The row is found by the key's public prefix, and the stored digest is then compared with the
    digest of ``raw_key`` in constant time (``hmac.compare_digest``): how long a refusal takes says
    nothing about how much of a guessed secret was right."""
    prefix = prefix_of(raw_key)
    if prefix is None:  # not shaped like a key this service issues: nothing to look up
        return None
    digest = digest_of(raw_key)
    cache = _key_cache()
    key = cache.get(prefix)
    if key is _MISSING:
        # Unknown prefixes are cached too (as None): a flood of bad keys costs no queries.
        key = (
            ApiKey.objects.select_related("subscription__tier")
            .filter(prefix=prefix, active=True, subscription__active=True)
            .first()
        )
        cache.put(prefix, key)
    if key is None or not hmac.compare_digest(key.digest, digest):
        return None
    if key.expires_at is not None and key.expires_at <= dt.datetime.now(dt.UTC):
        return None
    return key
