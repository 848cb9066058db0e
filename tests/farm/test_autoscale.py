"""Worker-replica autoscaling: the controller's table, the backends (dry-run for real, Docker and
Kubernetes against fake HTTP APIs that answer like theirs), the command against the real broker,
and the Kubernetes manifests."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import redis as redis_lib
import yaml
from django.conf import settings
from django.core.management import call_command

from signalsvc.celery import app
from signalsvc.farm.autoscale import (
    Autoscaler,
    DockerComposeBackend,
    DryRunBackend,
    KubernetesBackend,
    backend_name,
    clone_config,
    clone_name,
    policy_from_settings,
    scale_plan,
)
from signalsvc.farm.core.scaling import Decision, Observation, Policy, Reason, State, decide, state_after
from signalsvc.farm.ownership import WORKERS_KEY
from signalsvc.farm.routing import BATCH_QUEUES, FARM_QUEUES
from tests.conftest import free_port, subprocess_env

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docker" / "k8s"
CHAIN_TASK = "greeks.tasks.chain_compute"

# --------------------------------------------------------------------------------------------
# The controller
# --------------------------------------------------------------------------------------------

POLICY = Policy(min_workers=2, max_workers=8, target_per_worker=50)
NOW = 10_000.0


def since(seconds: float | None) -> float | None:
    return None if seconds is None else NOW - seconds


# replicas, backlog, cpu %, memory %, seconds since the last scale-up / last change -> desired, reason
# and a fragment of the detail that names the numbers behind it.
TABLE = [
    # bounds: straight to them, cooldowns or not
    ("below-min", 1, 0, 10, 10, None, None, 2, Reason.BELOW_MIN, "min_workers=2"),
    ("below-min-to-depth", 1, 240, 10, 10, 5, 5, 5, Reason.BELOW_MIN, "= 5"),
    ("below-min-depth-capped", 0, 5000, 10, 10, None, None, 8, Reason.BELOW_MIN, "= 100"),
    ("above-max-in-cooldown", 10, 5000, 90, 90, 1, 1, 8, Reason.ABOVE_MAX, "max_workers=8"),
    # depth
    ("depth-up-proportional", 2, 240, 10, 10, None, None, 5, Reason.DEPTH, "backlog 240 / 50 per worker = 5"),
    ("depth-up-capped-at-max", 2, 5000, 10, 10, None, None, 8, Reason.DEPTH, "= 100"),
    ("depth-exact-is-steady", 4, 200, 50, 50, None, None, 4, Reason.STEADY, "= 4"),
    ("depth-wants-more-at-max", 8, 5000, 10, 10, None, None, 8, Reason.AT_MAX, "max_workers=8"),
    # CPU and memory above 70 % with tasks waiting: one more
    ("cpu-up-one", 3, 100, 85, 40, None, None, 4, Reason.CPU, "cpu 85%"),
    ("memory-up-one", 3, 10, 20, 75, None, None, 4, Reason.MEMORY, "memory 75%"),
    ("cpu-at-70-is-not-above", 3, 10, 70, 20, None, None, 3, Reason.BUSY, "cpu 70%"),
    ("hot-without-backlog-holds", 3, 0, 95, 95, None, None, 3, Reason.BUSY, "backlog 0"),
    ("hot-at-max", 8, 10, 95, 40, None, None, 8, Reason.AT_MAX, "max_workers=8"),
    # down: one step, only below 30 % of both
    ("idle-down-one-step", 5, 20, 10, 20, None, None, 4, Reason.IDLE, "= 1"),
    ("cpu-between-thresholds-holds", 5, 20, 45, 20, None, None, 5, Reason.BUSY, "cpu 45%"),
    ("memory-at-30-holds", 5, 0, 5, 30, None, None, 5, Reason.BUSY, "memory 30%"),
    ("idle-at-min", 2, 0, 5, 5, None, None, 2, Reason.AT_MIN, "min_workers=2"),
    # cooldowns: 60 s after a scale-up before the next, 300 s after any change before a scale-down
    ("up-cooldown", 2, 240, 10, 10, 30, 30, 2, Reason.UP_COOLDOWN, "wants 5; 30s left"),
    (
        "up-cooldown-names-the-capped-target",
        2,
        5000,
        10,
        10,
        30,
        30,
        2,
        Reason.UP_COOLDOWN,
        "wants 8; 30s left",
    ),
    ("up-cooldown-over", 2, 240, 10, 10, 60, 60, 5, Reason.DEPTH, "= 5"),
    ("up-right-after-a-scale-down", 2, 240, 10, 10, None, 10, 5, Reason.DEPTH, "= 5"),
    ("down-cooldown-after-down", 5, 0, 5, 5, None, 200, 5, Reason.DOWN_COOLDOWN, "wants 4; 100s left"),
    ("down-cooldown-after-up", 5, 0, 5, 5, 100, 100, 5, Reason.DOWN_COOLDOWN, "200s left"),
    ("down-cooldown-over", 5, 0, 5, 5, 400, 300, 4, Reason.IDLE, "cpu 5%"),
]


@pytest.mark.parametrize(
    ("replicas", "backlog", "cpu", "memory", "up_ago", "change_ago", "desired", "reason", "detail"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_controller_decides(replicas, backlog, cpu, memory, up_ago, change_ago, desired, reason, detail):
    observation = Observation(replicas=replicas, backlog=backlog, cpu=cpu, memory=memory, now=NOW)
    state = State(last_up=since(up_ago), last_change=since(change_ago))

    decision = decide(observation, POLICY, state)

    assert (decision.current, decision.desired, decision.reason) == (replicas, desired, reason)
    assert detail in decision.detail


@pytest.mark.parametrize(
    ("current", "desired", "expected"),
    [
        (2, 5, State(last_up=NOW, last_change=NOW)),
        (5, 4, State(last_up=1.0, last_change=NOW)),
        (3, 3, State(1.0, 2.0)),
    ],
    ids=["up-starts-both-cooldowns", "down-starts-the-down-cooldown", "hold-changes-nothing"],
)
def test_state_after_an_applied_decision(current, desired, expected):
    decision = Decision(current, desired, Reason.STEADY, "")
    assert state_after(State(last_up=1.0, last_change=2.0), decision, NOW) == expected


def test_a_backlog_spike_scales_up_at_once_and_back_down_one_worker_per_cooldown():
    """Every 15 s for 20 minutes: a burst of 400 tasks for the first minute, then nothing."""
    policy = Policy(min_workers=2, max_workers=8, target_per_worker=50, up_cooldown=60, down_cooldown=300)
    state, replicas, changes = State(last_change=0.0), 2, []
    for now in range(0, 1200, 15):
        backlog = 400 if now < 60 else 0
        decision = decide(Observation(replicas, backlog, cpu=20, memory=20, now=now), policy, state)
        if decision.action != "hold":
            changes.append((now, decision.current, decision.desired, decision.reason))
            state, replicas = state_after(state, decision, now), decision.desired

    assert changes == [
        (0, 2, 8, Reason.DEPTH),
        (300, 8, 7, Reason.IDLE),
        (600, 7, 6, Reason.IDLE),
        (900, 6, 5, Reason.IDLE),
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_workers": 0, "max_workers": 4},
        {"min_workers": 5, "max_workers": 4},
        {"min_workers": 1, "max_workers": 4, "target_per_worker": 0},
        {"min_workers": 1, "max_workers": 4, "down_threshold": 70, "up_threshold": 70},
    ],
    ids=["min-zero", "min-above-max", "target-zero", "thresholds-not-ordered"],
)
def test_policy_refuses_impossible_settings(kwargs):
    with pytest.raises(ValueError):
        Policy(**{"target_per_worker": 50, **kwargs})


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("docker_compose", "docker-compose"),
        ("dry_run", "dry-run"),
        ("dry-run", "dry-run"),
        ("k8s", "kubernetes"),
    ],
)
def test_backend_names_in_both_spellings(raw, name):
    assert backend_name(raw) == name


def test_an_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="use one of docker-compose, kubernetes, dry-run"):
        backend_name("swarm")


# --------------------------------------------------------------------------------------------
# The loop and the command, against the real broker (tasks published, no worker consuming)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def broker(redis_client):
    return redis_lib.Redis.from_url(settings.CELERY_BROKER_URL)


@pytest.fixture
def autoscale_settings(settings):
    settings.AUTOSCALER_MIN_WORKERS = 1
    settings.AUTOSCALER_MAX_WORKERS = 8
    settings.AUTOSCALER_TARGET_PER_WORKER = 50
    settings.AUTOSCALER_UP_COOLDOWN_SECONDS = 60
    settings.AUTOSCALER_DOWN_COOLDOWN_SECONDS = 300
    return settings


def publish_chains(count: int, *, offset: int = 0) -> None:
    for i in range(offset, offset + count):
        app.send_task(CHAIN_TASK, args=[f"NSE@SYM{i}@equity_spot"])


def heartbeat(client, name: str, *, seen: float) -> None:
    client.hset(WORKERS_KEY, name, json.dumps({"seen": seen, "queues": [], "stolen": [], "busy": False}))


def test_once_with_the_dry_run_backend_prints_a_scale_up_from_the_live_workers(broker, autoscale_settings):
    publish_chains(120)
    heartbeat(broker, "a@h", seen=time.time())
    heartbeat(broker, "b@h", seen=time.time())
    heartbeat(broker, "dead@h", seen=time.time() - 3600)
    out = io.StringIO()

    call_command("autoscale_workers", "--once", "--backend", "dry-run", stdout=out)

    [line] = out.getvalue().splitlines()
    assert line.startswith("autoscale up 2 -> 3 (depth: backlog 120 / 50 per worker = 3)"), line
    assert "backend=dry-run live_workers=2 ready=120 unacked=0" in line


def test_the_batch_lane_s_backlog_does_not_size_the_farm(broker, autoscale_settings):
    """Rollups wait on `timeframes`, which only the batch worker consumes: more farm workers would
    not drain them."""
    for _ in range(200):
        app.send_task("timeframes.tasks.refresh_rollups")
    publish_chains(60)
    heartbeat(broker, "a@h", seen=time.time())
    heartbeat(broker, "b@h", seen=time.time())
    out = io.StringIO()

    call_command("autoscale_workers", "--once", "--backend", "dry-run", stdout=out)

    [line] = out.getvalue().splitlines()
    assert "backend=dry-run live_workers=2 ready=60 unacked=0" in line, line


def test_the_loop_keeps_the_up_cooldown_between_decisions(broker, autoscale_settings):
    clock = FakeClock(1000.0)
    lines: list[str] = []
    scaler = Autoscaler(
        client=broker,
        backend=DryRunBackend(1),
        policy=policy_from_settings(),
        report=lines.append,
        clock=clock,
    )
    publish_chains(120)
    first = scaler.step()
    publish_chains(180, offset=120)  # 300 waiting: 6 workers
    clock.now += 30
    second = scaler.step()
    clock.now += 31
    third = scaler.step()

    assert [(d.current, d.desired, d.reason) for d in (first, second, third)] == [
        (1, 3, Reason.DEPTH),
        (3, 3, Reason.UP_COOLDOWN),
        (3, 6, Reason.DEPTH),
    ]
    assert scaler.backend.replicas() == 6
    assert [line.split(" (")[0] for line in lines] == [
        "autoscale up 1 -> 3",
        "autoscale hold 3 -> 3",
        "autoscale up 3 -> 6",
    ]


def test_the_command_refuses_an_unknown_backend(autoscale_settings):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="unknown autoscaler backend 'swarm'"):
        call_command("autoscale_workers", "--once", "--backend", "swarm")


@pytest.mark.parametrize(
    ("backend", "env", "message"),
    [
        ("docker-compose", {"DOCKER_HOST": "tcp://127.0.0.1:{port}"}, "cannot reach the Docker Engine"),
        ("kubernetes", {"KUBECONFIG": "/nonexistent/kubeconfig"}, "no Kubernetes configuration"),
    ],
)
def test_the_command_says_when_a_backend_cannot_be_reached(
    autoscale_settings, monkeypatch, backend, env, message
):
    from django.core.management.base import CommandError

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(port=free_port()))
    with pytest.raises(CommandError, match=message):
        call_command("autoscale_workers", "--once", "--backend", backend)


@pytest.mark.slow
def test_sigterm_stops_the_loop_cleanly(redis_client):
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "autoscale_workers", "--backend", "dry-run", "--interval", "0.5"],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = proc.stdout.readline()
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert banner.startswith("autoscaler: backend=dry-run every 0.5s"), banner + err
    assert first.startswith("autoscale hold 1 -> 1"), first + err
    assert out.splitlines()[-1] == "autoscaler: stopped"
    assert proc.returncode == 0, err
    assert "SIGTERM received, stopping" in err


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------------------------
# docker-compose backend: the plan, and the Engine API calls against a fake Docker Engine
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("running", "existing", "desired", "create", "remove"),
    [
        ([1, 2], [1, 2], 4, [3, 4], []),
        ([1, 2], [1, 2, 5], 3, [6], []),  # a stopped replica keeps its number
        ([1, 2, 3, 4], [1, 2, 3, 4], 2, [], [4, 3]),
        ([1, 3, 4], [1, 3, 4], 1, [], [4, 3]),
        ([1, 2], [1, 2], 2, [], []),
    ],
    ids=["up", "up-past-a-stopped-number", "down-highest-first", "down-with-a-gap", "same"],
)
def test_scale_plan(running, existing, desired, create, remove):
    assert scale_plan(running, existing, desired) == (create, remove)


@pytest.mark.parametrize(
    ("template", "name"),
    [("/proj-worker-1", "proj-worker-7"), ("/proj_worker_1", "proj_worker_7"), ("/custom", "proj-worker-7")],
    ids=["compose-v2", "compose-v1", "unnumbered"],
)
def test_clone_name(template, name):
    assert clone_name(template, 7, project="proj", service="worker") == name


def worker_inspect(
    number: int, *, project: str = "proj", service: str = "worker", state: str = "running"
) -> dict:
    """A container as `docker inspect` shows a compose v2 replica (the fields the backend reads)."""
    name = f"{project}-{service}-{number}"
    return {
        "Id": f"{name}-id",
        "Name": f"/{name}",
        "Image": "sha256:0123abcd",
        "State": {"Status": state, "Running": state == "running"},
        "Config": {
            "Hostname": f"host{number}",
            "Image": "signal-service:latest",
            "Cmd": ["celery", "-A", "signalsvc", "worker", "--farm"],
            "Env": ["DJANGO_ENV=production", "REDIS_URL=redis://redis:6379/0"],
            "StopSignal": "SIGTERM",
            "StopTimeout": 120,
            "Labels": {
                "com.docker.compose.project": project,
                "com.docker.compose.service": service,
                "com.docker.compose.container-number": str(number),
                "com.docker.compose.oneoff": "False",
                "com.docker.compose.config-hash": "c0ffee",
            },
        },
        "HostConfig": {
            "NetworkMode": f"{project}_default",
            "Init": True,
            "RestartPolicy": {"Name": "unless-stopped"},
        },
        "NetworkSettings": {
            "Networks": {
                f"{project}_metrics": {"Aliases": [name, service], "IPAddress": "172.19.0.4"},
                f"{project}_default": {"Aliases": [name, service], "IPAddress": "172.18.0.4"},
            }
        },
    }


def test_clone_config_copies_the_replica_but_not_its_identity():
    template = worker_inspect(1)

    name, config, more_networks = clone_config(template, 3, project="proj", service="worker")

    assert name == "proj-worker-3"
    assert "Hostname" not in config  # celery@HOSTNAME must differ between replicas
    assert config["Image"] == "sha256:0123abcd"
    assert config["Cmd"] == template["Config"]["Cmd"] and config["Env"] == template["Config"]["Env"]
    assert config["Labels"] == {**template["Config"]["Labels"], "com.docker.compose.container-number": "3"}
    assert config["HostConfig"] == template["HostConfig"]
    assert config["NetworkingConfig"] == {
        "EndpointsConfig": {"proj_default": {"Aliases": ["worker", "proj-worker-3"]}}
    }
    assert more_networks == {"proj_metrics": ["worker", "proj-worker-3"]}


class FakeDockerEngine(BaseHTTPRequestHandler):
    """The Engine API routes the backend uses, over a dict of containers (``server.containers``:
    id -> inspect); every request is recorded in ``server.calls`` as (method, path, query, body)."""

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body=None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        path = re.sub(r"^/v[\d.]+", "", url.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        server = self.server
        server.calls.append((method, path, query, body))
        containers = server.containers
        if method == "GET" and path == "/containers/json":
            wanted = json.loads(query.get("filters", "{}")).get("label", [])
            found = [
                {
                    "Id": c["Id"],
                    "Names": [c["Name"]],
                    "Labels": c["Config"]["Labels"],
                    "State": c["State"]["Status"],
                }
                for c in containers.values()
                if all(c["Config"]["Labels"].get(k) == v for k, v in (f.split("=", 1) for f in wanted))
                and (query.get("all") == "1" or c["State"]["Status"] == "running")
            ]
            return self._reply(200, found)
        if method == "POST" and path == "/containers/create":
            config = dict(body)
            cid = f"{query['name']}-id"
            networks = config.pop("NetworkingConfig", {}).get("EndpointsConfig", {})
            containers[cid] = {
                "Id": cid,
                "Name": f"/{query['name']}",
                "Image": config["Image"],
                "State": {"Status": "created", "Running": False},
                "Config": {k: v for k, v in config.items() if k != "HostConfig"},
                "HostConfig": config["HostConfig"],
                "NetworkSettings": {"Networks": dict(networks)},
            }
            return self._reply(201, {"Id": cid, "Warnings": []})
        match = re.fullmatch(r"/networks/([^/]+)/connect", path)
        if method == "POST" and match:
            containers[body["Container"]]["NetworkSettings"]["Networks"][match.group(1)] = body[
                "EndpointConfig"
            ]
            return self._reply(200)
        match = re.fullmatch(r"/containers/([^/]+)(/json|/start|/stop)?", path)
        if match and match.group(1) in containers:
            container = containers[match.group(1)]
            action = match.group(2)
            if method == "GET" and action == "/json":
                return self._reply(200, container)
            if method == "POST" and action in ("/start", "/stop"):
                container["State"]["Status"] = "running" if action == "/start" else "exited"
                return self._reply(204)
            if method == "DELETE" and action is None:
                del containers[match.group(1)]
                return self._reply(204)
        return self._reply(404, {"message": f"no route for {method} {path}"})

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_DELETE(self):
        self._route("DELETE")


def serve(handler: type[BaseHTTPRequestHandler], **state) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for key, value in state.items():
        setattr(server, key, value)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def docker_engine():
    containers = {}
    for inspect in (
        worker_inspect(1),
        worker_inspect(2),
        worker_inspect(3, state="exited"),  # stopped by hand: its number is taken
        worker_inspect(1, service="web"),
        worker_inspect(1, project="other"),
    ):
        containers[inspect["Id"]] = inspect
    server = serve(FakeDockerEngine, containers=containers, calls=[])
    yield server
    server.shutdown()
    server.server_close()


def compose_backend(server, project: str = "proj") -> DockerComposeBackend:
    import docker

    client = docker.APIClient(base_url=f"tcp://127.0.0.1:{server.server_address[1]}", version="1.44")
    return DockerComposeBackend(project=project, service="worker", client=client)


def test_compose_backend_counts_running_replicas_of_its_own_service_and_project(docker_engine):
    assert compose_backend(docker_engine).replicas() == 2
    assert compose_backend(docker_engine, project="other").replicas() == 1


def test_compose_backend_scales_up_by_cloning_a_running_replica(docker_engine):
    backend = compose_backend(docker_engine)

    backend.scale(4)

    assert backend.replicas() == 4
    creates = [
        (q["name"], b) for m, p, q, b in docker_engine.calls if (m, p) == ("POST", "/containers/create")
    ]
    assert [name for name, _ in creates] == ["proj-worker-4", "proj-worker-5"]
    for name, body in creates:
        number = name.rsplit("-", 1)[1]
        assert body["Labels"]["com.docker.compose.container-number"] == number
        assert body["Labels"]["com.docker.compose.config-hash"] == "c0ffee"
        assert "Hostname" not in body and body["Image"] == "sha256:0123abcd"
    connects = [(p, b["Container"]) for m, p, q, b in docker_engine.calls if p.endswith("/connect")]
    assert connects == [
        ("/networks/proj_metrics/connect", "proj-worker-4-id"),
        ("/networks/proj_metrics/connect", "proj-worker-5-id"),
    ]
    started = [p for m, p, q, b in docker_engine.calls if p.endswith("/start")]
    assert started == ["/containers/proj-worker-4-id/start", "/containers/proj-worker-5-id/start"]


def test_compose_backend_scales_down_with_a_warm_stop_of_the_highest_numbers(docker_engine):
    backend = compose_backend(docker_engine)
    backend.scale(4)
    docker_engine.calls.clear()

    backend.scale(1)

    assert backend.replicas() == 1
    stops = [(p, q) for m, p, q, b in docker_engine.calls if p.endswith("/stop")]
    assert stops == [
        ("/containers/proj-worker-5-id/stop", {"t": "120"}),
        ("/containers/proj-worker-4-id/stop", {"t": "120"}),
        ("/containers/proj-worker-2-id/stop", {"t": "120"}),
    ]
    removed = [p for m, p, q, b in docker_engine.calls if m == "DELETE"]
    assert removed == [
        "/containers/proj-worker-5-id",
        "/containers/proj-worker-4-id",
        "/containers/proj-worker-2-id",
    ]
    assert set(docker_engine.containers) == {
        "proj-worker-1-id",
        "proj-worker-3-id",
        "proj-web-1-id",
        "other-worker-1-id",
    }


def test_compose_backend_needs_a_running_replica_to_clone(docker_engine):
    backend = compose_backend(docker_engine, project="nothing-here")
    with pytest.raises(RuntimeError, match="start one with `docker compose up -d worker`"):
        backend.scale(2)


# --------------------------------------------------------------------------------------------
# Kubernetes backend, against a fake API server that checks the patch type as the real one does
# --------------------------------------------------------------------------------------------


class FakeKubernetesApi(BaseHTTPRequestHandler):
    """The scale subresource of Deployments (``server.replicas``: (namespace, name) -> replicas)."""

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _scale(self) -> tuple[str, str] | None:
        match = re.fullmatch(
            r"/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)/scale", urlparse(self.path).path
        )
        return (match.group(1), match.group(2)) if match and match.groups() in self.server.replicas else None

    def _scale_body(self, key: tuple[str, str]) -> dict:
        replicas = self.server.replicas[key]
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": key[1], "namespace": key[0]},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas},
        }

    def do_GET(self):
        key = self._scale()
        if key is None:
            return self._reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        self._reply(200, self._scale_body(key))

    def do_PATCH(self):
        key = self._scale()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content_type = self.headers["Content-Type"]
        self.server.patches.append((content_type, body))
        if key is None:
            return self._reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        # As the API server: a JSON Patch must be a list of operations.
        if content_type == "application/json-patch+json" and not isinstance(body, list):
            message = "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
            return self._reply(400, {"kind": "Status", "code": 400, "message": message})
        if content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            return self._reply(415, {"kind": "Status", "code": 415})
        self.server.replicas[key] = body["spec"]["replicas"]
        self._reply(200, self._scale_body(key))


@pytest.fixture
def kubernetes_api():
    server = serve(FakeKubernetesApi, replicas={("signal", "worker"): 2}, patches=[])
    yield server
    server.shutdown()
    server.server_close()


def test_kubernetes_backend_reads_and_patches_the_deployment_scale(kubernetes_api):
    from kubernetes import client

    configuration = client.Configuration(host=f"http://127.0.0.1:{kubernetes_api.server_address[1]}")
    api = client.AppsV1Api(client.ApiClient(configuration))
    backend = KubernetesBackend(namespace="signal", deployment="worker", api=api)

    assert backend.replicas() == 2
    backend.scale(5)

    assert backend.replicas() == 5
    assert kubernetes_api.patches == [("application/merge-patch+json", {"spec": {"replicas": 5}})]


# --------------------------------------------------------------------------------------------
# docker/k8s manifests
# --------------------------------------------------------------------------------------------


def manifests() -> dict[str, list[dict]]:
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(K8S.glob("*.yaml"))
    }


def objects() -> dict[tuple[str, str], dict]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc
        for docs in manifests().values()
        for doc in docs
        if doc["kind"] != "Kustomization"
    }


def container(kind_name: tuple[str, str]) -> dict:
    doc = objects()[kind_name]
    spec = doc["spec"]["template"]["spec"]
    [only] = spec["containers"]
    return only


def compose_commands() -> dict[str, list[str]]:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    return {name: service.get("command") for name, service in services.items()}


def test_every_manifest_parses_into_the_expected_objects():
    assert {
        name: [(d["kind"], d.get("metadata", {}).get("name")) for d in docs]
        for name, docs in manifests().items()
    } == {
        "autoscaler.yaml": [
            ("ServiceAccount", "signal-autoscaler"),
            ("Role", "signal-autoscaler"),
            ("RoleBinding", "signal-autoscaler"),
            ("Deployment", "autoscaler"),
        ],
        "batch.yaml": [("Deployment", "batch")],
        "beat.yaml": [("Deployment", "beat")],
        "config.yaml": [("ConfigMap", "signal-config")],
        "flower.yaml": [("Deployment", "flower"), ("Service", "flower")],
        "ingest.yaml": [("Deployment", "ingest")],
        "keda-scaledobject.yaml": [("ScaledObject", "worker")],
        "kustomization.yaml": [("Kustomization", None)],
        "migrate-job.yaml": [("Job", "signal-migrate")],
        "secret.example.yaml": [("Secret", "signal-secrets")],
        "web.yaml": [("Deployment", "web"), ("Service", "web")],
        "worker.yaml": [("Deployment", "worker")],
        "ws.yaml": [("Deployment", "ws"), ("Service", "ws")],
    }


def test_kustomization_lists_the_deployment_files_and_leaves_out_the_optional_ones():
    kustomization = manifests()["kustomization.yaml"][0]
    assert sorted(kustomization["resources"]) == sorted(
        set(manifests())
        - {"kustomization.yaml", "secret.example.yaml", "migrate-job.yaml", "keda-scaledobject.yaml"}
    )


def test_the_objects_are_valid_for_the_kubernetes_client_models():
    """Each object deserializes into the official client's model (types and required fields)."""
    from kubernetes import client

    models = {
        "Deployment": "V1Deployment",
        "Service": "V1Service",
        "ServiceAccount": "V1ServiceAccount",
        "Role": "V1Role",
        "RoleBinding": "V1RoleBinding",
        "ConfigMap": "V1ConfigMap",
        "Secret": "V1Secret",
        "Job": "V1Job",
    }
    api = client.ApiClient()
    checked = 0
    for (kind, name), doc in objects().items():
        if kind in models:
            response = type("Response", (), {"data": json.dumps(doc)})()
            model = api.deserialize(response, models[kind])
            assert model.metadata.name == name
            checked += 1
    assert checked == len(objects()) - 1  # all but the ScaledObject (a KEDA resource)


