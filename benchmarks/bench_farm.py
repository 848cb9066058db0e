"""End-to-end farm throughput (issue 11): a whole cycle of 1,000,000 options on 2 worker processes.

Setup, in the bench's own PostgreSQL database ``signal_bench_farm`` and Redis DB 14
(``BENCH_FARM_DATABASE``, ``BENCH_FARM_REDIS_DB``), never the dev data nor another bench's queues:

* the market of ``benchmarks/farm_load.py``: 500 underlyings x 2,000 options (4 expiries x 250
  strikes x call/put, NIFTY's shape) and 3 futures each, registered (by COPY, only when not exactly
  there) and their latest quotes written to Redis as the ingest writes them (``latest_ticks_store``,
  one hash per instrument); the first row is that load;
* two farm workers started by ``scripts/start-worker.sh`` itself (whatever pool and options it
  gives them; ``BENCH_FARM_WORKER_COMMAND`` names another script to measure a variant) with the
  bench's database and Redis as their broker; the bench waits until ``farm:owners`` gives all 64
  shards to them and both consume what they own, then warms each worker with two chains of its own
  shards (imports, connections).

A cycle: the 500 spot quotes are re-stamped one minute later than the previous cycle's (the cycle's
instant: each cycle is a new computation with its own minute of rows and a newer source time),
then ``greeks.tasks.chain_compute`` is enqueued for the 500 underlyings (the router puts each on its
``greeks.<crc32 % 64>`` queue) and the clock runs until every underlying's latest values carry the
cycle's source time in both ``greeks:chain:<u>`` and ``mny:chain:<u>`` (the task's last write),
polled every 100 ms. Then, untimed, the cycle's minute in ``greeks_option_1m`` is counted: it must
hold 1,000,000 rows. Earlier cycles' rows stay (a later cycle COPYs into a table that already holds
millions of rows, as a live day does); the tables are emptied before the first cycle and after the last.

Rows:
* load: the 1,000,000 + 2,000 quotes into Redis through ``latest_ticks_store`` (setup; for scale).
* cycle: the median wall time of ``BENCH_FARM_RUNS`` cycles (default 3; fewer when the time budget
  ``BENCH_FARM_BUDGET_S`` (270 s from the child's start) runs out, at least 1), options/min, the
  target verdict, every run's time and checks, the Redis memory of the 500 chains' latest values,
  the load average before the bench.
* CPU during the cycles (``_CpuMeter``): cores busy on the machine and by whom (the workers,
  PostgreSQL, Redis, this bench, everyone else). The machine has 2 cores and is shared: a cycle's
  time is only comparable with the "everything else" figure beside it.
* stages: the seconds each stage of the chain task took, summed over the 500 chains of the cycles and
  both workers, with its share of the task time; from the ``farm:chain:stages`` hash the task adds to
  (stage names + ``count``) when the task has it, otherwise from 20 chains computed in-process after
  the workers stopped (``greeks.services.chain_compute(...).timings``), scaled to 500 chains. Under
  ``price``, the part of it that reads a chain's 2,003 latest quotes (``latest_ticks_get``, timed
  in-process on 10 chains after the cycles). The last row is what the task's stages do not cover:
  the cycle's worker-seconds (2 x wall) minus the task time (Celery fetch and ack, bookkeeping, a
  worker idle at the end).

Target (issue 11): the cycle in under 60 s, i.e. >= 1,000,000 options a minute with 2 workers.

The whole bench runs in a child process (``python -m benchmarks.bench_farm --driver DIR``): Django is
configured once per process, and ``make bench``'s own process belongs to the other modules' database.
The child starts the workers in their own process groups and stops them (SIGTERM, then SIGKILL) in a
``finally``; the parent kills whatever group is left after the child ends, even on a timeout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Result, load_note, verdict

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATABASE = os.environ.get("BENCH_FARM_DATABASE", "signal_bench_farm")
BENCH_REDIS_DB = int(os.environ.get("BENCH_FARM_REDIS_DB", "14"))
RUNS = int(os.environ.get("BENCH_FARM_RUNS", "3"))
# No new cycle starts once this much of the child's time has gone (the first always runs).
BUDGET_S = float(os.environ.get("BENCH_FARM_BUDGET_S", "270"))
WORKERS = 2
TARGET_S = 60.0
CYCLE_TIMEOUT_S = 240.0
OWNERSHIP_TIMEOUT_S = 60.0
POLL_S = 0.1
PROFILE_CHAINS = 20
CHILD_TIMEOUT_S = 900.0
# What starts one worker (env: WORKER_NAME, PY, the bench's URLs); another script measures a variant.
WORKER_COMMAND = os.environ.get("BENCH_FARM_WORKER_COMMAND", str(ROOT / "scripts/start-worker.sh"))
PUBSUB_PREFIX = "benchfarm:"  # pub/sub channels are server-wide: keep the bench's apart
STAGES_KEY = "farm:chain:stages"
STAGES = ("price", "moneyness", "smile", "store", "moneyness_store", "publish", "moneyness_publish")

_LOAD = "farm: load 1M latest quotes into Redis"
_CYCLE = "farm: 500 chains x 2,000 options, 2 workers"
_STAGE = "farm: chain task stages (500 chains)"


# -- the parent (make bench's process) --------------------------------------------------------------


def _kill_groups(pid_file: Path) -> None:
    """Kill the process groups of workers the child started and left (its own cleanup failed)."""
    if not pid_file.exists():
        return
    for line in pid_file.read_text().split():
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.killpg(int(line), signal.SIGKILL)


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="bench-farm-") as work:
        out, pids = Path(work) / "results.json", Path(work) / "workers.pid"
        # The child's progress goes to stderr: stdout is make bench's table.
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_farm", "--driver", work],
            cwd=ROOT,
            stdout=sys.stderr,
            start_new_session=True,
        )
        error = ""
        try:
            child.wait(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGTERM)  # the child stops its workers on SIGTERM
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            error = f"timed out after {CHILD_TIMEOUT_S:.0f} s"
        finally:
            _kill_groups(pids)
        if out.exists():
            rows = [Result(**row) for row in json.loads(out.read_text())]
            if rows:
                return rows
        error = error or f"exit code {child.returncode} (see the log above)"
        return [Result(_CYCLE, "failed", 0, float("nan"), f"no result: {error}")]


# -- the child ---------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    redis_url = f"redis://127.0.0.1:6379/{BENCH_REDIS_DB}"
    return {
        "DJANGO_SETTINGS_MODULE": "signalsvc.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DATABASE}",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "CHANNEL_LAYER_REDIS_URL": redis_url,
        "PUBSUB_PREFIX": PUBSUB_PREFIX,
        "MARKET_CALENDAR": "NSE",
    }


def _configure() -> None:
    """Point Django at the bench database and Redis DB, create and migrate the database."""
    os.environ.update(_env())
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DATABASE]).fetchone():
            conn.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def _log(message: str) -> None:
    sys.stderr.write(f"[bench_farm {dt.datetime.now():%H:%M:%S}] {message}\n")
    sys.stderr.flush()


def _broker_keys_delete(client) -> None:
    """The farm's and Celery's keys in the bench's Redis DB (queues, unacked, ownership, stages)."""
    from benchmarks.farm_load import keys_delete

    keys_delete(
        client,
        (
            "greeks.*",
            "default*",
            "ingest*",
            "timeframes*",
            "unacked*",
            "_kombu.*",
            "farm:*",
            "celery-task-meta-*",
            "greeks:computations",
            "greeks:finished",
        ),
    )


