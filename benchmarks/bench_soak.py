"""Soak (issue 12, item 3): the Procfile topology under a steady load for ten minutes, the memory of
every process sampled; no growth trend, and the figures kept.

Setup: ``bench_serving``'s, reused as is (``_start``/``_prepare``/``_stop``, its history, API key
and endpoints): the whole ``Procfile`` by honcho on the bench database, free ports, the demo market
running (simulator, ingest, worker, batch, beat, flower). ``bench_serving._start`` also starts its daphne
baseline; here it stays idle and is sampled like the rest. Redis is the soak's own: a
``redis-server`` on a free loopback port, nothing persisted (``--save "" --appendonly no``), started
before the topology and stopped after it, with every Redis setting of the topology pointed at it
(``REDIS_URL``, and ``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``, ``CHANNEL_LAYER_REDIS_URL``
should the environment set them). The machine's Redis on 6379 is shared with other runs, so its
memory said nothing about the service's; it is not touched.

Load, from a second process (``python -m benchmarks.bench_soak --load``, this interpreter), for
``BENCH_SOAK_WARMUP_SECONDS`` (default 300, the warm-up) then ``BENCH_SOAK_SECONDS`` (default 600,
the soak proper), without a pause between them:

* REST at a fixed rate, ``BENCH_SOAK_RATE`` requests/s (default 40), through nginx's public port:
  4 threads, one keep-alive connection each, open loop (request k of a thread is due at
  ``start + k / (rate / 4)``; its latency counts from when it was due, so a server that falls behind
  shows it). Debian's wrk has no rate limit (``-R`` is wrk2's), and wrk at any connection count
  sends as fast as it can, which is a saturation test, not a soak. The paths rotate over realtime
  Greeks (the demo's ATM NIFTY call), realtime moneyness ``NIFTY/greeks/ATM``, historical Greeks of
  the bench option over a day at 1m (375 points) and the 30-day ATM IV history at 5m. The two
  historical answers are cached for ``BENCH_SOAK_HISTORY_TTL_SECONDS`` (default 60; the topology's
  ``HISTORY_CACHE_TTL_SECONDS``, 600 in production), so that rebuilding them, the heaviest work a
  REST worker does, recurs about 20 times in the judged window, in every worker.
* 4 WebSocket clients (``websockets``) through nginx: 2 on ``greeks`` of that call, one on
  ``moneyness`` NIFTY ATM, one on ``atm_iv`` NIFTY; each counts its ``data`` messages (and
  reconnects if closed, counted).

Sampled every 10 s: the RSS, anonymous RSS (``RssAnon``) and USS (where readable) of every
process, summed by role: ``web``
(the REST server: granian master + workers), ``ws`` (uvicorn + its workers), ``worker`` (the farm),
``batch`` (the batch lane's worker), ``beat``, ``ingest``, ``simulator``, ``flower``, ``nginx``, ``honcho`` (honcho and its shells), ``pg`` (the bench
database's backends whose client is one of the topology's processes: other runs may share the
database), ``redis`` (the soak's own server; also its ``used_memory`` from INFO, its key
count, and the size and length of the market-data stream), ``daphne`` (idle). Per minute:
requests, errors (non-200 or a socket error), p50/p99. The Redis keys by prefix (``MEMORY USAGE``)
are read when the load starts and when it ends; the prefixes that grew most are in the
``used_memory`` row.

Verdict per role ("no growth trend"): the least-squares slope of the role's anonymous RSS (the
heap: not mapped files nor shared memory, which PostgreSQL backends' RSS gains as they touch shared
buffers) over the whole soak proper, every sample after the warm-up. The warm-up is sampled and
kept but not judged: in it the caches and connection pools fill, Flower's task cap fills, and a
Python process's RSS climbs towards the arenas it already holds as its allocator touches their
pages for the first time. "growth" when the slope is over ``SLOPE_LIMIT_MB_H`` MB/hour *and* the
fitted rise over the soak is more than max(1 MB, 1 % of the anonymous RSS of one of the role's
processes); otherwise "flat". A role whose process set changed (a restart, a recycled worker, a
new database connection) says so. Redis is judged on ``used_memory`` as well as RSS, and
separately without the market-data stream: the simulator trims that stream at ``STREAM_MAXLEN``
(1,000,000 entries, ~115 MB, about half an hour of the demo's ticks), so through a soak of minutes
it only fills ("filling to its cap"); Redis's RSS and ``used_memory`` rows then count as that fill
when Redis without the stream is flat, which the overall row says. Flower runs with
``--max_tasks`` = ``BENCH_SOAK_FLOWER_MAX_TASKS`` (default 500, full within the warm-up at the
demo's ~2 tasks/s; the Procfile's 10,000 would take ~90 min), so that the soak shows whether its
cap holds; its row has the tasks it saw. Each path is requested once before the load and timed
(the soak's Redis starts empty: cold caches), so the steady figures do not include it; then 8
times from each of 16 connections at once, so that nginx spreads upstream connections over every
REST worker and each has served every path before the warm-up starts. The samples
go to ``.run/soak/<UTC timestamp>.csv``, one row per process to ``-procs.csv`` (whether each
worker levels off, not only their sum) and the per-minute load to ``-load.csv``.

``BENCH_SOAK_TRACE=DIR`` (a diagnosis, not a soak) puts ``benchmarks/soak_trace`` on the
topology's PYTHONPATH: every REST (granian or gunicorn) worker logs glibc's ``mallinfo2`` and one also writes
tracemalloc snapshots and gc type counts to DIR (see its sitecustomize.py).

Skipped like ``bench_serving`` (wrk, nginx or ``make run``'s virtualenv missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import datetime as dt
import http.client
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

from benchmarks import bench_serving as serving
from benchmarks.common import Result, load_note

SOAK_SECONDS = int(os.environ.get("BENCH_SOAK_SECONDS", "600"))
# The same load runs this long before the judged soak: the processes' caches, connection pools and
# allocators settle, and Flower's task cap fills (see FLOWER_MAX_TASKS). Sampled and kept, not judged.
WARMUP_SECONDS = int(os.environ.get("BENCH_SOAK_WARMUP_SECONDS", "300"))
RATE = float(os.environ.get("BENCH_SOAK_RATE", "40"))
THREADS = 4
SAMPLE_EVERY_S = 10.0
SLOPE_LIMIT_MB_H = 20.0
# Flower keeps the events of its last --max_tasks tasks (the Procfile's default: 10,000). The demo
# farm runs ~2 tasks/s, so 10,000 take ~90 min to fill: a soak of minutes would only see the fill.
# With 500 (full after ~4 min, in the warm-up) the soak shows whether the cap holds.
FLOWER_MAX_TASKS = int(os.environ.get("BENCH_SOAK_FLOWER_MAX_TASKS", "500"))
# The cached historical answers (HISTORY_CACHE_TTL_SECONDS, 600 in production) expire this often, and
# the next request rebuilds them in one worker. At 600 s a 10-minute soak sees each rebuilt about once,
# by one of four workers: a worker's first rebuilds raise its heap to its high-water mark (a step, not a
# slope), and the soak ended before most had taken theirs. At 60 s the judged window holds ~20 rebuilds
# spread over every worker, which is also closer to production, where many distinct history requests
# miss the cache: memory that grew per rebuild would show ten times as fast (docs/reliability.md "Soak").
HISTORY_TTL_SECONDS = int(os.environ.get("BENCH_SOAK_HISTORY_TTL_SECONDS", "60"))
_BENCH = "soak"
_PATHS = (
    "realtime/greeks/{option}",
    "realtime/moneyness/NIFTY/greeks/ATM",
    "historical/greeks/{option}, 1d 1m",
    "historical atm-iv history, 30d 5m",
)
_WS_PATH = "/api/v2/signals/subscriptions/websocket"
MB = 1024 * 1024
# Settings (environment) that name a Redis: all pointed at the soak's own server.
_REDIS_ENV = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CHANNEL_LAYER_REDIS_URL")


# -- the load process -------------------------------------------------------------------------------


def _http_thread(host: str, port: int, paths: list[str], headers: dict, offset: int, stop_at: float,
                 t0: float, out: list) -> None:  # fmt: skip
    interval = THREADS / RATE
    conn = http.client.HTTPConnection(host, port, timeout=30)
    k = 0
    while True:
        due = t0 + (k + offset / THREADS) * interval
        if due >= stop_at:
            break
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        path = paths[(k * THREADS + offset) % len(paths)]
        ok = False
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
        out.append((due - t0, time.monotonic() - due, ok))
        k += 1
    conn.close()


async def _ws_client(url: str, raw_key: str, subscribe: dict, stop_at: float, counts: dict) -> None:
    import websockets

    name = (
        f"{subscribe['channel']}:{subscribe.get('instrument_key') or subscribe['params'].get('underlying')}"
    )
    stats = counts.setdefault(
        name + f"#{len(counts)}", {"data": 0, "errors": 0, "reconnects": 0, "per_min": {}}
    )
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        try:
            async with websockets.connect(url, additional_headers={"X-API-Key": raw_key}) as ws:
                await ws.send(json.dumps(subscribe))
                while loop.time() < stop_at:
                    try:
                        raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, stop_at - loop.time()))
                    except TimeoutError:
                        break
                    kind = json.loads(raw).get("type")
                    if kind == "data":
                        stats["data"] += 1
                        minute = str(int((time.monotonic() - counts["_t0"]) // 60))
                        stats["per_min"][minute] = stats["per_min"].get(minute, 0) + 1
                    elif kind == "error":
                        stats["errors"] += 1
                return
        except (OSError, websockets.exceptions.WebSocketException):
            stats["reconnects"] += 1
            await asyncio.sleep(1)


def _load_main(spec: dict) -> dict:
    """Run the load described by ``spec``; the per-minute figures and the WebSocket counts."""
    base = urllib.parse.urlsplit(spec["base"])
    headers = {"X-API-Key": spec["key"]}
    t0 = time.monotonic()
    stop_at = t0 + spec["seconds"]
    results: list[list] = [[] for _ in range(THREADS)]
    threads = [
        threading.Thread(
            target=_http_thread,
            args=(base.hostname, base.port, spec["paths"], headers, i, stop_at, t0, results[i]),
            daemon=True,
        )
        for i in range(THREADS)
    ]
    for t in threads:
        t.start()
    counts: dict = {"_t0": t0}
    ws_url = f"ws://{base.hostname}:{base.port}{_WS_PATH}"

    async def clients() -> None:
        loop_stop = asyncio.get_running_loop().time() + spec["seconds"]
        await asyncio.gather(*(_ws_client(ws_url, spec["key"], s, loop_stop, counts) for s in spec["ws"]))

    asyncio.run(clients())
    for t in threads:
        t.join()
    counts.pop("_t0")
    minutes: dict[int, dict] = {}
    for due, latency, ok in (r for rs in results for r in rs):
        m = minutes.setdefault(int(due // 60), {"requests": 0, "errors": 0, "lat": []})
        m["requests"] += 1
        m["errors"] += not ok
        m["lat"].append(latency)
    return {"minutes": {str(k): v for k, v in sorted(minutes.items())}, "ws": counts}


# -- the soak's own Redis ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Redis:
    process: subprocess.Popen
    url: str
    log: Path

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)


def _redis_start(work: Path) -> _Redis:
    """A private ``redis-server`` on a free loopback port, nothing persisted: the topology's broker,
    cache, channel layer and latest values, and nobody else's (the machine's Redis on 6379 is
    shared with other runs, so its memory says nothing about ours; it is not touched)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("soak bench: redis-server is not installed")
    port = serving.loadgen.free_port()
    log = work / "redis.log"
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(work), "--logfile", str(log), "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    server = _Redis(process, f"redis://127.0.0.1:{port}/0", log)

    def up() -> bool:
        import redis

        try:
            return server.client().ping()
        except redis.ConnectionError:
            return False

    try:
        serving.loadgen.wait_until(
            "soak redis",
            up,
            timeout=20,
            alive=serving.loadgen.exited(process, "the soak's redis-server", str(log)),
            interval=0.2,
        )
    except BaseException:
        _redis_stop(server)
        raise
    return server


