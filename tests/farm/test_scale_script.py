"""`manage.py farm_status` against real Redis (a farm written into farm:workers/farm:owners, tasks
queued on the broker), and scripts/scale-signal-service.sh: its local path for real, its compose
path against a stub `docker` that records what it is asked to run."""

from __future__ import annotations

import io
import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import redis as redis_lib
from django.conf import settings
from django.core.management import call_command

from signalsvc.celery import app
from signalsvc.farm.ownership import OWNERS_KEY, WORKERS_KEY
from signalsvc.farm.routing import greeks_queue, shard_queue
from tests.conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "scale-signal-service.sh"
CHAIN_TASK = "greeks.tasks.chain_compute"
FLUSH_TASK = "signalsvc.ops.tasks.api_metrics_flush"  # routed to `default`
UNDERLYINGS = [f"NSE@SYM{i}@equity_spot" for i in range(7)]


@pytest.fixture
def broker(redis_client):
    return redis_lib.Redis.from_url(settings.CELERY_BROKER_URL)


@pytest.fixture
def farm(broker):
    """Two live workers and a dead one; shards 0-39 to a, 40-59 to b, 60-61 to the dead one,
    62-63 unowned; seven chain tasks on their shard queues and three tasks on `default`."""
    now = time.time()
    workers = {
        "a@h1": {"seen": now, "queues": [shard_queue(s) for s in range(40)], "stolen": [], "busy": True},
        "b@h2": {"seen": now - 1, "queues": [shard_queue(s) for s in range(40, 60)], "stolen": ["greeks.3"]},
        "dead@h3": {"seen": now - 600, "queues": [shard_queue(60), shard_queue(61)], "stolen": []},
    }
    for name, info in workers.items():
        broker.hset(WORKERS_KEY, name, json.dumps({**info, "pid": 100, "host": name.split("@")[1]}))
    owners = (
        {s: "a@h1" for s in range(40)} | {s: "b@h2" for s in range(40, 60)} | {60: "dead@h3", 61: "dead@h3"}
    )
    broker.hset(OWNERS_KEY, mapping={str(s): w for s, w in owners.items()})
    for key in UNDERLYINGS:
        app.send_task(CHAIN_TASK, args=[key])
    for _ in range(3):
        app.send_task(FLUSH_TASK)
    return Counter(greeks_queue(key, settings.SHARD_COUNT) for key in UNDERLYINGS) + Counter(default=3)


def status_json(*args: str) -> dict:
    out = io.StringIO()
    call_command("farm_status", "--json", *args, stdout=out)
    return json.loads(out.getvalue())


def test_farm_status_reports_live_workers_owners_depths_and_backpressure(farm):
    from signalsvc.farm.backpressure import current_level

    status = status_json()

    workers = status["workers"]
    assert set(workers) == {"a@h1", "b@h2"}
    assert {name: (w["host"], w["shards"], w["stolen"], w["busy"]) for name, w in workers.items()} == {
        "a@h1": ("h1", 40, [], True),
        "b@h2": ("h2", 20, ["greeks.3"], False),
    }
    assert status["owners"] == {
        "shard_count": 64,
        "per_worker": {"a@h1": 40, "b@h2": 20, "dead@h3": 2},
        "unowned": [62, 63],
        "owner_not_live": {"60": "dead@h3", "61": "dead@h3"},
    }
    assert {queue: q["ready"] for queue, q in status["queues"].items()} == dict(farm)
    assert {q["unacked"] for q in status["queues"].values()} == {0}
    assert (status["totals"]["ready"], status["totals"]["unacked"]) == (10, 0)
    assert status["backpressure"] == {"level": current_level().name, "error": None}


def test_farm_status_tables(farm):
    out = io.StringIO()
    call_command("farm_status", stdout=out)
    lines = out.getvalue().splitlines()

    assert lines[0] == f"Workers: 2 live (heartbeat within {settings.FARM_WORKER_TTL_SECONDS:g}s)"
    assert lines[1].split() == ["WORKER", "HOST", "PID", "SHARDS", "STOLEN", "BUSY", "SEEN"]
    assert lines[2].split()[:6] == ["a@h1", "h1", "100", "40", "0", "yes"]
    assert lines[3].split()[:6] == ["b@h2", "h2", "100", "20", "1", "no"]
    assert "Shard owners: 62 of 64 shards assigned, 2 unowned, 2 owned by a worker that is not live" in lines
    assert "  unowned: 62-63" in lines
    assert "  owner not live: 60 (dead@h3), 61 (dead@h3)" in lines
    queues_at = lines.index(f"Queues: {len(farm)} non-empty")
    rows = [line.split() for line in lines[queues_at + 2 : queues_at + 2 + len(farm)]]
    assert {row[0]: int(row[1]) for row in rows} == dict(farm)
    assert rows[0][0] == "default"  # deepest first
    assert lines[queues_at + 2 + len(farm)].split()[:3] == ["total", "10", "0"]
    assert lines[-1].startswith("Backpressure: ")


