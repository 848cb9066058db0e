"""Fixtures of the farm's tests: the broker's Redis, and the backpressure level forgotten around each test."""

from __future__ import annotations

import pytest
import redis as redis_lib
from django.conf import settings

from signalsvc.farm.backpressure import backpressure_forget


@pytest.fixture(autouse=True)
def _forget_the_level():
    backpressure_forget()
    yield
    backpressure_forget()


@pytest.fixture
def broker(redis_client):
    """The broker's Redis (emptied with the test's database), strings in and out."""
    return redis_lib.Redis.from_url(settings.CELERY_BROKER_URL, decode_responses=True)