@pytest.mark.parametrize("name", ["web", "ws", "worker", "batch", "beat", "ingest", "flower", "autoscaler"])
def test_each_process_runs_the_image_with_the_shared_settings(name):
    deployment = objects()[("Deployment", name)]
    spec = deployment["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert spec["template"]["spec"]["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001}
    main = container(("Deployment", name))
    assert main["image"] == "signal-service:latest"
    assert main["envFrom"] == [
        {"configMapRef": {"name": "signal-config"}},
        {"secretRef": {"name": "signal-secrets"}},
    ]


@pytest.mark.parametrize("name", ["web", "ws", "worker", "batch", "beat", "ingest", "flower", "autoscaler"])
def test_processes_run_the_same_command_as_in_compose(name):
    assert container(("Deployment", name))["command"] == compose_commands()[name]


def test_the_worker_joins_the_farm_on_the_farm_queues_and_the_batch_lane_stays_out():
    for name, queues, farm in (("worker", FARM_QUEUES, True), ("batch", BATCH_QUEUES, False)):
        command = container(("Deployment", name))["command"]
        assert command[:4] == ["celery", "-A", "signalsvc", "worker"]
        assert ("--farm" in command) is farm
        assert command[command.index("-Q") + 1] == ",".join(queues)
        assert (
            objects()[("Deployment", name)]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
        )


