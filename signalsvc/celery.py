"""The Celery app: queue names, routing and the beat schedule.

Queues (SPEC §11): ``greeks.<shard>`` (chain computations, routed by a stable hash of the
underlying), ``timeframes`` (rollups), ``ingest``, ``default``. Every periodic entry carries an
expiry so a backlog of stale schedule ticks is dropped rather than run late.
"""

import os

from celery import Celery
from celery.schedules import crontab
from celery.signals import before_task_publish, task_postrun, task_prerun, task_revoked
from click import Option
from kombu import Queue

from signalsvc.farm.live import pending_release_if_expired
from signalsvc.farm.ownership import FarmStep
from signalsvc.farm.queues import stamp_sent_at
from signalsvc.farm.routing import (
    GREEKS_QUEUE_PREFIX,
    QUEUE_DEFAULT,
    QUEUE_INGEST,
    QUEUE_TIMEFRAMES,
    all_queues,
    greeks_queue,
    shard_for,
)
from signalsvc.farm.signals import task_finished, task_started

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signalsvc.settings")

app = Celery("signalsvc")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

__all__ = ["GREEKS_QUEUE_PREFIX", "app", "greeks_queue", "shard_for"]

# Tasks that run on their underlying's shard queue; their first argument is the underlying key.
SHARDED_TASKS = frozenset({"greeks.tasks.chain_compute"})


def route_task(name, args, kwargs, options, task=None, **kw):
    """Sharded tasks go to their underlying's ``greeks.<shard>`` queue; the rest by workload."""
    from django.conf import settings

    if name in SHARDED_TASKS:
        underlying = args[0] if args else kwargs["underlying_key"]
        return {"queue": greeks_queue(underlying, settings.SHARD_COUNT)}
    if name.startswith("signalsvc.marketdata.tasks."):
        return {"queue": QUEUE_INGEST}
    if name.startswith("timeframes.tasks."):
        return {"queue": QUEUE_TIMEFRAMES}
    return None


def _declare_queues() -> list[Queue]:
    from django.conf import settings

    return [Queue(name, routing_key=name) for name in all_queues(settings.SHARD_COUNT)]


app.conf.task_default_queue = QUEUE_DEFAULT
app.conf.task_create_missing_queues = False
app.conf.task_routes = (route_task,)
before_task_publish.connect(stamp_sent_at, weak=False)
# Queue wait and run time of every task, for the backpressure monitor (signalsvc/farm/signals.py).
task_prerun.connect(task_started, weak=False)
task_postrun.connect(task_finished, weak=False)


def _close_stale_connections(**kwargs) -> None:
    """Around each task, as Django does around each request: close the database connections that
    broke or outlived CONN_MAX_AGE, keep the healthy one (settings: CELERY_DB_REUSE_MAX)."""
    from django.db import close_old_connections

    close_old_connections()


task_prerun.connect(_close_stale_connections, weak=False)
task_postrun.connect(_close_stale_connections, weak=False)
# An expired chain task never runs: release its underlying's pending flag (signalsvc/farm/live.py).
task_revoked.connect(pending_release_if_expired, weak=False)

# `celery worker --farm`: the worker joins shard ownership (signalsvc/farm/ownership.py).
app.user_options["worker"].add(
    Option(
        ("--farm",), is_flag=True, default=False, help="Join the farm: own greeks.<shard> queues as assigned."
    )
)
app.steps["consumer"].add(FarmStep)


@app.on_after_configure.connect
def _queues(sender, **kwargs):
    sender.conf.task_queues = _declare_queues()


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
