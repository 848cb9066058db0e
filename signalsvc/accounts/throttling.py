"""Requests per minute per API key (per IP for anonymous clients), from the key's tier.

A moving window of 60 s kept in Redis: one atomic Lua call per request, shared by every web replica,
so a burst from one key across processes cannot exceed its tier (a read-then-write counter in the
cache could). DRF turns a refusal into 429 with ``Retry-After``. If Redis is unreachable the request
is let through and a warning logged: the rate limit is protection, not data, and readiness already
reports Redis down.

Per key, a Redis list holds the times of the requests allowed in the last window, newest first.
Each call first drops the entries that have left the window (from the tail), so the list is bounded
by the window's traffic, never by the tier's limit (the ``limits`` library's moving window trimmed
its list to the limit only: for a tier of 100,000,000/min it kept every request). The times are
Redis's own clock (``TIME``), so the list is in time order whichever web process pushed.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

from signalsvc.redis_clients import lua, redis_client

log = logging.getLogger(__name__)

KEY_PREFIX = "sig:ratelimit:"
WINDOW_US = 60_000_000

# KEYS[1]: the list of allowed requests' times (µs since the epoch, as strings: a Lua number passed
# to Redis is formatted with 14 digits, too few for µs). ARGV: limit, window µs.
# Returns {1, 0} when allowed, {0, µs until a request would be allowed} when refused.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
while true do
  local oldest = redis.call('LINDEX', KEYS[1], -1)
  if not oldest or tonumber(oldest) > now - window then break end
  redis.call('RPOP', KEYS[1])
end
if limit < 1 then return {0, window} end
if redis.call('LLEN', KEYS[1]) >= limit then
  -- Allowed again once the entry at index limit - 1 (and every older one) has left the window.
  return {0, tonumber(redis.call('LINDEX', KEYS[1], limit - 1)) + window - now}
end
redis.call('LPUSH', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])))
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
return {1, 0}
"""


def rate_limit_hit(
    client: redis.Redis, ident: str, *, limit: int, window_us: int = WINDOW_US
) -> float | None:
    """Count one request of ``ident`` if fewer than ``limit`` were allowed in the last ``window_us``
    microseconds: None when allowed, else the seconds until one would be. Raises redis.RedisError."""
    allowed, wait_us = lua(_HIT)(keys=[KEY_PREFIX + ident], args=[limit, window_us], client=client)
    return None if allowed else wait_us / 1e6


# Set in a request's WSGI environ by the fast lane (signalsvc/api/fastlane.py) when it counted the
# request and then handed it to Django: the throttle lets it through uncounted. Not a header name,
# so a client cannot set it.
COUNTED_ENVIRON_KEY = "signalsvc.rate_limit_counted"


def key_rate_limit_hit(key) -> bool:
    """Count one request of an API key against its tier: whether it is allowed. Raises
    redis.RedisError (the throttle lets such a request through; the fast lane hands it to Django)."""
    return (
        rate_limit_hit(redis_client(socket_timeout=2.0), f"key:{key.pk}", limit=key.tier.requests_per_minute)
        is None
    )


class TierRateThrottle(BaseThrottle):
    """The tier's ``requests_per_minute`` for a key; ``API_ANONYMOUS_RATE_PER_MINUTE`` per IP."""

    _wait: float | None = None

    def allow_request(self, request, view) -> bool:
        if request.META.get(COUNTED_ENVIRON_KEY):
            return True
        key = request.auth
        if key is not None:
            limit, ident = key.tier.requests_per_minute, f"key:{key.pk}"
        else:
            limit, ident = settings.API_ANONYMOUS_RATE_PER_MINUTE, f"ip:{self.get_ident(request)}"
        try:
            self._wait = rate_limit_hit(redis_client(socket_timeout=2.0), ident, limit=limit)
        except redis.RedisError as exc:
            log.warning("rate limit not checked (Redis unavailable: %s)", exc)
            self._wait = None
            return True
        return self._wait is None

    def wait(self) -> float | None:
        """Seconds until the oldest request of the window leaves it (DRF sends it as Retry-After),
        from the refusing call itself (no second round trip)."""
        return None if self._wait is None else max(self._wait, 1.0)