def _tables_truncate() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE greeks_option_1m, signal_moneyness_greeks, signal_atm_iv, signal_atm_iv_cm")


class _Workers:
    """The farm workers as ``scripts/start-worker.sh`` starts them, each in its own process group."""

    def __init__(self, work: Path, count: int) -> None:
        self.work = work
        self.procs: list[subprocess.Popen] = []
        self.names = [f"benchfarm{i + 1}" for i in range(count)]
        self.logs = [work / f"{name}.log" for name in self.names]

    def start(self) -> None:
        env = os.environ | _env() | {"PY": sys.executable}
        for name, log in zip(self.names, self.logs, strict=True):
            with log.open("wb") as fh:
                proc = subprocess.Popen(
                    [WORKER_COMMAND],
                    cwd=ROOT,
                    env=env | {"WORKER_NAME": name},
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.procs.append(proc)
            with (self.work / "workers.pid").open("a") as fh:
                fh.write(f"{proc.pid}\n")

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}: {self.tail(log)}")

    @staticmethod
    def tail(log: Path, lines: int = 15) -> str:
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    def errors(self) -> list[str]:
        found = []
        for log in self.logs:
            if log.exists():
                found += [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line]
        return found

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):  # the pool child too, whatever the main did
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class _CpuMeter:
    """Where the machine's CPU went over an interval, from two snapshots: ``machine`` from
    ``/proc/stat`` (busy = neither idle nor iowait); ``workers`` (their main processes and any pool
    children they reaped); ``postgres``: every PostgreSQL process, the backends that ended in the
    interval included (they are counted in the postmaster's children time once it reaps them: the
    workers' connections last one task, Celery's Django fixup closes them); all databases, so other
    users' too; ``redis`` (the server, shared too); ``bench`` (this process); ``other`` the rest."""

    GROUPS = ("workers", "postgres", "redis", "bench")

    def __init__(self, client, workers: _Workers) -> None:
        import psutil

        self.psutil = psutil
        self.workers = workers
        self.redis_pid = int(client.info("server")["process_id"])

    def _seconds(self, pid: int, *, children: bool = True) -> float:
        with contextlib.suppress(self.psutil.Error):
            t = self.psutil.Process(pid).cpu_times()
            return t.user + t.system + ((t.children_user + t.children_system) if children else 0.0)
        return 0.0

    def _postgres(self) -> float:
        total = 0.0
        for proc in self.psutil.process_iter(["username", "ppid"]):
            if proc.info["username"] == "postgres":
                # Children (backends, WAL writer, ...) are counted alive here, and in their parent's
                # children time once they have ended: only the postmaster's children time counts.
                parent_is_postgres = proc.info["ppid"] != 1 and self._is_postgres(proc.info["ppid"])
                total += self._seconds(proc.pid, children=not parent_is_postgres)
        return total

    def _is_postgres(self, pid: int) -> bool:
        with contextlib.suppress(self.psutil.Error):
            return self.psutil.Process(pid).username() == "postgres"
        return False

    @staticmethod
    def _busy(times) -> float:
        # guest time is already counted in user time on Linux
        idle = ("idle", "iowait", "guest", "guest_nice")
        return sum(getattr(times, f) for f in times._fields if f not in idle)

    def _snapshot(self) -> dict[str, float]:
        return {
            "machine": self._busy(self.psutil.cpu_times()),
            "workers": sum(self._seconds(p.pid) for p in self.workers.procs),
            "postgres": self._postgres(),
            "redis": self._seconds(self.redis_pid),
            "bench": self._seconds(os.getpid(), children=False),
            "wall": time.monotonic(),
        }

    def start(self) -> None:
        self.before = self._snapshot()

    def stop(self) -> dict[str, float]:
        """Cores used on average over the interval: ``machine``, each group, ``other``."""
        after = self._snapshot()
        wall = after.pop("wall") - self.before["wall"]
        cores = {name: (value - self.before[name]) / wall for name, value in after.items()}
        cores["other"] = max(cores["machine"] - sum(cores[g] for g in self.GROUPS), 0.0)
        return cores


