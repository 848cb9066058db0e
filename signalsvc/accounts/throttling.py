"""Requests per minute per API key (per IP for anonymous clients), from the key's tier.

A moving window of 60 s kept in Redis by the ``limits`` library: one atomic Lua call per request,
shared by every web replica, so a burst from one key across processes cannot exceed its tier (a
read-then-write counter in the cache could). DRF turns a refusal into 429 with ``Retry-After``.
If Redis is unreachable the request is let through and a warning logged: the rate limit is
protection, not data, and readiness already reports Redis down.
"""

from __future__ import annotations

import logging
import time
from functools import cache

from django.conf import settings
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from rest_framework.throttling import BaseThrottle

log = logging.getLogger(__name__)


@cache
def _limiter(redis_url: str) -> MovingWindowRateLimiter:
    storage = RedisStorage(
        redis_url,
        key_prefix="sig:ratelimit",
        wrap_exceptions=True,
        socket_connect_timeout=2,
        socket_timeout=2,
    )
    return MovingWindowRateLimiter(storage)


@cache
def _per_minute(requests: int) -> RateLimitItemPerMinute:
    return RateLimitItemPerMinute(requests)


class TierRateThrottle(BaseThrottle):
    """The tier's ``requests_per_minute`` for a key; ``API_ANONYMOUS_RATE_PER_MINUTE`` per IP."""

    def allow_request(self, request, view) -> bool:
        key = request.auth
        if key is not None:
            self.item, self.ident = _per_minute(key.tier.requests_per_minute), f"key:{key.pk}"
        else:
            self.item, self.ident = (
                _per_minute(settings.API_ANONYMOUS_RATE_PER_MINUTE),
                f"ip:{self.get_ident(request)}",
            )
        self.limiter = _limiter(settings.REDIS_URL)
        try:
            return self.limiter.hit(self.item, self.ident)
        except StorageError as exc:
            log.warning("rate limit not checked (Redis unavailable: %s)", exc)
            return True

    def wait(self) -> float | None:
        """Seconds until the oldest request of the window leaves it (DRF sends it as Retry-After)."""
        try:
            stats = self.limiter.get_window_stats(self.item, self.ident)
        except StorageError:
            return None
        return max(stats.reset_time - time.time(), 1.0)
