import datetime as dt

from celery import shared_task
from django.conf import settings

from streaming.models import WebSocketSubscription


@shared_task(name="streaming.tasks.subscriptions_sweep", ignore_result=True)
def subscriptions_sweep() -> int:
    """Delete the rows of connections whose process stopped touching them (a node that died):
    live connections touch theirs every heartbeat."""
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=3 * settings.WEBSOCKET_HEARTBEAT_INTERVAL + 30)
    deleted, _ = WebSocketSubscription.objects.filter(last_seen__lt=stale).delete()
    return deleted
