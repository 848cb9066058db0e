from django.contrib import admin, messages

from signalsvc.accounts.models import ApiKey, Subscription, Tier
from signalsvc.accounts.services import api_key_create


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = ("name", "requests_per_minute", "websocket_connections", "subscriptions_per_connection")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("name", "tier", "active", "created_at")
    list_filter = ("tier", "active")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "subscription", "active", "can_write", "created_at", "last_used_at")
    list_filter = ("active", "can_write", "subscription__tier")
    search_fields = ("prefix", "name")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    fields = (
        "subscription",
        "name",
        "prefix",
        "active",
        "can_write",
        "expires_at",
        "created_at",
        "last_used_at",
    )

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        key, raw = api_key_create(
            subscription=obj.subscription, name=obj.name, can_write=obj.can_write, expires_at=obj.expires_at
        )
        obj.pk, obj.prefix, obj.digest = key.pk, key.prefix, key.digest
        messages.warning(request, f"New API key (shown once, copy it now): {raw}")
