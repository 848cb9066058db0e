"""Periodic work of the timeframes app, on the ``timeframes`` queue (routed in signalsvc/celery.py)."""

from __future__ import annotations

import time

from celery import shared_task

REFRESH_TASK = "timeframes.tasks.refresh_rollups"
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
    time budget), then the custom-timeframe counters flushed to ``signal_custom_timeframes``.
    Concurrent runs are harmless: the second one finds the refresh lock taken and returns."""
    from timeframes.services import custom_timeframes_flush, rollups_refresh

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
    return {"steps": steps, "rows": rows, "custom_timeframes": flushed}
