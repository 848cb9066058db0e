from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class TierRateThrottle(SimpleRateThrottle):
    """Requests per minute from the key's tier (anonymous clients: per IP, a setting). Counts are
    kept in the Redis cache so every web replica shares them; DRF adds Retry-After on 429."""

    scope = "tier"

    def get_rate(self):
        return None  # set per request in allow_request

    def allow_request(self, request, view):
        key = request.auth
        if key is not None:
            self.num_requests, self.duration = key.tier.requests_per_minute, 60
            self.key = self.cache_format % {"scope": self.scope, "ident": f"key:{key.pk}"}
        else:
            self.num_requests, self.duration = settings.API_ANONYMOUS_RATE_PER_MINUTE, 60
            self.key = self.cache_format % {"scope": self.scope, "ident": f"ip:{self.get_ident(request)}"}
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        if len(self.history) >= self.num_requests:
            return self.throttle_failure()
        return self.throttle_success()

    def get_cache_key(self, request, view):  # pragma: no cover - allow_request computes it
        return self.key
