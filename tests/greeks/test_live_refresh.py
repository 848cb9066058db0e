"""The chain task's bookkeeping, the minute schedule's coalescing, and ?refresh=true on the API."""

from __future__ import annotations

import json
import time

import pytest

from greeks.services import chain_latest_key
from greeks.tasks import chain_compute, schedule_chains
from signalsvc.farm import live
from signalsvc.farm.ownership import WORKERS_KEY

pytestmark = pytest.mark.django_db

NIFTY = "NSE@NIFTY@equity_spot"


def test_the_chain_task_counts_its_computation_and_its_stage_times(demo_market, redis_client):
    redis_client.set(live.PENDING_PREFIX + NIFTY, 1)

    result = chain_compute.run(NIFTY)

    assert result["options"] > 0
    assert live.computations(redis_client, NIFTY) == 1
    stages = redis_client.hgetall(live.STAGES_KEY)
    assert stages["count"] == "1"
    assert {"price", "store", "publish"} <= set(stages) and float(stages["price"]) > 0
    assert redis_client.get(live.PENDING_PREFIX + NIFTY) is None
    assert redis_client.get(live.RUNNING_PREFIX + NIFTY) is None
    assert redis_client.hlen(chain_latest_key(NIFTY)) == result["options"] + 1  # + source_us


def test_the_minute_schedule_queues_each_chain_once_however_often_it_runs(demo_market, redis_client):
    first = schedule_chains.run()
    second = schedule_chains.run()

    assert first >= 2  # the demo market lists options on several underlyings
    assert second == 0


def test_a_refresh_that_no_computation_answers_in_time_is_a_503_with_retry_after(
    api, demo_market, redis_client, settings
):
    from signalsvc.core.keys import OPTIONS
    from signalsvc.instruments.models import Instrument

    key = Instrument.objects.filter(symbol="NIFTY", product=OPTIONS).values_list("key", flat=True).first()
    # A live farm worker that never runs the task.
    redis_client.hset(WORKERS_KEY, "worker.1@host", json.dumps({"seen": time.time(), "queues": []}))
    settings.GREEKS_REFRESH_TIMEOUT = 0.3

    response = api.get(f"/api/v2/signals/realtime/greeks/{key}", {"refresh": "true"})

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "refresh_timeout"