# --------------------------------------------------------------------------------------------
# scripts/scale-signal-service.sh
# --------------------------------------------------------------------------------------------

NO_DOCKER = {"DOCKER": "/nonexistent/docker", "DOCKER_COMPOSE": "/nonexistent/docker-compose"}


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_status_without_a_compose_deployment_runs_farm_status_locally(farm):
    # The script starts a Python process: on a busy machine that takes longer than the 5 s a
    # heartbeat stays live, so the fixture's heartbeats are judged with a longer TTL (not 600 s:
    # dead@h3 must stay dead).
    result = run_script("status", "--json", FARM_WORKER_TTL_SECONDS="120", **NO_DOCKER)

    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert set(status["workers"]) == {"a@h1", "b@h2"}
    assert status["owners"]["unowned"] == [62, 63]
    assert {queue: q["ready"] for queue, q in status["queues"].items()} == dict(farm)


def test_scale_without_docker_compose_says_what_it_needs():
    result = run_script("scale", "3", **NO_DOCKER)

    assert result.returncode == 2
    assert result.stdout == ""
    assert (
        "needs Docker Compose (`docker compose` or `docker-compose`), which is not installed here"
        in result.stderr
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scale"], "scale needs a number of worker replicas"),
        (["scale", "three"], "scale needs a number of worker replicas"),
        (["resize", "3"], "usage: "),
        ([], "usage: "),
    ],
    ids=["scale-without-n", "scale-not-a-number", "unknown-command", "no-command"],
)
def test_bad_arguments_are_refused(args, message):
    result = run_script(*args, **NO_DOCKER)
    assert (result.returncode, result.stdout) == (2, "")
    assert message in result.stderr


STUB_DOCKER = """#!/usr/bin/env bash
# A docker CLI with the compose plugin and a running deployment: records its arguments, one line each.
echo "$*" >> "$STUB_LOG"
case "$*" in
"compose version") echo "Docker Compose version v2.40.0" ;;
"compose ps -q worker") echo 1111 ;;
"compose ps -q autoscaler") [ -n "${STUB_AUTOSCALER:-}" ] && echo 2222 ;;
esac
exit 0
"""


@pytest.fixture
def stub_docker(tmp_path):
    docker = tmp_path / "docker"
    docker.write_text(STUB_DOCKER)
    docker.chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    return {"DOCKER": str(docker), "DOCKER_COMPOSE": "/nonexistent/docker-compose", "STUB_LOG": str(log)}


def calls(stub: dict) -> list[str]:
    return Path(stub["STUB_LOG"]).read_text().splitlines()


def test_scale_runs_compose_up_for_the_worker_service_only(stub_docker):
    result = run_script("scale", "5", **stub_docker)

    assert result.returncode == 0, result.stderr
    assert "compose up -d --no-deps --no-recreate --scale worker=5 worker" in calls(stub_docker)
    assert calls(stub_docker)[-1] == "compose ps worker"
    assert "autoscaler" not in result.stderr


def test_scale_warns_that_a_running_autoscaler_will_move_the_count(stub_docker):
    result = run_script("scale", "5", STUB_AUTOSCALER="1", **stub_docker)

    assert result.returncode == 0, result.stderr
    assert "the autoscaler is running and will change this count at its next decision" in result.stderr


def test_status_with_a_running_deployment_runs_farm_status_in_a_one_off_container(stub_docker):
    result = run_script("status", **stub_docker)

    assert result.returncode == 0, result.stderr
    assert calls(stub_docker)[-1] == "compose run --rm --no-deps -T autoscaler python manage.py farm_status"


def test_auto_with_a_running_deployment_starts_the_autoscaler_service(stub_docker):
    result = run_script("auto", **stub_docker)

    assert result.returncode == 0, result.stderr
    assert "compose up -d --no-deps autoscaler" in calls(stub_docker)
    assert calls(stub_docker)[-1] == "compose logs --no-log-prefix --tail 5 autoscaler"
    assert "runs as the compose service `autoscaler`" in result.stdout
