from django.db import models


class Tier(models.Model):
    """What a subscription may use (SPEC §9)."""

    name = models.CharField(max_length=64, unique=True)
    requests_per_minute = models.PositiveIntegerField(default=600)
    websocket_connections = models.PositiveIntegerField(default=5)
    subscriptions_per_connection = models.PositiveIntegerField(default=100)

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    name = models.CharField(max_length=128, unique=True, help_text="customer or team")
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="subscriptions")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.tier})"


class ApiKey(models.Model):
    """An API key. Only a SHA-256 digest of the secret is stored: keys are 256-bit random
    tokens, so a fast hash is enough (unlike passwords there is nothing to brute-force), and it
    keeps authentication to one indexed lookup. The full key is shown once, at creation."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=128)
    prefix = models.CharField(max_length=16, unique=True, help_text="public part shown in admin and logs")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    active = models.BooleanField(default=True)
    can_write = models.BooleanField(default=False, help_text="may post market data")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def tier(self) -> Tier:
        return self.subscription.tier

    # DRF treats request.auth truthiness; keep it explicit.
    @property
    def is_authenticated(self) -> bool:
        return True
