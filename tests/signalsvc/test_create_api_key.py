"""manage.py create_api_key: a key on the tier asked for, or a clear refusal."""

import io

import pytest
from django.core.management import CommandError, call_command

from signalsvc.accounts.models import ApiKey
from signalsvc.accounts.services import digest_of

pytestmark = pytest.mark.django_db


def _create(**options) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", stdout=out, stderr=err, **options)
    return out.getvalue().strip()


def test_the_key_is_printed_once_and_stored_as_a_digest():
    raw = _create(name="desk", write=True)

    key = ApiKey.objects.select_related("subscription__tier").get()
    assert key.digest == digest_of(raw) and raw not in (key.digest, key.prefix)
    assert (key.name, key.can_write, key.subscription.name, key.tier.name) == (
        "desk",
        True,
        "default",
        "standard",
    )


def test_a_new_subscription_gets_the_tier_and_rate_asked_for():
    _create(subscription="desk", tier="pro", rpm=5000)

    tier = ApiKey.objects.get().tier
    assert (tier.name, tier.requests_per_minute) == ("pro", 5000)


def test_asking_an_existing_subscription_for_another_tier_is_refused():
    _create(subscription="desk", tier="pro", rpm=5000)
    _create(subscription="desk")  # no tier named: the subscription's own

    with pytest.raises(CommandError, match="subscription 'desk' is on tier 'pro', not 'standard'"):
        _create(subscription="desk", tier="standard")
    with pytest.raises(CommandError, match="tier 'pro' allows 5000 requests/minute, not 10"):
        _create(subscription="other", tier="pro", rpm=10)
    assert ApiKey.objects.count() == 2
