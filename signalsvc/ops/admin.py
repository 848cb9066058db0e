from django.contrib import admin

from signalsvc.ops.models import ApiMetric


@admin.register(ApiMetric)
class ApiMetricAdmin(admin.ModelAdmin):
    list_display = (
        "minute",
        "api_key",
        "method",
        "endpoint",
        "count",
        "errors",
        "latency_p50_ms",
        "latency_p95_ms",
    )
    list_filter = ("api_key", "method")
    search_fields = ("endpoint", "api_key")
    date_hierarchy = "minute"

    def has_add_permission(self, request):
        return False
