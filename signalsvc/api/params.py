"""Parsing of common query parameters: times and ranges (SPEC §9)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.conf import settings

from signalsvc.api.errors import ApiError


def parse_time(name: str, text: str | None, *, required: bool = True) -> dt.datetime | None:
    """ISO-8601 date or datetime; naive values are in the market time zone."""
    if text in (None, ""):
        if required:
            raise ApiError(
                status_code=400, code="missing_parameter", message=f"{name} is required (ISO-8601)"
            )
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace(" ", "+") if "T" in text and " " in text else text)
    except ValueError:
        raise ApiError(
            status_code=400,
            code="invalid_parameter",
            message=f"{name}='{text}' is not an ISO-8601 time (e.g. 2025-07-10T09:15:00+05:30)",
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(settings.MARKET_TIMEZONE))
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # e.g. a naive 0001-01-01 in IST lies before datetime.min in UTC
        raise ApiError(
            status_code=400, code="invalid_parameter", message=f"{name}='{text}' is out of range"
        ) from None


def parse_range(
    params, *, max_days: int | None = None, default_days: float | None = None
) -> tuple[dt.datetime, dt.datetime]:
    """``start_time`` and ``end_time``: end after start, at most ``max_days`` (default
    API_HISTORICAL_MAX_DAYS) apart. With ``default_days`` both are optional: end defaults to now and
    start to ``default_days`` before end."""
    optional = default_days is not None
    end = parse_time("end_time", params.get("end_time"), required=not optional) or dt.datetime.now(dt.UTC)
    start = parse_time("start_time", params.get("start_time"), required=not optional) or (
        end - dt.timedelta(days=default_days or 0)
    )
    if end <= start:
        raise ApiError(status_code=400, code="invalid_range", message="end_time must be after start_time")
    limit = max_days if max_days is not None else settings.API_HISTORICAL_MAX_DAYS
    if end - start > dt.timedelta(days=limit):
        raise ApiError(
            status_code=400, code="range_too_large", message=f"the range may span at most {limit} days"
        )
    return start, end
