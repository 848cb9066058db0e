"""The service's Celery app plus one task that sleeps, for the live pool-autoscaler test
(`celery -A tests.farm.pool_app worker --autoscale=4,1 ...`). Test-only: not in the service's code."""

from __future__ import annotations

import os
import time

import redis

from signalsvc.celery import app

SLEEP_TASK = "tests.farm.pool_sleep"


@app.task(name=SLEEP_TASK, ignore_result=True)
def pool_sleep(seconds: float, done_key: str) -> None:
    """Hold one pool process for ``seconds``, then count itself done in ``done_key``."""
    time.sleep(seconds)
    redis.Redis.from_url(os.environ["REDIS_URL"]).incr(done_key)
