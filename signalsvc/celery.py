"""The Celery app: queue names, routing and the beat schedule.

Queues (SPEC §11): ``greeks.<shard>`` (chain computations, routed by a stable hash of the
underlying), ``timeframes`` (rollups), ``ingest``, ``default``. Every periodic entry carries an
expiry so a backlog of stale schedule ticks is dropped rather than run late.
"""

import os
import zlib

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signalsvc.settings")

app = Celery("signalsvc")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

QUEUE_DEFAULT = "default"
QUEUE_INGEST = "ingest"
QUEUE_TIMEFRAMES = "timeframes"
GREEKS_QUEUE_PREFIX = "greeks"


def shard_for(underlying: str, shard_count: int) -> int:
    """Stable shard of an underlying: the same chain always lands on the same queue (crc32 is
    stable across processes and Python versions, unlike hash())."""
    return zlib.crc32(underlying.encode()) % shard_count


def greeks_queue(underlying: str, shard_count: int) -> str:
    return f"{GREEKS_QUEUE_PREFIX}.{shard_for(underlying, shard_count)}"


app.conf.task_default_queue = QUEUE_DEFAULT
app.conf.task_routes = {
    "signalsvc.marketdata.tasks.*": {"queue": QUEUE_INGEST},
    "timeframes.tasks.*": {"queue": QUEUE_TIMEFRAMES},
}

# Periodic work. Expiry (seconds) = drop a run that could not start before the next one is due.
app.conf.beat_schedule = {
    "partitions-upkeep": {
        "task": "signalsvc.marketdata.tasks.partitions_upkeep",
        "schedule": 3600.0,
        "options": {"expires": 3000, "queue": QUEUE_DEFAULT},
    },
    "greeks-chains": {
        "task": "greeks.tasks.schedule_chains",
        "schedule": crontab(),  # every minute
        "options": {"expires": 50, "queue": QUEUE_DEFAULT},
    },
    "timeframes-rollups": {
        "task": "timeframes.tasks.refresh_rollups",
        "schedule": crontab(),  # every minute
        "options": {"expires": 50, "queue": QUEUE_TIMEFRAMES},
    },
    "websocket-subscriptions-sweep": {
        "task": "streaming.tasks.subscriptions_sweep",
        "schedule": 60.0,
        "options": {"expires": 55, "queue": QUEUE_DEFAULT},
    },
    "api-metrics-flush": {
        "task": "signalsvc.ops.tasks.api_metrics_flush",
        "schedule": 30.0,
        "options": {"expires": 25, "queue": QUEUE_DEFAULT},
    },
}
