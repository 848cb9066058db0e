"""Soak (issue 12, item 3): the Procfile topology under a steady load for ten minutes, the memory of
every process sampled; no growth trend, and the figures kept.

Setup: ``bench_serving``'s, reused as is (``_start``/``_prepare``/``_stop``, its history, API key
and endpoints): the whole ``Procfile`` by honcho on the bench database and Redis DB, free ports,
the demo market running (simulator, ingest, worker, beat, flower). ``bench_serving._start`` also
starts its daphne baseline; here it stays idle and is sampled like the rest.

Load, from a second process (``python -m benchmarks.bench_soak --load``, this interpreter), for
``BENCH_SOAK_SECONDS`` (default 600):

* REST at a fixed rate, ``BENCH_SOAK_RATE`` requests/s (default 40), through nginx's public port:
  4 threads, one keep-alive connection each, open loop (request k of a thread is due at
  ``start + k / (rate / 4)``; its latency counts from when it was due, so a server that falls behind
  shows it). Debian's wrk has no rate limit (``-R`` is wrk2's), and wrk at any connection count
  sends as fast as it can, which is a saturation test, not a soak. The paths rotate over realtime
  Greeks (the demo's ATM NIFTY call), realtime moneyness ``NIFTY/greeks/ATM``, historical Greeks of
  the bench option over a day at 1m (375 points) and the 30-day ATM IV history at 5m.
* 4 WebSocket clients (``websockets``) through nginx: 2 on ``greeks`` of that call, one on
  ``moneyness`` NIFTY ATM, one on ``atm_iv`` NIFTY; each counts its ``data`` messages (and
  reconnects if closed, counted).

Sampled every 10 s: the RSS, anonymous RSS (``RssAnon``) and USS (where readable) of every
process, summed by role: ``web``
(gunicorn master + workers), ``ws`` (uvicorn + its workers), ``worker``, ``beat``, ``ingest``,
``simulator``, ``flower``, ``nginx``, ``honcho`` (honcho and its shells), ``pg`` (the bench
database's backends), ``redis`` (the whole server: other users of the machine's Redis count too),
``daphne`` (idle). Per minute: requests, errors (non-200 or a socket error), p50/p99.

Verdict per role ("no growth trend"): the least-squares slope of the role's anonymous RSS (the
heap: not mapped files nor shared memory, which PostgreSQL backends' RSS gains as they touch shared
buffers) over the second half of the soak (the first half is warm-up: caches, connection pools,
pymalloc arenas). "growth" when the slope is over ``SLOPE_LIMIT_MB_H`` MB/hour *and* the fitted
rise over that half is more than max(1 MB, 1 % of the anonymous RSS of one of the role's
processes); otherwise "flat". A role whose process set changed (a restart, a recycled worker, a
new database connection) says so. The samples go to ``.run/soak/<UTC timestamp>.csv`` and the
per-minute load to ``.run/soak/<UTC timestamp>-load.csv``.

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
RATE = float(os.environ.get("BENCH_SOAK_RATE", "40"))
THREADS = 4
SAMPLE_EVERY_S = 10.0
SLOPE_LIMIT_MB_H = 20.0
_BENCH = "soak"
_PATHS = (
    "realtime/greeks/{option}",
    "realtime/moneyness/NIFTY/greeks/ATM",
    "historical/greeks/{option}, 1d 1m",
    "historical atm-iv history, 30d 5m",
)
_WS_PATH = "/api/v2/signals/subscriptions/websocket"
MB = 1024 * 1024


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


# -- memory sampling --------------------------------------------------------------------------------

# First match in a process's own command line, then its ancestors' (up to honcho), names the role.
_ROLES = (
    ("nginx", ("nginx",)),
    ("web", ("gunicorn", "start-web")),
    ("ws", ("uvicorn", "start-ws")),
    ("flower", (" flower",)),
    ("beat", (" beat ",)),
    ("ingest", ("ingest_market_data",)),
    ("simulator", ("simulate_market",)),
    ("worker", (" worker ", "start-worker")),
)
ROLE_ORDER = ("web", "ws", "worker", "beat", "ingest", "simulator", "flower", "nginx", "honcho", "pg",
              "redis", "daphne")  # fmt: skip


def _sample(honcho: int, daphne: int) -> dict[str, dict]:
    """{role: {"rss": bytes, "uss": bytes or None, "pids": set}} of every process of the topology."""
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
        r = roles.setdefault(role, {"rss": 0, "anon": 0, "uss": 0, "pids": set()})
        r["rss"] += rss
        r["anon"] += anon
        r["uss"] = None if uss is None or r["uss"] is None else r["uss"] + uss
        r["pids"].add(proc.pid)

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
    for p in psutil.process_iter(["cmdline", "name"]):
        line = " ".join(p.info["cmdline"] or []) + " "
        if line.startswith("postgres:") and f" {BENCH_DATABASE} " in line:
            add("pg", p)
        elif (p.info["name"] or "").startswith("redis-server"):
            add("redis", p)
    try:
        d = psutil.Process(daphne)
        for p in (d, *d.children(recursive=True)):
            add("daphne", p)
    except psutil.Error:
        pass
    return roles


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


def _memory_rows(samples: list[tuple[float, dict]], load: str) -> list[Result]:
    rows = []
    for role in ROLE_ORDER:
        series = [(t, s[role]["anon"] / MB) for t, s in samples if role in s]
        rss = [s[role]["rss"] / MB for _, s in samples if role in s]
        if len(series) < 4:
            continue
        half = [p for p in series if p[0] >= series[-1][0] / 2]
        if len(half) < 3:
            half = series[len(series) // 2 :]
        slope_h = _slope(half) * 3600  # MB/hour
        rise = _slope(half) * (half[-1][0] - half[0][0])
        start = statistics.median(y for _, y in series[:3])
        end = statistics.median(y for _, y in series[-3:])
        med = statistics.median(y for _, y in half)
        pid_sets = [frozenset(s[role]["pids"]) for _, s in samples if role in s]
        procs = statistics.median(len(p) for p in pid_sets)
        # The floor is per process: a role's sum over several processes would hide one that grows.
        growth = slope_h > SLOPE_LIMIT_MB_H and rise > max(1.0, 0.01 * med / max(1, procs))
        note = [
            f"anon RSS start {start:.1f} MB, end {end:.1f} MB; second-half slope {slope_h:+.1f} MB/h "
            f"(fitted rise {rise:+.2f} MB over {half[-1][0] - half[0][0]:.0f} s)",
            f"RSS {statistics.median(rss[:3]):.1f} -> {statistics.median(rss[-3:]):.1f} MB",
            f"{procs:.0f} processes",
        ]
        if len(set(pid_sets)) > 1:
            note.append(f"process set changed {sum(a != b for a, b in itertools.pairwise(pid_sets))} times")
        if role == "redis":
            note.append("whole server")
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
    return rows


def _load_rows(loaded: dict, seconds: float) -> list[Result]:
    minutes = loaded["minutes"]
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
            f"p99 {pct(lat, 0.99) * 1e3:.1f} ms; errors {errors} of {requests:,}; per minute (ms): "
            + "; ".join(per_min),
            rate=requests / seconds,
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
        w.writerow(["t_s", "role", "processes", "rss_mb", "anon_mb", "uss_mb", "pids"])
        for t, s in samples:
            for role in ROLE_ORDER:
                if role in s:
                    r = s[role]
                    uss = "" if r["uss"] is None else f"{r['uss'] / MB:.2f}"
                    pids = " ".join(map(str, sorted(r["pids"])))
                    w.writerow([f"{t:.1f}", role, len(r["pids"]), f"{r['rss'] / MB:.2f}", f"{r['anon'] / MB:.2f}",
                                uss, pids])  # fmt: skip
    with open(folder / f"{stamp}-load.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["minute", "requests", "errors", "p50_ms", "p99_ms"])
        for k, m in loaded["minutes"].items():
            xs = sorted(m["lat"])
            w.writerow([k, m["requests"], m["errors"], f"{xs[len(xs) // 2] * 1e3:.2f}",
                        f"{xs[min(len(xs) - 1, int(0.99 * len(xs)))] * 1e3:.2f}"])  # fmt: skip
    return path


# -- the run ----------------------------------------------------------------------------------------


def _soak(raw_key: str, day, sessions, work: Path) -> list[Result]:
    headers = {"X-API-Key": raw_key}
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    servers = serving._start(work)
    samples: list[tuple[float, dict]] = []
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
            "seconds": SOAK_SECONDS,
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
        load = load_note()
        out_path = work / "load.json"
        with open(out_path, "wb") as out:
            loader = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.bench_soak", "--load", json.dumps(spec)],
                cwd=serving.ROOT, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        t0 = time.monotonic()
        while loader.poll() is None:
            samples.append((time.monotonic() - t0, _sample(servers.honcho.pid, servers.daphne.pid)))
            dead = servers.alive()
            if dead:
                loader.kill()
                raise RuntimeError(f"soak bench: {dead}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                loader.wait(timeout=SAMPLE_EVERY_S)
        samples.append((time.monotonic() - t0, _sample(servers.honcho.pid, servers.daphne.pid)))
        text = out_path.read_text()
        if loader.returncode != 0:
            raise RuntimeError(f"soak load process exited {loader.returncode}: {text[-2000:]}")
        loaded = json.loads(text.strip().splitlines()[-1])
        time.sleep(1.0)
    finally:
        stopped = serving._stop(servers)
    kept = _keep(samples, loaded, stamp)
    rows = _load_rows(loaded, SOAK_SECONDS)
    rows += _memory_rows(samples, load)
    growing = [r.benchmark.split()[-1] for r in rows if r.case == "growth"]
    rows.append(
        Result(
            f"{_BENCH}: no growth trend",
            "NOT met" if growing else "met",
            len(samples),
            float("nan"),
            f"{SOAK_SECONDS} s, {len(samples)} samples every {SAMPLE_EVERY_S:.0f} s"
            + (f"; growing: {', '.join(growing)}" if growing else "")
            + f"; figures kept in {kept.relative_to(serving.ROOT)} (+ -load.csv)",
        )
    )
    rows.append(dataclasses.replace(stopped, benchmark=f"{_BENCH}: processes stopped"))
    return rows


def run() -> list[Result]:
    return serving.run_on_topology(_BENCH, _soak, "bench-soak-")


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:2] == ["--load"]:
        sys.stdout.write(json.dumps(_load_main(json.loads(sys.argv[2]))) + "\n")
    else:
        for result in run():
            print(result)
