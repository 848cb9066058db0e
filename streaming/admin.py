from django.contrib import admin

from streaming.models import WebSocketSubscription


@admin.register(WebSocketSubscription)
class WebSocketSubscriptionAdmin(admin.ModelAdmin):
    list_display = (
        "client_id",
        "channel",
        "instrument_key",
        "subscription_key",
        "node",
        "since",
        "last_seen",
    )
    list_filter = ("channel", "node")
    search_fields = ("client_id", "instrument_key", "subscription_key", "connection_id", "api_key")
    readonly_fields = [f.name for f in WebSocketSubscription._meta.fields]

    def has_add_permission(self, request):
        return False  # rows belong to live connections