@contextlib.contextmanager
def _topology_on(server: _Redis):
    """Every Redis setting of the processes started inside points at ``server``
    (``loadgen.server_env`` takes ``REDIS_URL`` from the settings, the rest from the environment)."""
    from django.test import override_settings

    with _env(**dict.fromkeys(_REDIS_ENV, server.url)), override_settings(REDIS_URL=server.url):
        yield


@contextlib.contextmanager
def _env(**values: str):
    """``values`` in this process's environment (which ``loadgen.server_env`` copies) while inside."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _traced():
    """With ``BENCH_SOAK_TRACE=DIR``: the first REST worker of the topology runs tracemalloc and
    writes a snapshot and gc type counts to DIR every ``BENCH_SOAK_TRACE_EVERY`` seconds
    (``benchmarks/soak_trace/sitecustomize.py``). A diagnosis, not a soak: tracing costs memory."""
    folder = os.environ.get("BENCH_SOAK_TRACE")
    if not folder:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(
        p for p in (str(Path(__file__).parent / "soak_trace"), os.environ.get("PYTHONPATH")) if p
    )
    with _env(PYTHONPATH=path):
        yield


def _redis_info(server: _Redis) -> dict:
    """``used_memory`` (bytes: what Redis holds, before the allocator) and the number of keys."""
    import redis
    from django.conf import settings

    try:
        client = server.client()
        pipe = client.pipeline(transaction=False)
        pipe.info("memory")
        pipe.dbsize()
        pipe.memory_usage(settings.MARKET_DATA_STREAM, samples=0)
        pipe.xlen(settings.MARKET_DATA_STREAM)
        info, keys, stream, entries = pipe.execute()
        return {"used": int(info["used_memory"]), "keys": keys, "stream": stream or 0, "entries": entries}
    except redis.RedisError:
        return {"used": 0, "keys": 0, "stream": 0, "entries": 0}


def _redis_breakdown(server: _Redis) -> dict[str, list[int]]:
    """{key prefix (up to the second ':' or '@'): [keys, bytes by MEMORY USAGE]} of the whole server."""

    client = server.client()
    keys = list(client.scan_iter(count=1000))
    out: dict[str, list[int]] = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        pipe = client.pipeline(transaction=False)
        for k in chunk:
            pipe.memory_usage(k, samples=0)
        for k, size in zip(chunk, pipe.execute(), strict=True):
            name = k.decode(errors="replace")
            prefix = ":".join(re.split(r"[:@]", name)[:2])
            entry = out.setdefault(prefix, [0, 0])
            entry[0] += 1
            entry[1] += size or 0
    return out


def _redis_stop(server: _Redis) -> None:
    serving.loadgen.process_stop(server.process, group=True)


def _breakdown_note(before: dict, after: dict, top: int = 6) -> str:
    """The key prefixes that grew most between two breakdowns, and the largest at the end."""
    grown = sorted(after, key=lambda p: after[p][1] - before.get(p, [0, 0])[1], reverse=True)[:top]
    return "key prefixes, bytes start -> end (keys): " + ", ".join(
        f"{p} {before.get(p, [0, 0])[1] / 1024:.0f} -> {after[p][1] / 1024:.0f} kB ({after[p][0]})"
        for p in grown
    )


# -- memory sampling --------------------------------------------------------------------------------

# First match in a process's own command line, then its ancestors' (up to honcho), names the role.
_ROLES = (
    ("nginx", ("nginx",)),
    ("web", ("granian", "gunicorn", "start-web")),
    ("ws", ("uvicorn", "start-ws")),
    ("flower", (" flower", "signalsvc.ops.flower")),
    ("beat", (" beat ",)),
    ("ingest", ("ingest_market_data",)),
    ("simulator", ("simulate_market",)),
    ("batch", ("-Q ingest,timeframes", "start-worker.sh batch")),  # before worker: both are celery workers
    ("worker", (" worker ", "start-worker")),
)
ROLE_ORDER = ("web", "ws", "worker", "batch", "beat", "ingest", "simulator", "flower", "nginx", "honcho", "pg",
              "redis", "daphne")  # fmt: skip


def _sample(honcho: int, daphne: int, redis_server: _Redis) -> dict[str, dict]:
    """{role: {"rss", "anon": bytes, "uss": bytes or None, "pids": set, "per_pid": {pid: anon bytes}}}
    of every process of the topology; the ``redis`` role also has ``used`` (``used_memory``) and
    ``keys``."""
    import psutil

    from benchmarks.bench_timeframes import BENCH_DATABASE

    roles: dict[str, dict] = {}

    def add(role: str, proc) -> None:
        try:
            rss = proc.memory_info().rss
            anon = _anon(proc.pid)
        except (psutil.Error, OSError):
            return
        try:
            uss = proc.memory_full_info().uss
        except psutil.Error:  # another user's process (postgres, redis): RSS only
            uss = None
        r = roles.setdefault(role, {"rss": 0, "anon": 0, "uss": 0, "pids": set(), "per_pid": {}})
        r["rss"] += rss
        r["anon"] += anon
        r["uss"] = None if uss is None or r["uss"] is None else r["uss"] + uss
        r["pids"].add(proc.pid)
        r["per_pid"][proc.pid] = anon

    def cmd(proc) -> str:
        try:
            return " ".join(proc.cmdline()) + " "
        except psutil.Error:
            return ""

    try:
        top = psutil.Process(honcho)
        tree = [top, *top.children(recursive=True)]
    except psutil.Error:
        tree = []
    commands = {p.pid: cmd(p) for p in tree}
    parents = {}
    for p in tree:
        with contextlib.suppress(psutil.Error):
            parents[p.pid] = p.ppid()
    for p in tree:
        role, pid = "honcho", p.pid
        while pid in commands and role == "honcho":
            for name, needles in _ROLES:
                if any(n in commands[pid] for n in needles):
                    role = name
                    break
            pid = parents.get(pid, 0)
        add(role, p)
    # The bench database's backends serving this topology: other runs (another bench, a developer)
    # may use the same database, so a backend counts only when its client port is one of ours.
    ours = set()
    for p in tree:
        with contextlib.suppress(psutil.Error):
            ours.update(c.laddr.port for c in p.net_connections("tcp") if c.raddr and c.raddr.port == 5432)
    for p in psutil.process_iter(["cmdline", "name"]):
        line = " ".join(p.info["cmdline"] or []) + " "
        client = re.search(r"\(\s*(\d+)\)", line)
        if (
            line.startswith("postgres:")
            and f" {BENCH_DATABASE} " in line
            and client
            and int(client.group(1)) in ours
        ):
            add("pg", p)
    with contextlib.suppress(psutil.Error):
        add("redis", psutil.Process(redis_server.process.pid))
    if "redis" in roles:
        roles["redis"].update(_redis_info(redis_server))
    try:
        d = psutil.Process(daphne)
        for p in (d, *d.children(recursive=True)):
            add("daphne", p)
    except psutil.Error:
        pass
    return roles


def _flower_tasks(honcho: int) -> tuple[int, int] | None:
    """(tasks Flower has seen: its ``flower_events_total`` of type ``task-received``, its
    ``--max_tasks``), or None. Flower keeps the events of that many tasks, then drops the oldest."""
    import psutil

    try:
        lines = [" ".join(p.cmdline()) for p in psutil.Process(honcho).children(recursive=True)]
    except psutil.Error:
        return None
    flower = dict(_ROLES)["flower"]
    found = [
        (re.search(r"--port=(\d+)", line), re.search(r"--max_tasks=(\d+)", line))
        for line in lines
        if any(needle in line for needle in flower)
    ]
    found = [(port.group(1), cap.group(1)) for port, cap in found if port and cap]
    if not found:
        return None
    port, cap = found[0]
    try:
        status, body = serving.loadgen.http(f"http://127.0.0.1:{port}/metrics", timeout=10)
    except OSError:
        return None
    if status != 200:
        return None
    seen = sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.decode().splitlines()
        if line.startswith("flower_events_total{") and 'type="task-received"' in line
    )
    return int(seen), int(cap)


def _flower_note(before: tuple[int, int] | None, after: tuple[int, int] | None, seconds: float) -> str:
    if before is None or after is None:
        return "tasks seen by Flower: not read"
    rate = (after[0] - before[0]) / seconds
    return f"Flower saw {before[0]:,} -> {after[0]:,} tasks ({rate:.1f}/s) and keeps {after[1]:,}" + (
        f": full {after[1] / rate / 60:.0f} min after the start" if rate > 0 and after[0] < after[1] else ""
    )


def _anon(pid: int) -> int:
    """Anonymous resident memory (bytes): the heap, not mapped files nor shared memory (PostgreSQL's
    shared buffers count in a backend's RSS as it touches them). World-readable, unlike USS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def _trend(series: list[tuple[float, float]]) -> tuple[float, float, list[tuple[float, float]]]:
    """(slope MB/hour, fitted rise MB, the points judged) over the soak proper: the samples from
    the end of the warm-up on (the second half, should the run be too short for that)."""
    judged = [p for p in series if p[0] >= WARMUP_SECONDS]
    if len(judged) < 3:
        judged = series[len(series) // 2 :]
    slope = _slope(judged)
    return slope * 3600, slope * (judged[-1][0] - judged[0][0]), judged


def _memory_rows(
    samples: list[tuple[float, dict]], load: str, redis_note: str = "", notes: dict[str, str] | None = None
) -> list[Result]:
    rows = []
    for role in ROLE_ORDER:
        series = [(t, s[role]["anon"] / MB) for t, s in samples if role in s]
        rss = [s[role]["rss"] / MB for _, s in samples if role in s]
        if len(series) < 4:
            continue
        slope_h, rise, judged = _trend(series)
        start = statistics.median(y for _, y in series[:3])
        soak_start = statistics.median(y for _, y in judged[:3])
        end = statistics.median(y for _, y in series[-3:])
        med = statistics.median(y for _, y in judged)
        pid_sets = [frozenset(s[role]["pids"]) for _, s in samples if role in s]
        procs = statistics.median(len(p) for p in pid_sets)
        # The floor is per process: a role's sum over several processes would hide one that grows.
        growth = slope_h > SLOPE_LIMIT_MB_H and rise > max(1.0, 0.01 * med / max(1, procs))
        note = [
            f"anon RSS {start:.1f} MB at the load's start, {soak_start:.1f} after the warm-up, {end:.1f} at the "
            f"end; soak slope {slope_h:+.1f} MB/h (fitted rise {rise:+.2f} MB over "
            f"{judged[-1][0] - judged[0][0]:.0f} s)",
            f"RSS {statistics.median(rss[:3]):.1f} -> {statistics.median(rss[-3:]):.1f} MB",
            f"{procs:.0f} processes",
        ]
        if len(set(pid_sets)) > 1:
            note.append(f"process set changed {sum(a != b for a, b in itertools.pairwise(pid_sets))} times")
        if role == "redis":
            note.append("the soak's own server")
        if notes and role in notes:
            note.append(notes[role])
        rows.append(
            Result(
                f"{_BENCH}: memory {role}",
                "growth" if growth else "flat",
                int(procs),
                float("nan"),
                "; ".join(note) + (f" {load}" if load else ""),
            )
        )
        load = ""
    info = [(t, s["redis"]) for t, s in samples if s.get("redis", {}).get("used")]
    if len(info) >= 4:
        rows += _redis_rows(info, redis_note)
    return rows


def _redis_rows(info: list[tuple[float, dict]], note: str) -> list[Result]:
    """What Redis holds (``used_memory``: its own count, before the allocator), with and without the
    market-data stream, and the stream itself: the simulator trims it to ``STREAM_MAXLEN`` entries
    (about an hour of the demo's ticks), so through a soak of minutes it fills towards that cap."""
    from signalsvc.marketdata.management.commands.simulate_market import STREAM_MAXLEN

    def series(value) -> list[tuple[float, float]]:
        return [(t, value(r)) for t, r in info]

    def row(name: str, points: list[tuple[float, float]], extra: str) -> Result:
        slope_h, rise, judged = _trend(points)
        growth = slope_h > SLOPE_LIMIT_MB_H and rise > max(
            1.0, 0.01 * statistics.median(y for _, y in judged)
        )
        return Result(
            f"{_BENCH}: memory {name}",
            "growth" if growth else "flat",
            1,
            float("nan"),
            f"{statistics.median(y for _, y in points[:3]):.1f} MB at the load's start, "
            f"{statistics.median(y for _, y in judged[:3]):.1f} after the warm-up, "
            f"{statistics.median(y for _, y in points[-3:]):.1f} at the end; soak slope {slope_h:+.1f} MB/h "
            f"(fitted rise {rise:+.2f} MB over {judged[-1][0] - judged[0][0]:.0f} s); {extra}",
        )

    first, last = info[0][1], info[-1][1]
    per_entry = last["stream"] / max(1, last["entries"])
    rate = (last["entries"] - first["entries"]) / max(1.0, info[-1][0] - info[0][0])
    stream = row(
        "redis tick stream",
        series(lambda r: r["stream"] / MB),
        f"{first['entries']:,} -> {last['entries']:,} entries, {per_entry:.0f} B each, {rate:.0f}/s; "
        f"trimmed at {STREAM_MAXLEN:,} entries (about {STREAM_MAXLEN * per_entry / MB:.0f} MB"
        + (f", reached {STREAM_MAXLEN / rate / 60:.0f} min after the stream began" if rate > 0 else "")
        + ")",
    )
    if stream.case == "growth":
        stream = dataclasses.replace(stream, case="filling to its cap")
    return [
        row("redis used_memory", series(lambda r: r["used"] / MB), f"keys {first['keys']} -> {last['keys']}"),
        row(
            "redis used_memory without the tick stream",
            series(lambda r: (r["used"] - r["stream"]) / MB),
            note,
        ),
        stream,
    ]


def _load_rows(loaded: dict, seconds: float) -> list[Result]:
    """The REST figures of the soak proper (the minutes after the warm-up; the warm-up's requests and
    errors are in the note) and each WebSocket client's updates over the whole run."""
    warmup_minutes = WARMUP_SECONDS // 60
    warm = [m for k, m in loaded["minutes"].items() if int(k) < warmup_minutes]
    minutes = {k: m for k, m in loaded["minutes"].items() if int(k) >= warmup_minutes}
    lat = sorted(x for m in minutes.values() for x in m["lat"])
    requests = sum(m["requests"] for m in minutes.values())
    errors = sum(m["errors"] for m in minutes.values())
    if not lat:
        return [serving._skipped(f"{_BENCH}: REST steady load", f"{RATE:g} req/s", "no requests made")]

    def pct(xs: list[float], q: float) -> float:
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    per_min = []
    for k, m in minutes.items():
        xs = sorted(m["lat"])
        per_min.append(
            f"m{k} {m['requests']} req {m['errors']} err p50 {pct(xs, 0.5) * 1e3:.1f} p99 {pct(xs, 0.99) * 1e3:.1f}"
        )
    rows = [
        Result(
            f"{_BENCH}: REST steady load",
            f"{RATE:g} req/s target, 4 paths",
            requests,
            pct(lat, 0.5),
            f"p99 {pct(lat, 0.99) * 1e3:.1f} ms; errors {errors} of {requests:,}; warm-up before it: "
            f"{sum(m['errors'] for m in warm)} errors of {sum(m['requests'] for m in warm):,}; "
            "per minute (ms): " + "; ".join(per_min),
            rate=requests / (seconds - WARMUP_SECONDS),
        )
    ]
    for name, s in loaded["ws"].items():
        per = [s["per_min"].get(str(k), 0) for k in range(-(-int(seconds) // 60))]
        rows.append(
            Result(
                f"{_BENCH}: WebSocket {name.split('#')[0]}",
                "data messages",
                s["data"],
                float("nan"),
                f"errors {s['errors']}, reconnects {s['reconnects']}; per minute {per}"
                + ("; a minute without updates" if 0 in per else ""),
                rate=s["data"] / seconds,
            )
        )
    return rows


def _keep(samples: list[tuple[float, dict]], loaded: dict, stamp: str) -> Path:
    folder = serving.ROOT / ".run" / "soak"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stamp}.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["t_s", "role", "processes", "rss_mb", "anon_mb", "uss_mb", "pids", "used_memory_mb", "keys"]
        )
        for t, s in samples:
            for role in ROLE_ORDER:
                if role in s:
                    r = s[role]
                    uss = "" if r["uss"] is None else f"{r['uss'] / MB:.2f}"
                    pids = " ".join(map(str, sorted(r["pids"])))
                    used = f"{r['used'] / MB:.2f}" if "used" in r else ""
                    w.writerow([f"{t:.1f}", role, len(r["pids"]), f"{r['rss'] / MB:.2f}", f"{r['anon'] / MB:.2f}",
                                uss, pids, used, r.get("keys", "")])  # fmt: skip
    # One row per process and sample: whether each worker levels off, not only their sum.
    with open(folder / f"{stamp}-procs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "role", "pid", "anon_mb"])
        for t, s in samples:
            for role in ROLE_ORDER:
                for pid, anon in sorted(s.get(role, {}).get("per_pid", {}).items()):
                    w.writerow([f"{t:.1f}", role, pid, f"{anon / MB:.2f}"])
    with open(folder / f"{stamp}-load.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["minute", "requests", "errors", "p50_ms", "p99_ms"])
        for k, m in loaded["minutes"].items():
            xs = sorted(m["lat"])
            w.writerow([k, m["requests"], m["errors"], f"{xs[len(xs) // 2] * 1e3:.2f}",
                        f"{xs[min(len(xs) - 1, int(0.99 * len(xs)))] * 1e3:.2f}"])  # fmt: skip
    return path


def _first_requests(base: str, paths: list[str], headers: dict) -> Result:
    """Each path once before the load, timed: the caches are cold then (the soak's Redis starts
    empty), which the steady load's figures should not include."""
    took = []
    for name, path in zip(_PATHS, paths, strict=True):
        begin = time.perf_counter()
        try:
            status, _ = serving.loadgen.http(f"{base}{path}", headers=headers, timeout=120)
        except OSError as exc:
            status = type(exc).__name__
        took.append(f"{name}: {status} in {(time.perf_counter() - begin) * 1e3:.0f} ms")
    return Result(f"{_BENCH}: first requests (cold)", "one each, before the load", len(paths), float("nan"),
                  "; ".join(took))  # fmt: skip


def _cold_variant(path: str, minutes: int) -> str:
    """``path`` with its ``end_time`` ``minutes`` earlier: another answer, not in the response cache,
    so the worker that takes it computes it (a rebuild, as after an expiry)."""
    parts = urllib.parse.urlsplit(path)
    query = urllib.parse.parse_qs(parts.query)
    end = dt.datetime.fromisoformat(query["end_time"][0]) - dt.timedelta(minutes=minutes)
    query["end_time"] = [end.isoformat()]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, doseq=True)))


def _every_worker_served(base: str, paths: list[str], headers: dict, connections: int = 16,
                         rounds: int = 8, cold_rounds: int = 2) -> str:  # fmt: skip
    """Every path ``rounds`` times from each of ``connections`` concurrent connections, before the
    steady load; in the first ``cold_rounds`` each historical path also once uncached.

    At 40 requests/s nginx needs only a few upstream connections, and a REST worker that holds none
    serves nothing: in the 22:39 run one worker first served the heavy paths in the judged window,
    and its one-off rise to its working set (+6 MB) read as a trend. Sixteen at once make nginx open
    upstream connections across the workers. A cached historical answer costs a worker little; the
    first one it computes raises its memory once, by ~5-8 MB (the database driver's buffer grows to
    the largest result, the allocators to the heaviest request), and then it stays there through
    every later rebuild (2026-12-07, docs/reliability.md "Soak"). The uncached requests give every
    worker that first computation here, not at a random expiry inside the judged window. Returns a
    note."""
    url = urllib.parse.urlsplit(base)
    historical = [path for name, path in zip(_PATHS, paths, strict=True) if name.startswith("historical")]
    statuses: list[int | str] = []
    cold: list[int | str] = []

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)

        def get(path: str, into: list[int | str]) -> None:
            nonlocal conn
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                into.append(response.status)
            except (OSError, http.client.HTTPException) as exc:
                into.append(type(exc).__name__)
                conn.close()
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)

        for round_ in range(rounds):
            for path in paths:
                get(path, statuses)
            if round_ < cold_rounds:  # a distinct end_time per client and round: never cached
                for path in historical:
                    get(_cold_variant(path, 1 + index * cold_rounds + round_), cold)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = sum(status != 200 for status in statuses + cold)
    return (
        f"then {len(statuses):,} over {connections} connections at once and {len(cold)} uncached "
        f"historical ones, {failed} not 200"
    )


