from django.db import models


class ApiMetric(models.Model):
    """Requests aggregated per API key, endpoint and minute (not one row per request)."""

    minute = models.DateTimeField()
    api_key = models.CharField(max_length=32, help_text="key prefix, or 'anonymous'")
    endpoint = models.CharField(max_length=200, help_text="route pattern, e.g. api/v2/market/bars/<key>")
    method = models.CharField(max_length=8)
    count = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0, help_text="responses with status >= 400")
    server_errors = models.PositiveIntegerField(default=0, help_text="responses with status >= 500")
    latency_p50_ms = models.FloatField(null=True)
    latency_p95_ms = models.FloatField(null=True)
    latency_p99_ms = models.FloatField(null=True)
    latency_max_ms = models.FloatField(null=True)

    class Meta:
        db_table = "signal_api_metrics"
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "api_key", "endpoint", "method"], name="api_metric_unique"
            )
        ]
        indexes = [models.Index(fields=["api_key", "minute"], name="api_metric_key_minute")]
        ordering = ["-minute"]
