"""Routing (SPEC §11): every registered task and its queue, as a snapshot; every queue declared."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from celery.exceptions import QueueNotFound

from signalsvc.celery import app
from signalsvc.farm.routing import (
    BATCH_QUEUES,
    FARM_QUEUES,
    all_queues,
    greeks_queue,
    shard_for,
    shard_of_queue,
)

NIFTY = "NSE@NIFTY@equity_spot"

# Changing a task's name or queue changes what running workers and queued messages expect: this
# snapshot makes that a deliberate edit. (warm_custom_timeframe is sent with an explicit queue,
# its instrument's shard: the router's answer below is its default only.)
SNAPSHOT = {
    "greeks.tasks.chain_compute": f"greeks.{shard_for(NIFTY, 64)}",
    "greeks.tasks.schedule_chains": "default",
    "signalsvc.marketdata.tasks.partitions_upkeep": "ingest",
    "signalsvc.ops.tasks.api_metrics_flush": "default",
    "streaming.tasks.subscriptions_sweep": "default",
    "timeframes.tasks.refresh_rollups": "timeframes",
    "timeframes.tasks.warm_custom_timeframe": "timeframes",
}


def test_registered_tasks_and_their_queues_match_the_snapshot(settings):
    settings.SHARD_COUNT = 64
    app.loader.import_default_modules()
    # (tests.* are the test-only tasks of tests/farm/*_app.py, registered when those are imported.)
    names = sorted(n for n in app.tasks if not n.startswith(("celery.", "tests.")))

    routed = {n: app.amqp.router.route({}, n, args=(NIFTY,))["queue"].name for n in names}

    assert routed == SNAPSHOT


def test_a_chain_always_goes_to_its_underlying_s_shard():
    assert shard_for(NIFTY, 64) == shard_for(NIFTY, 64) == 53  # crc32: stable across processes
    for key in ("NSE@NIFTY@equity_spot", "NSE@BANKNIFTY@equity_spot", "NSE@RELIANCE@equity_spot"):
        route = app.amqp.router.route({}, "greeks.tasks.chain_compute", args=(key,))
        assert route["queue"].name == greeks_queue(key, 64)


def test_every_queue_is_declared_and_no_queue_is_created_on_the_fly():
    assert app.conf.task_create_missing_queues is False
    assert sorted(app.amqp.queues) == sorted(all_queues(64))
    with pytest.raises(QueueNotFound, match=r"greeks\.999"):
        app.send_task("greeks.tasks.chain_compute", args=[NIFTY], queue="greeks.999")


def test_the_procfile_s_workers_split_the_farm_from_the_batch_lane(tmp_path):
    """scripts/start-worker.sh, run with a stand-in celery that prints its arguments: a farm worker
    takes its shards and `default`, the batch worker the queues whose tasks can take seconds, and
    every general queue is consumed by exactly one of them."""
    (tmp_path / "celery").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (tmp_path / "celery").chmod(0o755)
    script = Path(__file__).resolve().parents[2] / "scripts/start-worker.sh"

    def started(*argv: str) -> list[str]:
        return subprocess.run(
            [str(script), *argv], env={**os.environ, "PY": str(tmp_path / "python")},
            capture_output=True, text=True, check=True,
        ).stdout.split("\n")  # fmt: skip

    farm, batch = started(), started("batch")
    farm_queues, batch_queues = (args[args.index("-Q") + 1].split(",") for args in (farm, batch))
    assert (tuple(farm_queues), tuple(batch_queues)) == (FARM_QUEUES, BATCH_QUEUES)
    # Every declared queue but the shards' (which the farm takes by ownership) has one consumer.
    declared = sorted(q for q in app.amqp.queues if shard_of_queue(q) is None)
    assert sorted(farm_queues + batch_queues) == declared
    assert ("--farm" in farm, "--farm" in batch) == (True, False)
    assert farm[farm.index("--pool") + 1] == batch[batch.index("--pool") + 1] == "solo"
