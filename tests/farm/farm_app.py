"""The service's Celery app plus one task that records its executions, for the live farm tests
(`celery -A tests.farm.farm_app worker --farm ...`). Test-only: not in the service's code."""

from __future__ import annotations

import os
import time

import redis

from signalsvc.celery import app

RECORD_TASK = "tests.farm.record"


def done_key(shard: int) -> str:
    return f"farmtest:done:{shard}"


@app.task(name=RECORD_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def record(shard: int, seq: int, seconds: float = 0.05) -> None:
    """Append "seq:pid" to the shard's list when done, after ``seconds`` of work."""
    time.sleep(seconds)
    redis.Redis.from_url(os.environ["REDIS_URL"]).rpush(done_key(shard), f"{seq}:{os.getpid()}")
