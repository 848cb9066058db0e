"""The in-worker pool autoscaler (signalsvc/farm/pool.py): its broker reading against real Redis,
and a real `celery worker --autoscale=4,1` whose pool grows with a backlog and shrinks after it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib
from django.conf import settings

from signalsvc.celery import app
from signalsvc.farm.pool import BacklogAutoscaler, ready_backlog
from tests.conftest import subprocess_env
from tests.farm.pool_app import SLEEP_TASK

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
WORKER = [
    CELERY,
    "-A",
    "tests.farm.pool_app",
    "worker",
    "-l",
    "info",
    "--without-mingle",
    "--without-gossip",
    "--pidfile=",
]


@pytest.fixture
def broker(redis_client):
    return redis_lib.Redis.from_url(settings.CELERY_BROKER_URL)


def test_ready_backlog_counts_every_priority_list_of_the_given_queues(broker):
    for _ in range(3):
        app.send_task(SLEEP_TASK, args=[0, "k"], queue="default")
    for _ in range(2):
        app.send_task(SLEEP_TASK, args=[0, "k"], queue="default", priority=6)
    app.send_task(SLEEP_TASK, args=[0, "k"], queue="timeframes")
    app.send_task(SLEEP_TASK, args=[0, "k"], queue="ingest")

    assert broker.llen("default") == 3  # the prioritised two wait in another list
    assert ready_backlog(broker, ["default"]) == 5
    assert ready_backlog(broker, ["default", "timeframes"]) == 6
    assert ready_backlog(broker, []) == 0


def test_celery_uses_the_backlog_autoscaler():
    from celery.utils.imports import symbol_by_name

    assert symbol_by_name(app.conf.worker_autoscaler) is BacklogAutoscaler


def inspect_stats(node: str) -> dict | None:
    replies = app.control.inspect(destination=[node], timeout=1.0).stats() or {}
    return replies.get(node)


def wait_for(what: str, check, timeout: float, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {timeout}s; worker log:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
def test_a_broker_backlog_grows_the_pool_and_it_shrinks_once_the_backlog_is_done(broker, tmp_path):
    node = f"pooltest{os.getpid()}@{socket.gethostname()}"
    log = tmp_path / "worker.log"
    done_key = "pooltest:done"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [*WORKER, "--autoscale=4,1", "-Q", "default,timeframes", "-n", node],
            cwd=ROOT,
            # Checks every 2 s and retires an idle process after 2 s (the default is 30 s).
            env=subprocess_env(POOL_AUTOSCALE_KEEPALIVE_SECONDS="2"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        stats = wait_for("the worker answering", lambda: inspect_stats(node), 40, log)
        assert len(stats["pool"]["processes"]) == 1
        assert stats["autoscaler"] == {
            "max": 4,
            "min": 1,
            "current": 1,
            "qty": 0,
            "backlog": 0,
            "queues": ["default", "timeframes"],
        }

        # The backlog is queued while the worker consumes neither queue (Celery's own control
        # commands, as shard ownership uses them), so it is whole when consumption resumes. Until
        # then it is not this worker's backlog: the pool stays at one process.
        queues = ("default", "timeframes")
        for queue in queues:
            app.control.cancel_consumer(queue, destination=[node], reply=True)
        tasks = 24
        for i in range(tasks):
            app.send_task(SLEEP_TASK, args=[1.0, done_key], queue=queues[i % 2])
        time.sleep(2.5)  # longer than the keepalive: one periodic check has seen the queues
        paused = inspect_stats(node)
        assert (len(paused["pool"]["processes"]), paused["autoscaler"]["queues"]) == (1, [])
        assert paused["autoscaler"]["backlog"] == 0

        for queue in queues:
            app.control.add_consumer(queue, destination=[node], reply=True)
        grown = wait_for(
            "four pool processes",
            lambda: (s := inspect_stats(node)) and len(s["pool"]["processes"]) == 4 and s,
            20,
            log,
        )
        assert grown["autoscaler"]["current"] == 4
        wait_for("every task done", lambda: int(broker.get(done_key) or 0) == tasks, 40, log)
        shrunk = wait_for(
            "one pool process again",
            lambda: (s := inspect_stats(node)) and len(s["pool"]["processes"]) == 1 and s,
            20,
            log,
        )
        assert shrunk["autoscaler"]["backlog"] == 0
    finally:
        worker.terminate()
        worker.wait(30)

    # One scale-up, straight to the maximum, decided from the broker backlog: at most the
    # prefetch window (4 tasks) had been fetched, the rest of a queue's half was still waiting.
    ups = re.findall(
        r"pool autoscaler: (\d+) fetched \+ (\d+) waiting on the broker: (\d+) -> (\d+)", log.read_text()
    )
    assert len(ups) == 1, log.read_text()[-4000:]
    fetched, waiting, before, after = map(int, ups[0])
    assert (before, after) == (1, 4)
    assert fetched <= 4 and waiting >= tasks // 2 - 4
