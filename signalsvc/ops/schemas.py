"""OpenAPI documentation of the health endpoints' bodies (documentation only; see
``signalsvc.api.schemas``)."""

from __future__ import annotations

from rest_framework import serializers

from signalsvc.api.schemas import one_of


class LiveSerializer(serializers.Serializer):
    status = one_of("LiveStatus", "alive")


class CheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    latency_ms = serializers.FloatField(required=False, help_text="When ok")
    error = serializers.CharField(
        required=False, help_text="When not ok: the exception, at most 300 characters"
    )


class ChecksSerializer(serializers.Serializer):
    postgres = CheckSerializer()
    redis = CheckSerializer()
    broker = CheckSerializer()


class CalendarStatusSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="MARKET_CALENDAR")
    extra_holidays = serializers.IntegerField(help_text="Holidays listed in MARKET_EXTRA_HOLIDAYS")
    holidays_known_until = serializers.DateField(
        required=False, help_text="Absent for a calendar without holidays (NSE-DEMO)"
    )
    warning = serializers.CharField(required=False, help_text="Within 30 days of holidays_known_until")


class ReadinessSerializer(serializers.Serializer):
    """The same body with 200 (every check ok) and 503 (any check failed)."""

    status = one_of("ReadinessStatus", "ready", "not_ready")
    checks = ChecksSerializer()
    calendar = CalendarStatusSerializer()