@pytest.mark.parametrize("name", ["beat", "ingest"])
def test_beat_and_ingest_are_single_replicas_that_are_never_doubled(name):
    spec = objects()[("Deployment", name)]["spec"]
    assert (spec["replicas"], spec["strategy"]) == (1, {"type": "Recreate"})


def test_the_autoscaler_may_get_and_patch_the_worker_scale_and_nothing_else():
    deployment = objects()[("Deployment", "autoscaler")]
    env = {
        e["name"]: e.get("value", e.get("valueFrom")) for e in container(("Deployment", "autoscaler"))["env"]
    }
    assert env["AUTOSCALER_BACKEND"] == "kubernetes"
    assert env["AUTOSCALER_K8S_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert backend_name(env["AUTOSCALER_BACKEND"]) == "kubernetes"
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    binding = objects()[("RoleBinding", "signal-autoscaler")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    role = objects()[("Role", binding["roleRef"]["name"])]
    # What KubernetesBackend calls: read_namespaced_deployment_scale and patch_namespaced_deployment_scale.
    assert role["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/scale"],
            "resourceNames": [env["AUTOSCALER_K8S_DEPLOYMENT"]],
            "verbs": ["get", "patch"],
        }
    ]
    assert ("Deployment", env["AUTOSCALER_K8S_DEPLOYMENT"]) in objects()


