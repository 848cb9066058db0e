from django.contrib import admin

from timeframes.models import CustomTimeframe, RollupWatermark


@admin.register(CustomTimeframe)
class CustomTimeframeAdmin(admin.ModelAdmin):
    list_display = (
        "instrument",
        "timeframe",
        "minutes",
        "request_count",
        "sessions_from_cache",
        "sessions_computed",
        "first_requested_at",
        "last_requested_at",
    )
    list_filter = ("timeframe",)
    search_fields = ("instrument__key", "timeframe")
    list_select_related = ("instrument",)
    readonly_fields = [f.name for f in CustomTimeframe._meta.fields]


@admin.register(RollupWatermark)
class RollupWatermarkAdmin(admin.ModelAdmin):
    list_display = ("timeframe", "watermark", "refreshed_at", "last_rows", "last_buckets", "last_duration_ms")
    readonly_fields = [f.name for f in RollupWatermark._meta.fields]
