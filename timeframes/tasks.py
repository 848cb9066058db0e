"""Work of the timeframes app: the periodic tasks on the ``timeframes`` queue (routed in
signalsvc/celery.py), and the warms of custom timeframes on the farm's ``greeks.<shard>`` queues
(queued by ``services.custom_timeframes_warm_enqueue`` with the queue of the instrument's
underlying)."""

from __future__ import annotations

import time

import redis
from celery import shared_task
from django.db import OperationalError

REFRESH_TASK = "timeframes.tasks.refresh_rollups"
WARM_TASK = "timeframes.tasks.warm_custom_timeframe"
_TRANSIENT = (redis.ConnectionError, redis.TimeoutError, OperationalError)
RUN_BUDGET_SECONDS = 40.0  # beat sends one every minute (expiring after 50 s); leave room


@shared_task(
    name=REFRESH_TASK,
    acks_late=True,  # the refresh is idempotent: a redelivered run redoes a step harmlessly
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(ConnectionError, TimeoutError),
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=55,
    time_limit=60,
)
def refresh_rollups() -> dict:
    """Beat, every minute: incremental rollup refresh (repeated while a backlog remains, within a
    time budget), then the custom-timeframe counters flushed to ``signal_custom_timeframes``, then
    the session-close trigger of the farm's warms. Concurrent runs are harmless: the second one
    finds the refresh lock taken and returns; warms are coalesced."""
    from timeframes.services import custom_timeframes_flush, custom_timeframes_warm_closed, rollups_refresh

    deadline = time.monotonic() + RUN_BUDGET_SECONDS
    steps, rows = 0, 0
    while True:
        report = rollups_refresh()
        if report.get("skipped"):
            break
        steps += 1
        rows += report["rows"]
        if not report["backlog"] or time.monotonic() > deadline:
            break
    flushed = custom_timeframes_flush()
    warms = custom_timeframes_warm_closed()
    return {"steps": steps, "rows": rows, "custom_timeframes": flushed, "warms_after_close": warms}


@shared_task(
    name=WARM_TASK,
    acks_late=True,  # idempotent: entries are filed under the tokens taken before PostgreSQL is read
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=60,
    time_limit=90,
)
def warm_custom_timeframe(instrument_id: int, timeframe: str) -> dict:
    """Every closed session of the history window of one custom timeframe in use into the cache."""
    from timeframes.services import custom_timeframe_warm

    return custom_timeframe_warm(instrument_id=instrument_id, timeframe=timeframe)