def _full_names(client, names: list[str]) -> dict[str, str]:
    """Our workers' farm names (``benchfarm1@host``) among the live ones."""
    from signalsvc.farm.ownership import workers_read

    live = workers_read(client, ttl=5.0)
    return {n: full for full in live for n in names if full.startswith(n + "@")}


def _ownership_wait(client, workers: _Workers) -> dict[int, str]:
    """Until the 64 shards are owned by our workers and each consumes exactly what it owns."""
    from django.conf import settings

    from signalsvc.farm.ownership import owners_read, workers_read
    from signalsvc.farm.routing import shard_queue

    deadline = time.monotonic() + OWNERSHIP_TIMEOUT_S
    while time.monotonic() < deadline:
        workers.check_alive()
        names = _full_names(client, workers.names)
        owners = owners_read(client)
        live = workers_read(client, ttl=5.0)
        settled = (
            len(names) == len(workers.names)
            and len(owners) == settings.SHARD_COUNT
            and set(owners.values()) <= set(names.values())
            and all(
                set(live[full].get("queues", [])) == {shard_queue(s) for s, w in owners.items() if w == full}
                for full in names.values()
            )
        )
        if settled:
            return owners
        time.sleep(0.2)
    raise RuntimeError(f"shard ownership not settled in {OWNERSHIP_TIMEOUT_S:.0f} s: {owners_read(client)}")


