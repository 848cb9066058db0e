"""signal_custom_timeframes and the rollup watermarks are visible in the Django admin."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import admin
from django.contrib.auth.models import User

from timeframes.models import CustomTimeframe, RollupWatermark

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = User.objects.create_superuser("admin", "admin@example.com", "pw-for-tests")
    client.force_login(user)
    return client


def test_models_are_registered():
    assert admin.site.is_registered(CustomTimeframe)
    assert admin.site.is_registered(RollupWatermark)
    assert CustomTimeframe._meta.db_table == "signal_custom_timeframes"


def test_custom_timeframes_changelist(staff_client, spot):
    now = dt.datetime(2025, 3, 12, 4, 0, tzinfo=dt.UTC)
    CustomTimeframe.objects.create(
        instrument=spot,
        timeframe="7m",
        minutes=7,
        first_requested_at=now,
        last_requested_at=now,
        request_count=3,
    )

    response = staff_client.get("/admin/timeframes/customtimeframe/")

    assert response.status_code == 200
    assert b"NSE@NIFTY@equity_spot" in response.content
    assert b"7m" in response.content


def test_watermarks_changelist(staff_client):
    RollupWatermark.objects.create(timeframe="5m", watermark=dt.datetime(2025, 3, 12, 4, 0, tzinfo=dt.UTC))

    response = staff_client.get("/admin/timeframes/rollupwatermark/")

    assert response.status_code == 200
    assert b"5m" in response.content