# -- the run ----------------------------------------------------------------------------------------


def _soak(raw_key: str, day, sessions, work: Path) -> list[Result]:
    headers = {"X-API-Key": raw_key}
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    redis_server = _redis_start(work)
    try:
        with (
            _topology_on(redis_server),
            _traced(),
            _env(FLOWER_MAX_TASKS=str(FLOWER_MAX_TASKS), HISTORY_CACHE_TTL_SECONDS=str(HISTORY_TTL_SECONDS)),
        ):
            servers = serving._start(work)
    except BaseException:
        _redis_stop(redis_server)
        raise
    samples: list[tuple[float, dict]] = []
    breakdown: list[dict] = []
    try:
        try:
            option = serving._prepare(servers, headers, work, started)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            raise RuntimeError(f"soak bench: {exc}; logs: {servers.honcho_log}") from exc
        batch = serving._batch_keys(json.loads((work / "truth.json").read_text()))
        endpoints = {e.name: e for e in serving._endpoints(option, batch, day, sessions)}
        spec = {
            "base": servers.new,
            "key": raw_key,
            "seconds": WARMUP_SECONDS + SOAK_SECONDS,
            "paths": [endpoints[name].path for name in _PATHS],
            "ws": [
                {"type": "subscribe", "channel": "greeks", "instrument_key": option, "params": {}},
                {"type": "subscribe", "channel": "greeks", "instrument_key": option, "params": {}},
                {
                    "type": "subscribe",
                    "channel": "moneyness",
                    "params": {"underlying": "NIFTY", "moneyness_level": "ATM"},
                },
                {"type": "subscribe", "channel": "atm_iv", "params": {"underlying": "NIFTY"}},
            ],
        }
        first = _first_requests(servers.new, spec["paths"], headers)
        first = dataclasses.replace(
            first, note=f"{first.note}; {_every_worker_served(servers.new, spec['paths'], headers)}"
        )
        load = load_note()
        out_path = work / "load.json"
        with open(out_path, "wb") as out:
            loader = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.bench_soak", "--load", json.dumps(spec)],
                cwd=serving.ROOT, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        t0 = time.monotonic()
        breakdown.append(_redis_breakdown(redis_server))
        flower = [_flower_tasks(servers.honcho.pid)]
        while loader.poll() is None:
            samples.append(
                (time.monotonic() - t0, _sample(servers.honcho.pid, servers.daphne.pid, redis_server))
            )
            dead = servers.alive()
            if dead:
                loader.kill()
                raise RuntimeError(f"soak bench: {dead}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                loader.wait(timeout=SAMPLE_EVERY_S)
        samples.append((time.monotonic() - t0, _sample(servers.honcho.pid, servers.daphne.pid, redis_server)))
        breakdown.append(_redis_breakdown(redis_server))
        flower.append(_flower_tasks(servers.honcho.pid))
        load_end = load_note()
        text = out_path.read_text()
        if loader.returncode != 0:
            raise RuntimeError(f"soak load process exited {loader.returncode}: {text[-2000:]}")
        loaded = json.loads(text.strip().splitlines()[-1])
        time.sleep(1.0)
    finally:
        try:
            stopped = serving._stop(servers)
        finally:
            _redis_stop(redis_server)
    kept = _keep(samples, loaded, stamp)
    rows = [first, *_load_rows(loaded, WARMUP_SECONDS + SOAK_SECONDS)]
    rows += _memory_rows(
        samples,
        f"{load} at the start, {load_end} at the end",
        _breakdown_note(*breakdown),
        {"flower": _flower_note(*flower, samples[-1][0])},
    )
    rows.append(_overall(rows, len(samples), kept))
    rows.append(dataclasses.replace(stopped, benchmark=f"{_BENCH}: processes stopped"))
    return rows


def _overall(rows: list[Result], n: int, kept: Path) -> Result:
    """ "met" when no role grows. Redis's RSS and ``used_memory`` growing count as the tick stream
    filling towards its cap only when Redis without the stream is flat (said in the note)."""
    case = {r.benchmark.removeprefix(f"{_BENCH}: memory "): r.case for r in rows}
    growing = [name for name, c in case.items() if c == "growth"]
    explained = []
    if case.get("redis tick stream") == "filling to its cap" and (
        case.get("redis used_memory without the tick stream") == "flat"
    ):
        explained = [name for name in growing if name in ("redis", "redis used_memory")]
        growing = [name for name in growing if name not in explained]
    return Result(
        f"{_BENCH}: no growth trend",
        "NOT met" if growing else "met",
        n,
        float("nan"),
        f"{SOAK_SECONDS} s judged after a {WARMUP_SECONDS} s warm-up, {n} samples every {SAMPLE_EVERY_S:.0f} s"
        + f", cached history answers rebuilt every {HISTORY_TTL_SECONDS} s"
        + (f"; growing: {', '.join(growing)}" if growing else "")
        + (
            f"; {' and '.join(explained)} grow by the tick stream filling to the simulator's cap alone"
            if explained
            else ""
        )
        + f"; figures kept in {kept.relative_to(serving.ROOT)} (+ -load.csv, -procs.csv)",
    )


def run() -> list[Result]:
    return serving.run_on_topology(_BENCH, _soak, "bench-soak-")


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:2] == ["--load"]:
        sys.stdout.write(json.dumps(_load_main(json.loads(sys.argv[2]))) + "\n")
    else:
        for result in run():
            print(result)