def _source_us(ts: dt.datetime) -> str:
    return str(int(ts.timestamp() * 1_000_000))


def _chains_wait(
    client, keys: list[str], ts: dt.datetime, workers: _Workers, timeout: float
) -> tuple[float, int]:
    """Poll until every chain's moneyness hash (the task's last write) holds ``ts``, then check the
    Greeks hashes; returns (the monotonic time when the last was seen, how many have both)."""
    from greeks.services import chain_latest_key
    from moneyness.services import chain_key
    from signalsvc.redis_clients import SOURCE_FIELD

    want = _source_us(ts)
    pending = list(keys)
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while pending and time.monotonic() < deadline:
        pipe = client.pipeline(transaction=False)
        for key in pending:
            pipe.hget(chain_key(key), SOURCE_FIELD)
        values = pipe.execute()
        now = time.monotonic()
        still = [k for k, v in zip(pending, values, strict=True) if v != want]
        if len(still) < len(pending):
            last = now
        pending = still
        if pending:
            workers.check_alive()
            time.sleep(POLL_S)
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hget(chain_latest_key(key), SOURCE_FIELD)
    greeks_done = {k for k, v in zip(keys, pipe.execute(), strict=True) if v == want}
    return last, len(greeks_done - set(pending))


def _stages_read(client) -> dict[str, float]:
    raw = client.hgetall(STAGES_KEY)
    return {k: float(v) for k, v in raw.items()}


def _minute_rows(minute: dt.datetime) -> tuple[int, int]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*), count(iv) FROM greeks_option_1m WHERE ts = %s", [minute])
        return cur.fetchone()


def _cycle(client, market, workers: _Workers, ts: dt.datetime, meter: _CpuMeter) -> dict:
    from benchmarks.farm_load import spots_restamp
    from greeks.tasks import chain_compute

    spots_restamp(client, market, ts)
    before = _stages_read(client)
    meter.start()
    start = time.monotonic()
    for key in market.spot_keys:
        chain_compute.apply_async(args=[key])
    enqueued = time.monotonic() - start
    end, done = _chains_wait(client, market.spot_keys, ts, workers, CYCLE_TIMEOUT_S)
    cpu = meter.stop()
    after = _stages_read(client)
    rows, solved = _minute_rows(ts.replace(second=0, microsecond=0))
    stages = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    return {
        "wall": end - start,
        "enqueue": enqueued,
        "done": done,
        "rows": rows,
        "solved": solved,
        "stages": stages,
        "cpu": cpu,
    }


def _warm(client, market, workers: _Workers, owners: dict[int, str]) -> None:
    """Two chains on each worker's own shards, at the loaded instant (imports, connections)."""
    from django.conf import settings

    from greeks.tasks import chain_compute
    from signalsvc.farm.routing import shard_for

    per_worker: dict[str, list[str]] = {}
    for key in market.spot_keys:
        owner = owners.get(shard_for(key, settings.SHARD_COUNT))
        if len(per_worker.setdefault(owner, [])) < 2:
            per_worker[owner].append(key)
    keys = [k for ks in per_worker.values() for k in ks]
    for key in keys:
        chain_compute.apply_async(args=[key])
    _, done = _chains_wait(client, keys, market.now, workers, 120.0)
    if done != len(keys):
        raise RuntimeError(
            f"warm-up: {done} of {len(keys)} chains done; worker errors: {workers.errors()[-5:]}"
        )


