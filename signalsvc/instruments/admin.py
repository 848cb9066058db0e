from django.contrib import admin

from signalsvc.instruments.models import Instrument


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ("key", "symbol", "product", "expiry", "option_type", "strike", "lot_size", "active")
    list_filter = ("exchange", "product", "active", "symbol")
    search_fields = ("key", "symbol")
    date_hierarchy = "expiry"
    readonly_fields = ("created_at", "updated_at")
