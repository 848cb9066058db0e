from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets

import redis
from django.db import transaction

from signalsvc.accounts.models import ApiKey, Subscription, Tier
from signalsvc.redis_clients import redis_client

log = logging.getLogger(__name__)

KEY_PREFIX = "sk"
AUTH_VERSION_KEY = "auth:version"


# The public part of a key as api_key_create makes it (8 hex digits); the pattern admits any short
# alphanumeric one, so that a malformed value never reaches the database (a NUL byte would fail there).
_PREFIX_RE = re.compile(r"[A-Za-z0-9]{1,16}")


def digest_of(raw_key: str) -> str:
    """SHA-256 of the whole key, hex: what is stored (``ApiKey.digest``)."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def prefix_of(raw_key: str) -> str | None:
    """The public prefix of a key shaped ``sk_<prefix>_<secret>``, or None for any other shape."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[2] or not _PREFIX_RE.fullmatch(parts[1]):
        return None
    return parts[1]


@transaction.atomic
def api_key_create(
    *, subscription: Subscription, name: str, can_write: bool = False, expires_at: dt.datetime | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the raw key, which is never stored and cannot be shown again."""
    prefix = secrets.token_hex(4)
    raw = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        subscription=subscription,
        name=name,
        prefix=prefix,
        digest=digest_of(raw),
        can_write=can_write,
        expires_at=expires_at,
    )
    return key, raw


class SubscriptionMismatch(ValueError):
    """An existing subscription or tier differs from what was asked for."""


def subscription_get_or_create(
    *, name: str, tier_name: str | None = None, requests_per_minute: int | None = None
) -> Subscription:
    """The subscription ``name``, created on ``tier_name`` (default "standard", created with
    ``requests_per_minute`` when missing) if it does not exist. Asking for a tier or a rate that
    an existing subscription or tier does not have raises ``SubscriptionMismatch`` rather than
    silently handing out a key with other limits."""
    existing = Subscription.objects.select_related("tier").filter(name=name).first()
    if existing is not None:
        if tier_name is not None and existing.tier.name != tier_name:
            raise SubscriptionMismatch(
                f"subscription {name!r} is on tier {existing.tier.name!r}, not {tier_name!r}: "
                "name another subscription, or change its tier in the admin"
            )
        tier = existing.tier
    else:
        defaults = {} if requests_per_minute is None else {"requests_per_minute": requests_per_minute}
        tier, _ = Tier.objects.get_or_create(name=tier_name or "standard", defaults=defaults)
    if requests_per_minute is not None and tier.requests_per_minute != requests_per_minute:
        raise SubscriptionMismatch(
            f"tier {tier.name!r} allows {tier.requests_per_minute} requests/minute, not {requests_per_minute}: "
            "name a new tier, or change this one in the admin"
        )
    if existing is not None:
        return existing
    subscription, _ = Subscription.objects.get_or_create(name=name, defaults={"tier": tier})
    return subscription


def api_key_touch(*, key: ApiKey, now: dt.datetime | None = None) -> None:
    """Record use, at most once a minute per key: a write per request would cost more than the request."""
    now = now or dt.datetime.now(dt.UTC)
    if key.last_used_at is None or now - key.last_used_at > dt.timedelta(minutes=1):
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now


def api_key_revoke(*, key: ApiKey) -> None:
    """Deactivate a key; every process stops accepting it within a second."""
    key.active = False
    key.save(update_fields=["active"])  # the post_save receiver bumps the auth version


def auth_version_bump() -> None:
    """Tell every process that keys, subscriptions or tiers changed: this process forgets its cached
    keys now, the others when they next compare the Redis version (at most every
    ``API_KEY_VERSION_CHECK_SECONDS``). Bumped at once and again after the commit, so no process can
    keep what it read between the two."""
    from signalsvc.accounts.selectors import api_key_cache_clear

    def bump() -> None:
        api_key_cache_clear()
        try:
            redis_client(decode_responses=False, socket_timeout=1.0).incr(AUTH_VERSION_KEY)
        except redis.RedisError as exc:  # the other processes do not trust their caches without Redis
            log.warning("could not bump %s: %s", AUTH_VERSION_KEY, exc)

    bump()
    transaction.on_commit(bump)


def auth_changed(sender, **kwargs) -> None:
    """post_save / post_delete receiver of ApiKey, Subscription and Tier (accounts/apps.py): any
    change to who may call what, from any code path (admin, services, shell), invalidates the key
    caches. ``api_key_touch`` writes ``last_used_at`` with ``update()``, which sends no signal."""
    auth_version_bump()