def _profile_in_process(client, market) -> dict[str, float]:
    """Stage seconds of ``PROFILE_CHAINS`` chains computed here (the workers stopped), per chain."""
    from greeks.services import chain_compute

    chain_compute(underlying_key=market.spot_keys[0], client=client)  # warm
    totals: dict[str, float] = {}
    for key in market.spot_keys[1 : PROFILE_CHAINS + 1]:
        result = chain_compute(underlying_key=key, client=client)
        for stage, seconds in result.timings.items():
            totals[stage] = totals.get(stage, 0.0) + seconds
    return {stage: seconds / PROFILE_CHAINS for stage, seconds in totals.items()}


def _ticks_read_s(client, market) -> float:
    """Median seconds of one chain's quote read as the price stage does it (``latest_ticks_get``
    of its 2,000 options and 3 futures), over 10 chains, in this process."""
    from signalsvc.marketdata.latest import latest_ticks_get

    per = market.options // len(market.spot_keys)
    samples = []
    for i in range(10):
        keys = market.keys[i * per : (i + 1) * per] + market.future_keys[i * 3 : (i + 1) * 3]
        start = time.perf_counter()
        latest_ticks_get(client, keys)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _latest_mb(client, market) -> tuple[float, float]:
    """Redis memory of the latest values of the 500 chains (Greeks hashes, moneyness hashes), MB,
    from 10 of them."""
    from greeks.services import chain_latest_key
    from moneyness.services import chain_key

    sample = market.spot_keys[:10]
    scale = len(market.spot_keys) / len(sample) / 1e6
    greeks = sum(client.memory_usage(chain_latest_key(k)) or 0 for k in sample) * scale
    mny = sum(client.memory_usage(chain_key(k)) or 0 for k in sample) * scale
    return greeks, mny


def _cpu_note(cycles: list[dict]) -> str:
    """Mean cores busy over the cycles, by whom."""
    mean = {n: statistics.fmean(c["cpu"][n] for c in cycles) for n in cycles[0]["cpu"]}
    return (
        f"{mean['machine']:.2f} of {os.cpu_count()} cores busy (mean of the cycles): workers {mean['workers']:.2f}, "
        f"PostgreSQL {mean['postgres']:.2f} (all databases), Redis server {mean['redis']:.2f} (shared), "
        f"this bench {mean['bench']:.2f}, everything else (other users' processes) {mean['other']:.2f}"
    )


def _rows(
    load_s: float,
    market,
    cycles: list[dict],
    load: str,
    stages: dict[str, float],
    source: str,
    extra: dict[str, float],
) -> list[dict]:
    n = market.options
    wall = statistics.median(c["wall"] for c in cycles)
    complete = all(c["done"] == len(market.spot_keys) and c["rows"] == n for c in cycles)
    runs = ", ".join(f"{c['wall']:.1f}" for c in cycles)
    checks = "; ".join(
        f"run {i + 1}: {c['done']}/{len(market.spot_keys)} chains, {c['rows']:,} rows ({c['solved']:,} IVs)"
        for i, c in enumerate(cycles)
    )
    enqueue = statistics.median(c["enqueue"] for c in cycles)
    nan = float("nan")
    quotes = n + len(market.spot_keys) + len(market.future_keys)
    rows = [
        Result(_LOAD, "latest_ticks_store, batches of 20k", quotes, load_s, "setup, not part of the cycle"),
        Result(
            _CYCLE,
            "enqueue -> all latest values written",
            n,
            wall,
            f"median of {len(cycles)} cycle(s) [{runs} s]; {n / wall * 60:,.0f} options/min; "
            f"target < {TARGET_S:.0f} s: {verdict(complete and wall < TARGET_S)}; {checks}; "
            f"enqueue of the 500 tasks {enqueue * 1e3:.0f} ms; latest values in Redis after a cycle: "
            f"Greeks hashes {extra['greeks_mb']:,.0f} MB, moneyness hashes {extra['mny_mb']:,.0f} MB; "
            f"{load} before the bench",
        ),
        Result(_CYCLE, "CPU during the cycles", 0, nan, _cpu_note(cycles), rate=nan),
    ]
    task_total = sum(stages.get(s, 0.0) for s in STAGES)
    for stage in STAGES:
        seconds = stages.get(stage, 0.0)
        share = seconds / task_total * 100 if task_total else nan
        rows.append(Result(_STAGE, stage, n, seconds, f"{share:.1f} % of the task time ({source})"))
        if stage == "price":
            read = extra["ticks_read_s"] * len(market.spot_keys)
            rows.append(
                Result(
                    _STAGE,
                    "  of price: reading the quotes",
                    n,
                    read,
                    f"latest_ticks_get of a chain's 2,003 quotes, {extra['ticks_read_s'] * 1e3:.1f} ms a chain "
                    "(median of 10, in-process after the cycles) x 500",
                )
            )
    worker_seconds = WORKERS * wall
    rows.append(
        Result(
            _STAGE,
            "outside the stages (2 x wall - task)",
            n,
            max(worker_seconds - task_total, 0.0),
            f"{(worker_seconds - task_total) / worker_seconds * 100:.1f} % of {worker_seconds:.1f} worker-seconds "
            "(Celery fetch and ack, task bookkeeping, a worker idle at the end)",
        )
    )
    return [r.__dict__ for r in rows]


