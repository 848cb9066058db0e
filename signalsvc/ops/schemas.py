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


# -- backpressure ------------------------------------------------------------------------------------------

LEVELS = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
# The 503 note of an endpoint that computes on demand (signalsvc.farm.backpressure.backpressure_guard).
BACKPRESSURE_503 = (
    "backpressure: the worker farm is at CRITICAL (GET /api/v2/ops/backpressure says why); computations "
    "on demand are refused while stored values are still served; Retry-After: BACKPRESSURE_RETRY_AFTER_SECONDS."
)


class ThresholdsSerializer(serializers.Serializer):
    # null: the level is off for this signal (e.g. CPU alone never goes past MEDIUM by default).
    medium = serializers.FloatField(allow_null=True, help_text="null: this signal never makes MEDIUM")
    high = serializers.FloatField(allow_null=True, help_text="null: this signal never makes HIGH")
    critical = serializers.FloatField(allow_null=True, help_text="null: this signal never makes CRITICAL")


class PressureSignalSerializer(serializers.Serializer):
    value = serializers.FloatField(
        allow_null=True,
        help_text="In the unit; null when not measurable (no task finished recently, no CPU sample yet)",
    )
    unit = serializers.CharField()
    level = one_of("BackpressureLevel", *LEVELS, help_text="This signal's own level")
    thresholds = ThresholdsSerializer(help_text="A value at or above a threshold is at least that level")


class PressureSignalsSerializer(serializers.Serializer):
    total_depth = PressureSignalSerializer(help_text="Tasks waiting or unacknowledged, every queue")
    shard_depth = PressureSignalSerializer(help_text="The same, in the deepest greeks.<shard> queue")
    oldest_age = PressureSignalSerializer(help_text="Seconds since the oldest waiting task was published")
    task_wait = PressureSignalSerializer(help_text="p95 of publish -> start of the tasks finished recently")
    task_run = PressureSignalSerializer(help_text="p95 of start -> finish of the same tasks")
    cpu = PressureSignalSerializer(help_text="Host CPU busy, percent of every core")
    memory = PressureSignalSerializer(help_text="Host memory in use, percent")


class QueueDepthSerializer(serializers.Serializer):
    queue = serializers.CharField()
    shard = serializers.IntegerField(allow_null=True, help_text="null for default, ingest, timeframes")
    ready = serializers.IntegerField(help_text="Waiting in the broker, every priority")
    unacked = serializers.IntegerField(help_text="Delivered to a worker, not acknowledged yet")
    total = serializers.IntegerField()
    oldest_age = serializers.FloatField(
        help_text="Seconds since the oldest waiting task was published; 0 when none"
    )


class DepthSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    ready = serializers.IntegerField()
    unacked = serializers.IntegerField()
    deepest_shard = QueueDepthSerializer(allow_null=True, help_text="null when every shard queue is empty")
    queues = QueueDepthSerializer(many=True, help_text="The queues holding a task, deepest first")


class LatencySerializer(serializers.Serializer):
    window_seconds = serializers.FloatField(help_text="Tasks finished within this many seconds count")
    samples = serializers.IntegerField(help_text="Tasks finished in the window")
    wait_p50 = serializers.FloatField(allow_null=True, help_text="Seconds from publish to start")
    wait_p95 = serializers.FloatField(allow_null=True)
    run_p50 = serializers.FloatField(allow_null=True, help_text="Seconds from start to finish")
    run_p95 = serializers.FloatField(allow_null=True)


class BackpressureSerializer(serializers.Serializer):
    level = one_of("BackpressureLevel", *LEVELS, help_text="The worst signal's level")
    level_value = serializers.IntegerField(help_text="0 LOW, 1 MEDIUM, 2 HIGH, 3 CRITICAL")
    set_by = serializers.ListField(
        child=serializers.CharField(), help_text="The signals at that level; empty at LOW"
    )
    measured_at = serializers.DateTimeField(
        help_text="The reading is shared and measured again every few seconds"
    )
    signals = PressureSignalsSerializer()
    depth = DepthSerializer()
    oldest_age = serializers.FloatField(help_text="Seconds")
    latency = LatencySerializer()
    cpu_percent = serializers.FloatField(allow_null=True, help_text="null until a second CPU sample exists")
    memory_percent = serializers.FloatField()
    cadence_factor = serializers.FloatField(help_text="The live recompute interval is stretched by this")
    stream_interval = serializers.FloatField(
        help_text="Seconds between two deliveries of one streaming topic (0: as they come)"
    )
