"""Storage of the timeframes app (SPEC §8, §12); see docs/timeframes.md "Storage, rollups, cache".

* ``timeframe_rollup``: OHLCV buckets of the standard timeframes (5m 15m 30m 1h 4h 1d), range-
  partitioned by month on ``bucket_start``, written only by ``services.rollups_refresh``.
* ``timeframe_rollup_watermark``: how far each rollup (and the bar cache) has processed
  ``market_bar_1m.updated_at``.
* ``signal_custom_timeframes``: which custom timeframes clients use, per instrument, with request
  and cache counters (flushed from Redis every minute by the rollup task).
"""

from django.db import models

from signalsvc.instruments.models import Instrument


class Rollup(models.Model):
    """One bucket of a standard timeframe. ``bucket_start`` is the label (UTC); the bucket covers
    ``[bucket_start, bucket_end)`` and never crosses a session close. ``bars`` is the number of
    1-minute bars aggregated; ``oi`` is NULL when no bar of the bucket has open interest."""

    pk = models.CompositePrimaryKey("instrument_id", "timeframe", "bucket_start")
    instrument = models.ForeignKey(
        Instrument, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    timeframe = models.CharField(max_length=4)
    bucket_start = models.DateTimeField()
    bucket_end = models.DateTimeField()
    session_date = models.DateField(help_text="trading date of the bucket's session")
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField()
    oi = models.FloatField(null=True)
    bars = models.IntegerField()
    computed_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "timeframe_rollup"


class RollupWatermark(models.Model):
    """Progress of the incremental refresh per tracker: a standard timeframe label, or ``cache``
    (the Redis bar cache's invalidation). Every 1-minute bar with ``updated_at <= watermark`` is
    reflected in the rollup (or has invalidated the cache); newer ones are read from
    ``market_bar_1m`` directly. NULL = nothing processed yet."""

    timeframe = models.CharField(max_length=8, primary_key=True)
    watermark = models.DateTimeField(null=True)
    refreshed_at = models.DateTimeField(null=True)
    last_rows = models.BigIntegerField(default=0, help_text="1-minute bars seen by the last refresh")
    last_buckets = models.BigIntegerField(default=0, help_text="buckets re-aggregated by the last refresh")
    last_duration_ms = models.FloatField(null=True)

    class Meta:
        db_table = "timeframe_rollup_watermark"
        ordering = ["timeframe"]

    def __str__(self) -> str:
        return f"{self.timeframe} @ {self.watermark}"


class CustomTimeframe(models.Model):
    """A custom (non-standard) timeframe requested for an instrument. Custom buckets themselves
    live in the Redis cache (they are cheap to recompute and the cache is exact); this table is
    the durable record of which ones are used and how well the cache serves them."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="+")
    timeframe = models.CharField(max_length=16, help_text="canonical label, e.g. 7m, 90m, 2h")
    minutes = models.PositiveIntegerField()
    first_requested_at = models.DateTimeField()
    last_requested_at = models.DateTimeField()
    request_count = models.BigIntegerField(default=0)
    sessions_from_cache = models.BigIntegerField(default=0, help_text="sessions served from the Redis cache")
    sessions_computed = models.BigIntegerField(default=0, help_text="sessions aggregated in PostgreSQL")

    class Meta:
        db_table = "signal_custom_timeframes"
        constraints = [
            models.UniqueConstraint(fields=["instrument", "timeframe"], name="custom_timeframe_unique")
        ]
        ordering = ["-last_requested_at"]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.timeframe}"

    @property
    def cache_hit_ratio(self) -> float | None:
        total = self.sessions_from_cache + self.sessions_computed
        return self.sessions_from_cache / total if total else None
