"""Serving under load (issue 9): the Procfile topology of ``make run`` beside daphne alone, in one run.

Setup, in the bench database ``signal_bench`` and Redis DB 9 (``bench_timeframes._configure``):

* History first (``benchmarks/history.py``, reloaded only when not exactly there): 30 days of
  ``signal_atm_iv`` of the bench underlying ``BENCHMNY`` and the 375 one-minute rows of
  ``greeks_option_1m`` of one of its calls over the last NSE session (a trading day).
* An API key on a subscription ``bench`` of tier ``bench`` (100,000,000 requests/minute), sent
  as ``X-API-Key`` by every request; revoked at the end.
* The whole ``Procfile`` started by honcho from ``make run``'s virtualenv (``.venv``), as
  ``tests/e2e/test_demo_topology.py`` does: nginx on the public port, granian (WSGI workers,
  ``WEB_WORKERS_PER_CORE`` default, the fast lane of the realtime reads in front of Django) behind it, uvicorn for the WebSocket, and the demo market
  (simulator, ingest, worker, beat; flower): free ports, on loopback but nginx's public port (it
  listens on every interface, as ``scripts/nginx_local.py`` renders it for ``make run``; flower is
  kept on loopback with ``FLOWER_ADDRESS``), ``MARKET_CALENDAR=NSE-DEMO``, ``SHARD_COUNT=4`` as in
  the e2e test. The demo keeps running through the measurement: beat
  computes every chain each minute (the last row checks that it did). The bench waits for
  readiness, then for realtime Greeks computed after the start (``?refresh=true`` computes the
  chain at once instead of waiting up to a minute for beat).
* Beside it, the topology before issue 9: daphne, one process, serving everything on its own
  port (``daphne -b 127.0.0.1 -p PORT signalsvc.asgi:application``, same virtualenv, database and
  Redis, while the demo runs).

Load: Debian's ``wrk -t2 -cN -d5s --latency`` from a second process at 16 and 64 connections,
against the public port (nginx) for the topology, daphne's own port for daphne. Every case runs
three times, in rounds whose order alternates (the machine is shared and its load drifts: a drift
hits every case alike). Endpoints (``/api/v2/...``): ``health/live``;
``signals/realtime/greeks/{key}`` (the ATM NIFTY call of the nearest expiry,
``scripts/demo_option_key.py``); ``realtime/moneyness/NIFTY/greeks/ATM``;
``realtime/moneyness/NIFTY/atm-iv``; ``realtime/indicators/NSE@NIFTY@equity_spot/rsi?timeframe=5m``;
``POST batch/greeks`` with the 100 NIFTY options of the nearest expiry nearest its forward (the
body from a Lua script); ``historical/greeks/{BENCHMNY call}`` over its trading day at ``1m``
(375 points) and ``historical/moneyness/BENCHMNY/atm-iv/history`` over the 30 days at ``5m``
(the same endpoint as NIFTY's, on an underlying that has a month of history). daphne is measured on
``health/live`` and realtime Greeks. Each answer is checked once before the load (status 200, and
the realtime Greeks' IV, the batch's 100 results, the historical point counts); an endpoint that
fails its check gets a row with the reason and no numbers.

Rows: one per (endpoint, server, connections): median = the median of the three runs' p50; items/s
= the median of their requests/s; the note has the median p99, the errors of all three runs
(non-2xx + socket errors), the targets and the CPU each part of the machine used during the runs
(cores, median of the three: ``web`` granian, ``proxy`` nginx, ``ws`` uvicorn, ``demo`` worker +
beat + ingest + simulator + flower + honcho, ``daphne``, ``pg`` the bench database's backends,
``redis`` the whole server, ``wrk``, ``other`` = everything else on the machine) and the server's
CPU per request (granian's or daphne's cores / requests/s, median of the runs). Then the ratio
of realtime Greeks at 16 connections (topology / daphne requests/s), and how the processes stopped.

Targets (issue 9; printed, never asserted), at 16 connections: realtime Greeks >= 1,000 req/s with
p99 < 25 ms and >= 10x daphne; realtime moneyness and indicators >= 500 req/s with p99 < 25 ms; the
batch of 100 p50 < 10 ms; historical p99 < 50 ms; at both connection counts: zero errors.

Skipped (one row with the reason, no numbers) when wrk or nginx is missing
(``scripts/install-system-deps.sh`` installs both) or ``make run``'s virtualenv is not built.
Bounded: 60 runs of 5 s plus start-up (about a minute) and stop; everything is stopped at the end
(SIGTERM to honcho's process group, SIGKILL after 30 s; daphne likewise after 10 s).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import loadgen
from benchmarks.bench_timeframes import BENCH_DATABASE
from benchmarks.common import Result, load_note, verdict
from benchmarks.history import HIST_SYMBOL, OptionDay, history_load, history_sessions, option_day_load

ROOT = loadgen.ROOT
SERVICE_BIN = ROOT / ".venv" / "bin"  # the Procfile runs make run's virtualenv
CONNECTIONS = (16, 64)
TARGET_CONNECTIONS = 16
RUNS = 3
SECONDS = 5
BATCH_SIZE = 100
READY_TIMEOUT_S = 90
DATA_TIMEOUT_S = 150
TOPOLOGY_STOP_TIMEOUT_S = 30.0
API = "/api/v2"
NEW = "nginx+granian (Procfile)"
OLD = "daphne 1 process (before)"

_BENCH = "serving"
_STOP = "serving: processes stopped"


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    kind: str  # which target applies: "health", "greeks", "realtime", "batch", "historical"
    body: bytes | None = None
    check: Callable[[dict], str | None] | None = None  # on the JSON answer: what is wrong, or None
    both: bool = False  # measured on daphne too


def _skipped(benchmark: str, case: str, reason: str) -> Result:
    return Result(benchmark, case, 0, float("nan"), f"skipped: {reason}")


def _missing() -> str | None:
    if shutil.which("wrk") is None:
        return "wrk is not installed (scripts/install-system-deps.sh installs it)"
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        return "nginx is not installed (scripts/install-system-deps.sh installs it)"
    for name in ("honcho", "python", "granian", "uvicorn", "celery", "daphne"):
        if not (SERVICE_BIN / name).exists():
            return f"{SERVICE_BIN / name} is missing: the Procfile runs make run's virtualenv (make venv)"
    return None


# -- CPU by part of the machine ---------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")
# A Procfile process is named by the first of these found in its own or an ancestor's command line.
_PROCFILE_ROLES = (
    ("proxy", ("nginx", "start-proxy")),
    ("web", ("granian", "gunicorn", "start-web")),
    ("ws", ("uvicorn", "start-ws")),
    ("demo", ("start-worker", " worker ", " beat ", "ingest_market_data", " flower", "simulate_market")),
)


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, CPU ticks used, command line) of every process."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            command = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]), command)
    return out


def _machine_busy() -> int:
    """CPU ticks the whole machine has spent busy since boot (all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return sum(fields) - fields[3] - fields[4]


def _role(pid: int, procs, honcho: int, daphne: int) -> str | None:
    """The part of the machine a process belongs to, or None. honcho starts each Procfile process in
    a session of its own: they are found by their ancestry, and named by the first of
    ``_PROCFILE_ROLES`` in their own or an ancestor's command line."""
    command = procs[pid][2]
    if pid == daphne:
        return "daphne"
    if command.startswith("postgres:") and f" {BENCH_DATABASE} " in command:
        return "pg"
    if command.split(" ", 1)[0].endswith("redis-server"):
        return "redis"
    line = []
    while pid in procs and pid != honcho and pid > 1:
        line.append(procs[pid][2])
        pid = procs[pid][0]
    if pid != honcho:
        return None
    for command in line:
        for role, needles in _PROCFILE_ROLES:
            if any(n in command for n in needles):
                return role
    return "demo"  # honcho's own per-process wrappers


@dataclass
class _CpuMark:
    at: float
    procs: dict
    busy: int
    children: float


def _cpu_mark() -> _CpuMark:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return _CpuMark(time.monotonic(), _processes(), _machine_busy(), usage.ru_utime + usage.ru_stime)


def _cpu_between(before: _CpuMark, after: _CpuMark, honcho: int, daphne: int) -> dict[str, float]:
    """Cores used by each part between two marks; ``wrk`` = this process's children that ended
    meanwhile (wrk is the only one), ``other`` = the machine's remainder."""
    wall = after.at - before.at
    ticks: dict[str, int] = {}
    for pid, (_, used, _) in after.procs.items():
        role = _role(pid, after.procs, honcho, daphne)
        if role is not None:
            ticks[role] = ticks.get(role, 0) + used - before.procs.get(pid, (0, 0, ""))[1]
    cores = {role: n / _TICK / wall for role, n in ticks.items()}
    cores["wrk"] = (after.children - before.children) / wall
    cores["other"] = max(0.0, (after.busy - before.busy) / _TICK / wall - sum(cores.values()))
    return cores


def _cpu_note(samples: list[dict[str, float]]) -> str:
    roles = {role for s in samples for role in s}
    medians = {role: statistics.median(s.get(role, 0.0) for s in samples) for role in roles}
    shown = sorted(((c, r) for r, c in medians.items() if c >= 0.05), reverse=True)
    return "cpu (cores): " + ", ".join(f"{r} {c:.2f}" for c, r in shown)


# -- the workload -----------------------------------------------------------------------------------


def _api_key():
    from signalsvc.accounts.services import api_key_create, subscription_get_or_create

    subscription = subscription_get_or_create(
        name="bench", tier_name="bench", requests_per_minute=100_000_000
    )
    return api_key_create(subscription=subscription, name="bench-serving")


def _query(start: dt.datetime, end: dt.datetime, timeframe: str) -> str:
    return urllib.parse.urlencode(
        {"start_time": start.isoformat(), "end_time": end.isoformat(), "timeframe": timeframe}
    )


def _points(expected: int) -> Callable[[dict], str | None]:
    def check(body: dict) -> str | None:
        got = body.get("data_points")
        return None if got == expected else f"{got} data points, {expected} expected"

    return check


def _endpoints(option: str, batch: list[str], day: OptionDay, sessions) -> list[Endpoint]:
    month_points = sum(-(-s.minutes // 5) for s in sessions)
    signals = f"{API}/signals"
    return [
        Endpoint("health/live", f"{API}/health/live", "health", both=True),
        Endpoint(
            "realtime/greeks/{option}",
            f"{signals}/realtime/greeks/{option}",
            "greeks",
            check=lambda b: None if b.get("iv") is not None else f"no IV: {b.get('iv_reason')}",
            both=True,
        ),
        Endpoint(
            "realtime/moneyness/NIFTY/greeks/ATM",
            f"{signals}/realtime/moneyness/NIFTY/greeks/ATM",
            "realtime",
        ),
        Endpoint("realtime/moneyness/NIFTY/atm-iv", f"{signals}/realtime/moneyness/NIFTY/atm-iv", "realtime"),
        Endpoint(
            "realtime/indicators/NIFTY/rsi 5m",
            f"{signals}/realtime/indicators/NSE@NIFTY@equity_spot/rsi?timeframe=5m",
            "realtime",
        ),
        Endpoint(
            f"POST batch/greeks, {len(batch)} keys",
            f"{signals}/batch/greeks",
            "batch",
            body=json.dumps({"instrument_keys": batch}).encode(),
            check=lambda b: (
                None
                if b.get("succeeded") == len(batch)
                else f"{b.get('succeeded')} of {len(batch)} succeeded: {str(b.get('errors'))[:200]}"
            ),
        ),
        Endpoint(
            "historical/greeks/{option}, 1d 1m",
            f"{signals}/historical/greeks/{day.key}?{_query(day.start, day.end, '1m')}",
            "historical",
            check=_points(day.rows),
        ),
        Endpoint(
            "historical atm-iv history, 30d 5m",
            f"{signals}/historical/moneyness/{HIST_SYMBOL}/atm-iv/history?"
            + _query(sessions[0].open, sessions[-1].close, "5m"),
            "historical",
            check=_points(month_points),
        ),
    ]


def _batch_keys(truth: dict) -> list[str]:
    """The BATCH_SIZE NIFTY options of the nearest expiry whose strikes are nearest its forward."""
    nearest = min(truth["underlyings"]["NIFTY"]["expiries"].values(), key=lambda e: e["t"])
    options = sorted(nearest["options"].items(), key=lambda item: abs(item[1]["strike"] - nearest["forward"]))
    return [key for key, _ in options[:BATCH_SIZE]]


def _lua_post(path: Path, body: bytes) -> str:
    """A wrk script that POSTs ``body`` as JSON (a level-1 long bracket: the body holds no ``]=]``)."""
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [=[{body.decode()}]=]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return str(path)


# -- the run ----------------------------------------------------------------------------------------


def _ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(loadgen.free_port())
    return sorted(ports)


def _computed_at(base: str, option: str, headers: dict) -> dt.datetime | None:
    """When the option's realtime Greeks were computed, or None when they cannot be read."""
    try:
        status, body = loadgen.http(
            f"{base}{API}/signals/realtime/greeks/{option}", headers=headers, timeout=30
        )
    except OSError:
        return None
    return dt.datetime.fromisoformat(json.loads(body)["computed_at"]) if status == 200 else None


def _settle(base: str) -> float:
    """Wait until the server has drained what the last run queued (wrk stops after its seconds,
    but the requests it left in nginx's and granian's queues are still served and would load the
    next run): one ``health/live`` answered = the queue ahead of it is empty. Returns the seconds
    it took."""
    begin = time.perf_counter()
    with contextlib.suppress(OSError):  # the next run's errors will say so
        loadgen.http(f"{base}{API}/health/live", timeout=60)
    return time.perf_counter() - begin


@dataclass
class _Servers:
    """The running topology and daphne, their URLs and logs."""

    honcho: subprocess.Popen
    daphne: subprocess.Popen
    new: str
    old: str
    web_port: int
    ws_port: int
    honcho_log: Path
    daphne_log: str

    def alive(self) -> str | None:
        return (
            loadgen.exited(self.honcho, "honcho (the Procfile)", str(self.honcho_log))()
            or loadgen.exited(self.daphne, "daphne", self.daphne_log)()
        )


def _start(work: Path) -> _Servers:
    web, web_http, ws, flower, old_port = _ports(5)
    env = loadgen.server_env(
        WEB_PORT=str(web),
        WEB_HTTP_PORT=str(web_http),
        WS_PORT=str(ws),
        FLOWER_PORT=str(flower),
        FLOWER_ADDRESS="127.0.0.1",
        SIMULATOR_TRUTH_FILE=str(work / "truth.json"),
        SHARD_COUNT="4",
    )
    honcho_log = work / "honcho.log"
    with open(honcho_log, "wb") as log:
        honcho = subprocess.Popen(
            [str(SERVICE_BIN / "honcho"), "-f", "Procfile", "start"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    daphne, daphne_log = loadgen.daphne_start(old_port, env=env, bin_dir=SERVICE_BIN)
    return _Servers(
        honcho,
        daphne,
        f"http://127.0.0.1:{web}",
        f"http://127.0.0.1:{old_port}",
        web,
        ws,
        honcho_log,
        daphne_log,
    )


def _stop(servers: _Servers) -> Result:
    """daphne, then the Procfile's process group; a row saying how they stopped."""
    stops = []
    for name, process, timeout, group in (
        ("daphne", servers.daphne, loadgen.STOP_TIMEOUT_S, False),
        ("Procfile", servers.honcho, TOPOLOGY_STOP_TIMEOUT_S, True),
    ):
        took = loadgen.process_stop(process, timeout=timeout, group=group)
        stops.append(f"{name}: {'killed, still running' if took is None else f'{took:.1f} s'} after SIGTERM")
    # What the start scripts leave per port (nginx's config, pid and temp files; the WebSocket
    # server's metrics files): these ports were this run's only.
    shutil.rmtree(ROOT / ".run" / f"nginx-{servers.web_port}", ignore_errors=True)
    shutil.rmtree(ROOT / ".run" / f"metrics-ws-{servers.ws_port}", ignore_errors=True)
    text = servers.honcho_log.read_text(errors="replace")
    killed = sorted(
        {
            line.split("sending SIGKILL to ")[1].split()[0]
            for line in text.splitlines()
            if "sending SIGKILL to " in line
        }
    )
    problems = [f"honcho had to SIGKILL {', '.join(killed)}"] if killed else []
    if "Traceback" in text:
        problems.append("a Traceback in the Procfile's output")
    clean = not problems and all("killed" not in s for s in stops)
    if clean:
        os.unlink(servers.daphne_log)
    else:
        problems.append(f"logs kept: {servers.honcho_log}, {servers.daphne_log}")
    return Result(_STOP, "clean" if clean else "NOT clean", 0, float("nan"), "; ".join(stops + problems))


def _prepare(servers: _Servers, headers: dict, work: Path, started: dt.datetime) -> str:
    """Wait for the topology, the demo's first chain of this run and daphne; the option key."""
    new = servers.new
    loadgen.wait_until(
        "topology ready",
        lambda: loadgen.http(f"{new}{API}/health/ready", timeout=2)[0] == 200,
        timeout=READY_TIMEOUT_S,
        alive=servers.alive,
    )
    loadgen.wait_until("truth file", (work / "truth.json").exists, timeout=30, alive=servers.alive)
    option = subprocess.run(
        [str(SERVICE_BIN / "python"), "scripts/demo_option_key.py"],
        cwd=ROOT, env={**os.environ, "SIMULATOR_TRUTH_FILE": str(work / "truth.json")},
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip

    def fresh() -> bool:
        # Realtime values of an earlier run stay in Redis: wait for a chain of this one (computed now
        # rather than at beat's next minute).
        loadgen.http(f"{new}{API}/signals/realtime/greeks/{option}?refresh=true", headers=headers, timeout=30)
        at = _computed_at(new, option, headers)
        return at is not None and at >= started

    loadgen.wait_until(
        "realtime greeks of this run", fresh, timeout=DATA_TIMEOUT_S, alive=servers.alive, interval=3
    )
    loadgen.wait_until(
        "daphne live",
        lambda: loadgen.http(f"{servers.old}{API}/health/live", timeout=2)[0] == 200,
        timeout=60,
        alive=servers.alive,
    )
    return option


def _cases(endpoints: list[Endpoint], servers: _Servers, headers: dict, work: Path):
    """(cases to load, {endpoint name: wrk script}, {(endpoint name, server): why it is not loaded})
    after checking each answer once."""
    cases, scripts, skipped = [], {}, {}
    for endpoint in endpoints:
        for server, base in ((NEW, servers.new), (OLD, servers.old)):
            if server == OLD and not endpoint.both:
                continue
            status, body = loadgen.http(
                base + endpoint.path,
                body=endpoint.body,
                headers={**headers, "Content-Type": "application/json"},
            )
            problem = None if status == 200 else f"answered {status}: {body[:200]!r}"
            if problem is None and endpoint.check is not None:
                problem = endpoint.check(json.loads(body))
            if problem is not None:
                skipped[(endpoint.name, server)] = problem
                continue
            cases += [(endpoint, server, base, c) for c in CONNECTIONS]
        if endpoint.body is not None:
            scripts[endpoint.name] = _lua_post(work / f"post-{len(scripts)}.lua", endpoint.body)
    return cases, scripts, skipped


def _load(cases, scripts: dict, headers: dict, servers: _Servers):
    """RUNS rounds over ``cases``, alternating their order. ({case: [wrk stats + cpu]}, {case: why it
    failed})."""
    runs: dict[tuple[str, str, int], list[dict]] = {}
    failed: dict[tuple[str, str, int], str] = {}
    for round_ in range(RUNS):
        for endpoint, server, base, c in cases if round_ % 2 == 0 else cases[::-1]:
            case = (endpoint.name, server, c)
            if case in failed:
                continue
            mark = _cpu_mark()
            try:
                stats = loadgen.wrk_run(
                    base + endpoint.path,
                    connections=c,
                    seconds=SECONDS,
                    headers=headers,
                    script=scripts.get(endpoint.name),
                )
            except loadgen.WrkFailed as exc:
                failed[case] = str(exc)
                continue
            stats["cpu"] = _cpu_between(mark, _cpu_mark(), servers.honcho.pid, servers.daphne.pid)
            stats["drain"] = _settle(base)
            runs.setdefault(case, []).append(stats)
    return runs, failed


def _measure(raw_key: str, day: OptionDay, sessions, work: Path) -> list[Result]:
    headers = {"X-API-Key": raw_key}
    started = dt.datetime.now(dt.UTC)
    servers = _start(work)
    out: list[Result] = []
    try:
        try:
            option = _prepare(servers, headers, work, started)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            raise RuntimeError(
                f"serving bench: {exc}; logs: {servers.honcho_log}, {servers.daphne_log}"
            ) from exc
        live = _live_latency(servers.new, option, headers)
        batch = _batch_keys(json.loads((work / "truth.json").read_text()))
        endpoints = _endpoints(option, batch, day, sessions)
        cases, scripts, skipped = _cases(endpoints, servers, headers, work)
        load = load_note()
        before = _computed_at(servers.new, option, headers)
        runs, failed = _load(cases, scripts, headers, servers)
        after = _computed_at(servers.new, option, headers)
        # Let the requests wrk left in flight finish: a SIGTERM with requests in flight leaves
        # daphne's request threads waiting on its stopped event loop (the process never exits).
        time.sleep(1.0)
    finally:
        stopped = _stop(servers)

    by_case = {(e.name, s, c): e for e, s, _, c in cases}
    for endpoint in endpoints:
        for server in (NEW, OLD):
            if (endpoint.name, server) in skipped:
                out.append(_skipped(f"{_BENCH}: {endpoint.name}", server, skipped[(endpoint.name, server)]))
            for c in CONNECTIONS:
                case = (endpoint.name, server, c)
                if case in failed:
                    out.append(_skipped(f"{_BENCH}: {endpoint.name}", f"{server}, c{c}", failed[case]))
                elif case in runs:
                    out.append(_row(by_case[case], server, c, runs[case], load))
                    load = ""
    out.append(_ratio(runs))
    out.append(live)
    if before and after:
        demo = (
            f"realtime greeks computed_at {before:%H:%M:%S} UTC before the load, {after:%H:%M:%S} after: "
            + ("the live cadence kept computing" if after > before else "NOT advanced, the demo stalled")
        )
    else:
        demo = "realtime greeks unreadable before or after the load"
    out.append(
        Result(f"{_BENCH}: demo market during the load", "chains at the live cadence", 0, float("nan"), demo)
    )
    out.append(stopped)
    return out


LIVE_SECONDS = 30.0
LIVE_POLL_SECONDS = 0.02


def _live_latency(base: str, option: str, headers: dict, seconds: float = LIVE_SECONDS) -> Result:
    """From a tick entering the stream to its Greeks being readable over REST, at the live cadence
    (issue 11): the option's realtime Greeks polled every 20 ms through the public port for
    ``seconds``; each new ``timestamp`` (the time of the option tick the values were computed from:
    the simulator stamps a tick when it publishes it) is one sample, its latency = when it was first
    seen - that timestamp. Also the median gap between two computations (``computed_at``)."""
    url = f"{base}{API}/signals/realtime/greeks/{option}"
    seen_ticks: dict[str, float] = {}
    computations: list[float] = []
    last_computed = None
    deadline = time.time() + seconds
    while time.time() < deadline:
        status, body = loadgen.http(url, headers=headers, timeout=10)
        now = time.time()
        if status == 200:
            value = json.loads(body)
            seen_ticks.setdefault(value["timestamp"], now)
            if value["computed_at"] != last_computed:
                last_computed = value["computed_at"]
                computations.append(now)
        time.sleep(LIVE_POLL_SECONDS)
    latencies = sorted(
        first - dt.datetime.fromisoformat(tick).timestamp() for tick, first in list(seen_ticks.items())[1:]
    )  # the first was already there when polling began: its first sight is not its arrival
    case = "tick -> REST, live cadence"
    bench = "farm: tick to readable Greeks (demo market, Procfile)"
    if len(latencies) < 5:
        return _skipped(bench, case, f"only {len(latencies)} new ticks seen in {seconds:.0f} s")
    gaps = [b - a for a, b in itertools.pairwise(computations[1:])]  # the first: seen, not made
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    note = (
        f"p99 {p99 * 1e3:.0f} ms over {len(latencies)} ticks; computations every "
        f"{statistics.median(gaps):.2f} s (median), GREEKS_LIVE_INTERVAL 1 s; polled every 20 ms"
        if gaps
        else f"p99 {p99 * 1e3:.0f} ms over {len(latencies)} ticks"
    )
    return Result(bench, case, len(latencies), statistics.median(latencies), note, rate=float("nan"))


def _targets(endpoint: Endpoint, server: str, c: int, rps: float, p50: float, p99: float) -> list[str]:
    if server != NEW or c != TARGET_CONNECTIONS:
        return []
    if endpoint.kind == "greeks":
        return [f">= 1,000 req/s and p99 < 25 ms: {verdict(rps >= 1000 and p99 < 0.025)}"]
    if endpoint.kind == "realtime":
        return [f">= 500 req/s and p99 < 25 ms: {verdict(rps >= 500 and p99 < 0.025)}"]
    if endpoint.kind == "batch":
        return [f"p50 < 10 ms: {verdict(p50 < 0.010)}"]
    if endpoint.kind == "historical":
        return [f"p99 < 50 ms: {verdict(p99 < 0.050)}"]
    return []


def _row(endpoint: Endpoint, server: str, c: int, stats: list[dict], load: str) -> Result:
    rps = statistics.median(s["rps"] for s in stats)
    p50 = statistics.median(s["p50"] for s in stats)
    p99 = statistics.median(s["p99"] for s in stats)
    errors = sum(s["non_2xx"] + s["socket_errors"] for s in stats)
    role = "web" if server == NEW else "daphne"
    parts = [
        f"p99 {p99 * 1e3:.1f} ms",
        f"errors {errors} of {sum(s['requests'] for s in stats):,}",
        *_targets(endpoint, server, c, rps, p50, p99),
        f"zero errors: {verdict(errors == 0)}",
        _cpu_note([s["cpu"] for s in stats]),
        f"{role} CPU per request {statistics.median(s['cpu'].get(role, 0.0) / s['rps'] for s in stats) * 1e3:.2f} ms",
    ]
    drain = statistics.median(s["drain"] for s in stats)
    if drain >= 0.1:
        parts.append(f"queue drained {drain:.1f} s after wrk stopped")
    if len(stats) < RUNS:
        parts.insert(0, f"only {len(stats)} of {RUNS} runs")
    return Result(
        f"{_BENCH}: {endpoint.name}", f"{server}, c{c}", c, p50, "; ".join(parts) + f" {load}".rstrip(), rps
    )


def _ratio(runs: dict) -> Result:
    name = "realtime/greeks/{option}"
    new, old = runs.get((name, NEW, TARGET_CONNECTIONS)), runs.get((name, OLD, TARGET_CONNECTIONS))
    benchmark, case = f"{_BENCH}: realtime greeks, topology / daphne", f"req/s ratio, c{TARGET_CONNECTIONS}"
    if not new or not old:
        return _skipped(benchmark, case, "a side was not measured (see its row)")
    ratio = statistics.median(s["rps"] for s in new) / statistics.median(s["rps"] for s in old)
    return Result(
        benchmark,
        case,
        TARGET_CONNECTIONS,
        float("nan"),
        f"{ratio:.1f}x; target >= 10x: {verdict(ratio >= 10)}",
    )


def _configure() -> None:
    from benchmarks.bench_timeframes import _configure as configure_bench

    configure_bench()


def run_on_topology(benchmark: str, measure: Callable, prefix: str) -> list[Result]:
    """What every bench on the Procfile topology does around its measurement: skip when a tool is
    missing, load the history, make the bench API key (revoked after), and keep the work directory
    (logs) only when the processes did not stop cleanly. ``measure(raw_key, day, sessions, work)``
    returns the rows, the last one saying how the processes stopped."""
    missing = _missing()
    if missing is not None:
        return [_skipped(benchmark, "all", missing)]
    _configure()
    from signalsvc.accounts.services import api_key_revoke

    sessions = history_sessions()
    history_load(sessions)
    day = option_day_load(sessions)
    key, raw = _api_key()
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        results = measure(raw, day, sessions, work)
    finally:
        api_key_revoke(key=key)
    if results[-1].case == "clean":
        shutil.rmtree(work, ignore_errors=True)
    return results


def run() -> list[Result]:
    return run_on_topology(_BENCH, _measure, "bench-serving-")


if __name__ == "__main__":  # pragma: no cover
    for result in run():
        print(result)
