"""One private PostgreSQL cluster (migrated once), one private Redis and one topology for the
whole fault module: the faults run one after another on the same running service, and each test
checks its own counts. Everything is torn down in finalizers, failed or not."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.faults.events import TaskEvents
from tests.faults.services import PrivatePostgres, PrivateRedis
from tests.faults.topology import PY, ROOT, Topology, wait_for

DATABASE = "signal_faults"


@pytest.fixture(scope="module")
def private_pg():
    pg = PrivatePostgres()
    try:
        pg.init()
        pg.start()
        pg.create_database(DATABASE)
        env = {"DATABASE_URL": pg.url(DATABASE)}
        from tests.conftest import subprocess_env

        for command in (["migrate", "--noinput", "-v", "0"], ["ensure_partitions"]):
            result = subprocess.run(
                [PY, "manage.py", *command], cwd=ROOT, env=subprocess_env(**env),
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr[-3000:]
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def private_redis():
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def topology(private_pg, private_redis):
    tmp = Path(tempfile.mkdtemp(prefix="faults-topology-"))
    topo = Topology(tmp=tmp, database_url=private_pg.url(DATABASE), redis_url=private_redis.url())
    events = TaskEvents(private_redis.url())
    topo.events = events
    try:
        events.start()
        topo.start()
        wait_for("readiness 200", lambda: topo.ready_status() == 200, 90, 0.5, detail=topo.dead)
        yield topo
    finally:
        topo.stop()
        events.stop()
        print(f"fault topology logs in {tmp}")
