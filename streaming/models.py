from django.db import models


class WebSocketSubscription(models.Model):
    """An active subscription of a WebSocket connection (SPEC §10): inserted on subscribe, deleted
    on unsubscribe and disconnect, touched every heartbeat; rows of a node that died are swept
    (``streaming.tasks.subscriptions_sweep``)."""

    node = models.CharField(max_length=128, db_index=True, help_text="host:pid of the serving process")
    connection_id = models.CharField(max_length=36, db_index=True)
    client_id = models.CharField(max_length=128, blank=True)
    api_key = models.CharField(max_length=16, blank=True, help_text="public prefix, empty when anonymous")
    channel = models.CharField(max_length=16)
    subscription_key = models.CharField(max_length=512)
    instrument_key = models.CharField(max_length=128)
    params = models.JSONField(default=dict)
    since = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "signal_websocket_subscriptions"
        constraints = [
            models.UniqueConstraint(fields=["connection_id", "subscription_key"], name="ws_subscription_once")
        ]

    def __str__(self) -> str:
        return f"{self.client_id or self.connection_id} {self.subscription_key}"