def _driver(work: Path) -> None:
    started = time.monotonic()
    load = load_note()  # before this bench adds its own
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    _configure()
    from benchmarks import farm_load
    from greeks.services import redis_client

    client = redis_client()
    market = farm_load.market_build(dt.datetime.now(dt.UTC).replace(microsecond=0))
    if not farm_load.instruments_ready(market):
        _log(f"registering {market.options:,} options, {len(market.future_keys):,} futures, 500 spots (COPY)")
        farm_load.instruments_load(market)
    workers = _Workers(work, WORKERS)
    try:
        _broker_keys_delete(client)
        farm_load.keys_delete(client)
        _tables_truncate()
        _log("loading the latest quotes into Redis")
        load_s = farm_load.ticks_store(client, market)
        _log(f"loaded in {load_s:.1f} s; starting {WORKERS} workers")
        try:
            workers.start()
            owners = _ownership_wait(client, workers)
            _log("64 shards owned; warming up")
            _warm(client, market, workers, owners)
            meter = _CpuMeter(client, workers)
            cycles: list[dict] = []
            minute = market.now.replace(second=0)
            while len(cycles) < RUNS and (
                not cycles or time.monotonic() - started + cycles[-1]["wall"] + 30 < BUDGET_S
            ):
                ts = minute + dt.timedelta(minutes=len(cycles) + 1)
                cycle = _cycle(client, market, workers, ts, meter)
                _log(
                    f"cycle {len(cycles) + 1}: {cycle['wall']:.1f} s, {cycle['done']} chains, {cycle['rows']:,} rows"
                )
                cycles.append(cycle)
                if cycle["done"] < len(market.spot_keys):
                    break
            errors = workers.errors()
        finally:
            workers.stop()
        if errors:
            _log(f"{len(errors)} worker error line(s), last: {errors[-1]}")
        stage_sums: dict[str, float] = {}
        for cycle in cycles:
            for stage, seconds in cycle["stages"].items():
                stage_sums[stage] = stage_sums.get(stage, 0.0) + seconds
        if stage_sums.get("count"):
            chains = stage_sums["count"]
            stages = {s: stage_sums.get(s, 0.0) / chains * len(market.spot_keys) for s in STAGES}
            source = f"farm:chain:stages over {chains:.0f} chains, per 500"
        else:
            per_chain = _profile_in_process(client, market)
            stages = {s: per_chain.get(s, 0.0) * len(market.spot_keys) for s in STAGES}
            source = f"no farm:chain:stages: {PROFILE_CHAINS} chains in-process x 25"
        greeks_mb, mny_mb = _latest_mb(client, market)
        extra = {"ticks_read_s": _ticks_read_s(client, market), "greeks_mb": greeks_mb, "mny_mb": mny_mb}
        rows = _rows(load_s, market, cycles, load, stages, source, extra)
        (work / "results.json").write_text(json.dumps(rows))
    finally:
        # The registry stays (reloaded only when the expiries change); rows and keys go.
        _tables_truncate()
        _broker_keys_delete(client)
        farm_load.keys_delete(client)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--driver":
        _driver(Path(sys.argv[2]))
    else:
        sys.stderr.write("usage: python -m benchmarks.bench_farm --driver DIR (make bench runs run())\n")
        raise SystemExit(2)
