"""Private backing services for the fault tests: a PostgreSQL cluster and a Redis server that the
tests may stop and start. The machine's shared PostgreSQL and Redis are never touched: other
suites run against them."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis

from tests.conftest import free_port

PG_BIN = Path(os.environ.get("FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _deadline(what: str, check, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the service is still coming up: say why if it never does
            last = exc
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last error: {last})")


class PrivatePostgres:
    """A throwaway cluster in a temporary directory: trust auth, 127.0.0.1 on a free port, its
    unix socket in the same directory. ``initdb`` and ``postgres`` refuse to run as root, so as
    root they run as the ``postgres`` user (``runuser``), which owns the directory."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self._as = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
            os.chmod(self.root, 0o755)

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr[-2000:]}")

    def init(self) -> None:
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C.UTF-8", "-N",
        )  # fmt: skip
        settings = (
            f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.root}'\n"
            "max_connections = 200\nfsync = on\nsynchronous_commit = on\nshared_buffers = 64MB\n"
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(settings)

    def start(self) -> None:
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        result = subprocess.run([*self._as, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"],
                                capture_output=True)  # fmt: skip
        return result.returncode == 0

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5)

    def create_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def destroy(self) -> None:
        if self.data.exists() and self.running():
            # The directory goes anyway; nothing else uses this cluster.
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A redis-server of our own with the production persistence settings' kind (AOF on).

    ``appendfsync``: production (compose.yaml) runs ``everysec``, which can lose up to a second of
    acknowledged writes if the *machine* or the *server process* dies uncleanly. The outage here is a
    clean shutdown (``SHUTDOWN`` = SIGTERM's path), which writes and fsyncs the AOF before exiting,
    so ``everysec`` loses nothing in it; the test runs with production's setting to prove exactly
    that (``FAULTS_REDIS_APPENDFSYNC=always`` to compare)."""

    def __init__(self, *, appendfsync: str | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="faults-redis-"))
        self.port = free_port()
        self.appendfsync = appendfsync or os.environ.get("FAULTS_REDIS_APPENDFSYNC", "everysec")
        self.process: subprocess.Popen | None = None
        self.log = self.root / "redis.log"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "/usr/bin/redis-server",
                "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root),
                "--appendonly", "yes", "--appendfsync", self.appendfsync,
                "--maxmemory-policy", "noeviction", "--save", "", "--logfile", str(self.log),
                "--databases", "16",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        _deadline(f"redis on {self.port}", lambda: self.client().ping(), 20)

    def shutdown(self) -> None:
        """A clean stop: SHUTDOWN (what SIGTERM does) flushes and fsyncs the AOF, then exits."""
        with contextlib.suppress(redis.ConnectionError):  # the server closes it as it exits
            self.client().shutdown(nosave=False)
        assert self.process is not None
        self.process.wait(20)
        self.process = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, **options) -> redis.Redis:
        options.setdefault("decode_responses", True)
        options.setdefault("socket_timeout", 5)
        return redis.Redis.from_url(self.url(), **options)

    def destroy(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
