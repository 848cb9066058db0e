"""Task latency, recorded by the workers for the backpressure monitor (SPEC §11).

``task_prerun``/``task_postrun`` receivers (connected in ``signalsvc/celery.py``): when a task
finishes, its wait (start minus the ``sent_at`` header stamped at publish) and its run time go to a
capped Redis list in the broker's Redis, and its (task, state) counter is incremented: one
pipelined round trip per task, a bounded structure (``BACKPRESSURE_LATENCY_SAMPLES`` entries),
read by :mod:`signalsvc.farm.backpressure` and the Prometheus collector.

Kept free of Django models and DRF: this module is imported with the Celery app, before Django is
set up.
"""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings

from signalsvc.farm.queues import SENT_AT_HEADER

log = logging.getLogger(__name__)

# "<finished at> <wait or -> <run>", newest first (epoch seconds, seconds, seconds).
LATENCY_KEY = "farm:latency"
# "<task name>|<state>" -> the number of tasks that finished in that state (a Prometheus counter).
TASKS_KEY = "farm:tasks"

# Start times of the tasks running in this process, by task id (a pool process runs one at a time;
# an entry lives from prerun to postrun).
_started: dict[str, float] = {}


def monitor_client() -> redis.Redis:
    """The broker's Redis, where the farm keeps its state, with the monitor's short timeout."""
    from signalsvc.redis_clients import client_for_url

    return client_for_url(
        settings.CELERY_BROKER_URL, decode_responses=True, socket_timeout=settings.BACKPRESSURE_REDIS_TIMEOUT
    )


def latency_sample_format(*, finished: float, wait: float | None, run: float) -> str:
    return f"{finished:.3f} {'-' if wait is None else f'{wait:.4f}'} {run:.4f}"


def latency_sample_parse(raw: bytes | str) -> tuple[float, float | None, float] | None:
    """``(finished_at, wait or None, run)``, or None for an entry that is not a sample."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        finished, wait, run = text.split(" ")
        return float(finished), None if wait == "-" else float(wait), float(run)
    except ValueError:
        return None


def task_latency_record(
    client: redis.Redis, *, task: str, state: str, finished: float, wait: float | None, run: float
) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.lpush(LATENCY_KEY, latency_sample_format(finished=finished, wait=wait, run=run))
    pipe.ltrim(LATENCY_KEY, 0, settings.BACKPRESSURE_LATENCY_SAMPLES - 1)
    pipe.hincrby(TASKS_KEY, f"{task}|{state}", 1)
    pipe.execute()


def _sent_at(request) -> float | None:
    # Custom message headers become attributes of the request (Celery protocol 2).
    value = getattr(request, SENT_AT_HEADER, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(SENT_AT_HEADER)
    return float(value) if isinstance(value, int | float) else None


def task_started(sender=None, task_id: str | None = None, task=None, **_: object) -> None:
    """``task_prerun`` receiver."""
    if task_id is not None and not getattr(task.request, "is_eager", False):
        _started[task_id] = time.time()


def task_finished(sender=None, task_id: str | None = None, task=None, state: str | None = None, **_) -> None:
    """``task_postrun`` receiver. A Redis failure is logged, never raised into the task's outcome."""
    started = _started.pop(task_id, None) if task_id is not None else None
    if started is None:
        return
    finished = time.time()
    sent_at = _sent_at(task.request)
    # Publisher and worker clocks may differ slightly: a negative wait is no wait.
    wait = None if sent_at is None else max(0.0, started - sent_at)
    try:
        task_latency_record(
            monitor_client(),
            task=task.name,
            state=state or "UNKNOWN",
            finished=finished,
            wait=wait,
            run=finished - started,
        )
    except redis.RedisError as exc:
        log.warning("task latency of %s not recorded: %s", task.name, exc)