def test_the_keda_scaled_object_targets_the_worker_deployment_like_the_autoscaler():
    scaled = objects()[("ScaledObject", "worker")]
    spec = scaled["spec"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"}
    assert ("Deployment", spec["scaleTargetRef"]["name"]) in objects()
    env = {e["name"]: e.get("value") for e in container(("Deployment", "autoscaler"))["env"]}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (
        int(env["AUTOSCALER_MIN_WORKERS"]),
        int(env["AUTOSCALER_MAX_WORKERS"]),
    )
    redis_triggers = [t["metadata"] for t in spec["triggers"] if t["type"] == "redis"]
    assert sorted(t["listName"] for t in redis_triggers) == sorted(FARM_QUEUES)
    defaults = Policy(min_workers=1, max_workers=1, target_per_worker=settings.AUTOSCALER_TARGET_PER_WORKER)
    assert {t["listLength"] for t in redis_triggers} == {str(defaults.target_per_worker)}
    resources = {
        t["type"]: t["metadata"]["value"] for t in spec["triggers"] if t["type"] in ("cpu", "memory")
    }
    assert resources == {"cpu": f"{defaults.up_threshold:g}", "memory": f"{defaults.up_threshold:g}"}
    # Utilization triggers are percentages of the worker's requests, which must therefore be set.
    assert set(container(("Deployment", "worker"))["resources"]["requests"]) == {"cpu", "memory"}
    assert spec["cooldownPeriod"] == defaults.down_cooldown
