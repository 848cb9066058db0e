"""The service's processes started one by one (not under honcho), so that the fault tests can kill,
stop and restart any one of them: simulator, ingest, two farm workers, beat, web (granian) and the
WebSocket server (uvicorn), all pointed at a private PostgreSQL and a private Redis
(tests/faults/services.py). nginx is left out: the tests talk to granian and uvicorn directly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from tests.conftest import free_port, subprocess_env

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / ".venv/bin/python")
CELERY = str(ROOT / ".venv/bin/celery")


def wait_for(what: str, check, timeout: float, interval: float = 0.2, detail=None):
    """Poll ``check`` until it returns a true value (returned) or ``timeout`` seconds pass (an
    AssertionError naming ``what``, with ``detail()`` if given)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"; {detail()}" if detail else ""
            raise AssertionError(f"{what}: not within {timeout:.0f} s{extra}")
        time.sleep(interval)


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        log = open(self.log_path, "a")  # noqa: SIM115 - the child holds it; closed with the process
        log.write(f"\n==== start {self.starts + 1} of {self.name} at {time.time():.3f}\n")
        log.flush()
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL to the process itself (its children are left to notice, as after a real crash)."""
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(10)
        self.exits.append(self.process.returncode)

    def terminate(self, timeout: float) -> tuple[int | None, float]:
        """SIGTERM, then wait up to ``timeout`` seconds: (exit code or None if still running, seconds)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - started
        self.exits.append(code)
        return code, time.monotonic() - started

    def stop_group(self) -> None:
        """Cleanup: the whole process group, SIGKILL after 10 s."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Topology:
    """Every process of the Procfile but nginx and flower, each on its own."""

    WORKERS = ("worker-1", "worker-2")

    def __init__(self, *, tmp: Path, database_url: str, redis_url: str) -> None:
        self.tmp = tmp
        self.rest_port, self.ws_port = free_port(), free_port()
        self.truth = tmp / "truth.json"
        metrics = tmp / "ws-metrics"
        base = subprocess_env(
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            CELERY_BROKER_URL=redis_url,
            CELERY_RESULT_BACKEND=redis_url,
            CHANNEL_LAYER_REDIS_URL=redis_url,
            MARKET_DATA_STREAM="md:ticks",
            PUBSUB_PREFIX="faults:",
            MARKET_CALENDAR="NSE-DEMO",
            API_ANONYMOUS_READ="true",
            SIMULATOR_TRUTH_FILE=str(self.truth),
            SHARD_COUNT="4",
            WEB_PORT=str(free_port()),
            WEB_HTTP_PORT=str(self.rest_port),
            WS_PORT=str(self.ws_port),
            WEB_WORKERS="2",
            # uvicorn's default here (one per core): its supervisor, as in production. A lone
            # uvicorn process re-raises SIGTERM after its graceful shutdown (exit -15 by design).
            WS_WORKERS_PER_CORE="1",
            PROMETHEUS_MULTIPROC_DIR=str(metrics),
            # Claim a dead consumer's pending entries after 2 s (default 30 s) to keep the run short.
            MARKET_DATA_CLAIM_IDLE_MS="2000",
        )
        # The web script takes its own multiprocess directory; only uvicorn's is set here.
        web_env = {k: v for k, v in base.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        specs = {
            "simulator": ([PY, "manage.py", "simulate_market", "--backfill-minutes", "0"], base),
            "ingest": ([PY, "manage.py", "ingest_market_data", "--name", "ingest-1"], base),
            "beat": ([CELERY, "-A", "signalsvc", "beat", "-l", "info", "--pidfile="], base),
            "web": (["scripts/start-web.sh"], web_env),
            "ws": (["scripts/start-ws.sh"], base),
        }
        for name in self.WORKERS:
            specs[name] = (["scripts/start-worker.sh"], base | {"WORKER_NAME": name})
        specs["batch"] = (["scripts/start-worker.sh", "batch"], base | {"WORKER_NAME": "batch"})
        self.procs = {
            name: Proc(name, argv, dict(env), tmp / f"{name}.log") for name, (argv, env) in specs.items()
        }
        self.env = base

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/api/v2/signals/subscriptions/websocket"

    def __getitem__(self, name: str) -> Proc:
        return self.procs[name]

    def start(self) -> None:
        for proc in self.procs.values():
            proc.start()

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop_group()

    def dead(self) -> dict[str, str]:
        """Processes that exited on their own, with their log tails."""
        return {n: p.log_tail(2000) for n, p in self.procs.items() if p.process is not None and not p.alive()}

    def assert_all_alive(self) -> None:
        dead = self.dead()
        assert not dead, "processes exited by themselves: " + "\n".join(
            f"--- {n}:\n{t}" for n, t in dead.items()
        )

    def ready_status(self) -> int | None:
        try:
            return requests.get(f"{self.rest}/api/v2/health/ready", timeout=5).status_code
        except requests.RequestException:
            return None
