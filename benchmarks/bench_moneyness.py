"""Moneyness analytics: their cost inside the chain task, the ATM IV history, realtime reads under load.

Runs in the bench's own database ``signal_bench`` and Redis DB 9 with exactly the configuration of
``bench_timeframes`` (its ``_configure`` is called: Django can be configured once per process, and
``make bench`` runs every module in one process), never the dev data.

Workloads and rows:

1. **Chain task** (``greeks.services.chain_compute``, the per-minute task of one underlying). The
   default demo market (seed 7: NIFTY and BANKNIFTY, 2,202 options) registered, 12 s of its ticks
   published to the market-data stream and ingested by ``StreamConsumer`` (as the tests'
   ``demo_market`` fixture does); then NIFTY's chain (1,224 options of 4 expiries; the note says
   how many were priced) computed 15 times after 2 warm-ups, each run its own committed transaction. Medians of: the whole task (wall time
   around the call), the Greeks part (the ``price``, ``store`` and ``publish`` steps of
   ``ChainResult.timings``; ``publish`` also holds the transaction's COMMIT, which the task laps
   after its atomic block), the moneyness part of issue 8's item 1 (``moneyness``: levels, ATM IV,
   delta picks, 30-day value; ``moneyness_store``; ``moneyness_publish``) and its share of the whole
   (median of the per-run shares; target < 10 %), and the smile fit (``smile``, a step of its own,
   issue 8's item 5), alone and added to the moneyness part.
2. **ATM IV history**: a month of ``signal_atm_iv`` of the bench underlying
   ``NSE@BENCHMNY@equity_spot`` (``benchmarks/history.py``: the NSE sessions of the 30 calendar
   days before today, weekly expiries, ~28,000 rows of realistic values, loaded by COPY and
   reloaded only when not exactly there). Timed in-process through Django's test client
   over the whole month at 5m (75 buckets a session): ``GET
   historical/moneyness/BENCHMNY/atm-iv/history`` and ``GET historical/greeks/<key>`` (the ATM
   series of each session's front expiry, same table). *Cold* = a range not asked before (so a
   miss of the history cache, ``signalsvc.api.response_cache``), a new PostgreSQL connection (Django's closed before each call; the time to
   open it is in the request and shown apart) and a range not asked before, with the in-process
   instrument-id cache cleared; PostgreSQL's shared buffers and the OS page cache stay warm (they
   cannot be emptied without restarting the server). *Warm* = the same request again: served from
   the history cache while the underlying's chain version holds. Baseline in the same run: the SQL bucketing alone (``atm_iv_series_at`` and
   ``atm_series_at`` called directly, warm connection), so the HTTP + JSON share is visible.
   Target (issue 8): the ATM series < 100 ms cold.
3. **Realtime under load**: the web server as ``make run`` started it before the serving issue
   (daphne, one process, on a free port, bench database and Redis DB 9, ``MARKET_CALENDAR=NSE-DEMO``,
   anonymous reads with an unreachable rate limit; ``bench_serving`` measures the Procfile's
   nginx + granian beside it), loaded from a second process by
   ``wrk -t2 -c16 --latency`` on ``realtime/moneyness/NIFTY/greeks/ATM``, ``.../greeks/OTM7``
   (not stored: computed from the snapshot), ``.../atm-iv`` and the baseline ``/api/v2/health/live``
   of the same server: 8 s of load per endpoint, as two 4-second runs, the second round in the
   reverse order (the machine is shared and its load drifts: one 8-second run each in a fixed order
   made atm-iv, run last, look 2.2x slower than greeks/ATM, which costs more in-process). The
   chain read is the one row 1 computed. median = wrk's p50 (mean of the two runs), items/s = requests/s; the note has the worse p99,
   requests/s and errors (non-2xx, socket). Skipped (with the reason, no number) when wrk is not
   installed (``scripts/install-system-deps.sh`` installs it). No target was set; the ratio to the
   trivial endpoint is the comparison. The server is stopped with SIGTERM once idle; a row says so
   when it does not exit.

The machine is shared: the first row of each group carries the load average.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import statistics
import time

from benchmarks import loadgen
from benchmarks.common import Result, load_note, median_time, verdict
from benchmarks.history import HIST_KEY, HIST_SYMBOL, history_load, history_sessions

NIFTY = "NSE@NIFTY@equity_spot"
DEMO_SEED = 7
TICK_SECONDS = 12
CHAIN_WARMUP = 2
CHAIN_REPEATS = 15
SHARE_TARGET = 0.10
MONEYNESS_STEPS = ("moneyness", "moneyness_store", "moneyness_publish")
GREEKS_STEPS = ("price", "store", "publish")

HIST_TIMEFRAME = "5m"
COLD_TARGET_S = 0.100

WRK_CONNECTIONS = 16
WRK_ROUNDS = 2  # x WRK_SECONDS per endpoint: 8 s of load each, in two halves
WRK_SECONDS = 4
REALTIME_PATHS = (
    ("health/live (baseline)", "/api/v2/health/live"),
    ("greeks/ATM (stored level)", "/api/v2/signals/realtime/moneyness/NIFTY/greeks/ATM"),
    ("greeks/OTM7 (from the snapshot)", "/api/v2/signals/realtime/moneyness/NIFTY/greeks/OTM7"),
    ("atm-iv", "/api/v2/signals/realtime/moneyness/NIFTY/atm-iv"),
)

_CHAIN = "moneyness: share of the NIFTY chain task"
_HIST_ATM = "moneyness: 30d ATM IV history at 5m"
_HIST_GREEKS = "moneyness: 30d ATM series (greeks) at 5m"
_REALTIME = "moneyness: realtime, wrk -t2 -c16, 2x4 s"


def _configure() -> None:
    """The same database, Redis DB and settings as bench_timeframes (one Django per process)."""
    from benchmarks.bench_timeframes import _configure as configure_bench

    configure_bench()


# -- 1. the chain task ------------------------------------------------------------------------------


def _demo_market_ingested(client) -> None:
    """The default demo market registered and 12 s of its ticks through the stream and ingest."""
    from django.conf import settings

    from signalsvc.core.keys import FUTURES, OPTIONS
    from signalsvc.instruments.models import Instrument
    from signalsvc.instruments.services import instruments_upsert
    from signalsvc.marketdata.stream import ticks_ingest
    from signalsvc.simulator.market import DemoMarket

    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=TICK_SECONDS + 3)
    market = DemoMarket(start=start, seed=DEMO_SEED)
    specs = market.instruments()
    instruments_upsert(specs=specs)
    # Contracts an earlier run listed (another day's listing) are not part of this market.
    Instrument.objects.filter(
        symbol__in={s.symbol for s in specs}, product__in=[OPTIONS, FUTURES], active=True
    ).exclude(key__in={s.key for s in specs}).update(active=False)
    ticks = []
    for second in range(TICK_SECONDS):
        ticks += market.step(start + dt.timedelta(seconds=second))
    ticks_ingest(client, ticks, consumer_name="bench")
    client.xtrim(settings.MARKET_DATA_STREAM, maxlen=0)  # all acked: keep the bench's Redis small


def _chain_rows() -> list[Result]:
    from greeks.services import chain_compute, redis_client

    client = redis_client()
    _demo_market_ingested(client)
    load = load_note()
    walls, greeks_parts, moneyness_parts, smiles, shares, shares_with_smile = [], [], [], [], [], []
    steps: dict[str, list[float]] = {}
    result = None
    for i in range(CHAIN_WARMUP + CHAIN_REPEATS):
        start = time.perf_counter()
        result = chain_compute(underlying_key=NIFTY, client=client)
        wall = time.perf_counter() - start
        if not result.timings:
            raise RuntimeError(f"chain_compute({NIFTY}) computed nothing: {result.note}")
        if i < CHAIN_WARMUP:
            continue
        mny = sum(result.timings[s] for s in MONEYNESS_STEPS)
        for step, seconds in result.timings.items():
            steps.setdefault(step, []).append(seconds)
        walls.append(wall)
        greeks_parts.append(sum(result.timings[s] for s in GREEKS_STEPS))
        moneyness_parts.append(mny)
        smiles.append(result.timings["smile"])
        shares.append(mny / wall)
        shares_with_smile.append((mny + result.timings["smile"]) / wall)
    assert result is not None
    wall, greeks_part, mny, smile = (
        statistics.median(x) for x in (walls, greeks_parts, moneyness_parts, smiles)
    )
    share, share_with_smile = statistics.median(shares), statistics.median(shares_with_smile)

    def ms(names: tuple[str, ...]) -> str:
        return " / ".join(f"{statistics.median(steps[name]) * 1e3:.1f}" for name in names) + " ms"

    n = result.options
    return [
        Result(
            _CHAIN,
            "whole chain task (chain_compute)",
            n,
            wall,
            f"p50 of {CHAIN_REPEATS} committed runs after {CHAIN_WARMUP} warm-ups; {n} options, "
            f"{result.expiries} expiries {load}",
        ),
        Result(
            _CHAIN,
            "Greeks part (baseline)",
            n,
            greeks_part,
            f"price / store / publish = {ms(GREEKS_STEPS)} (publish holds the COMMIT); "
            f"{greeks_part / wall * 100:.0f} % of the task",
        ),
        Result(
            _CHAIN,
            "moneyness: levels, ATM IV, deltas, 30d",
            n,
            mny,
            f"{share * 100:.1f} % of the task (p50 of per-run shares); target < 10 %: "
            f"{verdict(share < SHARE_TARGET)}; derive / store / publish = {ms(MONEYNESS_STEPS)}",
        ),
        Result(
            _CHAIN,
            "moneyness: smile fit (SVI, every expiry)",
            n,
            smile,
            f"{smile / wall * 100:.1f} % of the task; with the above: {share_with_smile * 100:.1f} %",
        ),
    ]


# -- 2. ATM IV history ------------------------------------------------------------------------------


def _history_rows() -> list[Result]:
    from django.conf import settings
    from django.db import connection, connections
    from django.test import Client

    from moneyness import selectors as moneyness_selectors
    from signalsvc.instruments.selectors import instrument_ids_clear_cache
    from timeframes import selectors

    if settings.MARKET_CALENDAR != "NSE":
        raise RuntimeError(f"MARKET_CALENDAR is {settings.MARKET_CALENDAR}: the history is loaded for NSE")
    sessions = history_sessions()
    underlying_id, rows = history_load(sessions)
    client = Client()
    start, end = sessions[0].open, sessions[-1].close
    timeframe = selectors.timeframe_parse(HIST_TIMEFRAME)
    expected = sum(-(-s.minutes // timeframe.minutes) for s in sessions)
    underlying = moneyness_selectors.Underlying(underlying_id, HIST_KEY, HIST_SYMBOL)
    endpoints = {
        _HIST_ATM: f"/api/v2/signals/historical/moneyness/{HIST_SYMBOL}/atm-iv/history",
        _HIST_GREEKS: f"/api/v2/signals/historical/greeks/{HIST_KEY}",
    }
    sql = {
        _HIST_ATM: lambda: moneyness_selectors.atm_iv_series_at(
            underlying=underlying, timeframe=timeframe, start=start, end=end, agg="last", expiry=None
        ),
        _HIST_GREEKS: lambda: selectors.atm_series_at(
            underlying_id=underlying_id, timeframe=timeframe, start=start, end=end
        ),
    }
    sql_names = {_HIST_ATM: "moneyness.selectors.atm_iv_series_at", _HIST_GREEKS: "selectors.atm_series_at"}
    asked = iter(range(1, 1_000_000))

    def request(url: str, end_time: dt.datetime = end):
        params = {"start_time": start.isoformat(), "end_time": end_time.isoformat(), "timeframe": "5m"}
        response = client.get(url, params)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code}: {response.content[:300]!r}")
        return response

    def cold(url: str) -> float:
        """A new connection, a range never asked before (end one minute earlier each time)."""
        connections.close_all()
        instrument_ids_clear_cache()
        end_time = end - dt.timedelta(minutes=next(asked))
        begin = time.perf_counter()
        request(url, end_time)
        return time.perf_counter() - begin

    def reconnect() -> None:
        connections.close_all()
        connection.ensure_connection()

    load = load_note()
    connect = median_time(reconnect, repeats=9)
    out = []
    for bench, url in endpoints.items():
        points = request(url).json()["data_points"]
        check = "" if points == expected else f"; BUCKETS {points} != {expected} expected"
        request(url)  # the process's first request of this view (imports, URL resolver) is not cold data
        cold_s = statistics.median(cold(url) for _ in range(9))
        warm_s = median_time(lambda url=url: request(url), repeats=25)
        sql_s = median_time(sql[bench], repeats=15)
        target = (
            f"target < 100 ms: {verdict(cold_s < COLD_TARGET_S)}"
            if bench == _HIST_GREEKS
            else f"no target of its own (the ATM series' < 100 ms: {verdict(cold_s < COLD_TARGET_S)})"
        )
        out += [
            Result(
                bench,
                "endpoint cold (new DB connection)",
                points,
                cold_s,
                f"p50; {target}; includes opening the connection ({connect * 1e3:.1f} ms); "
                f"{rows:,} minute rows of {len(sessions)} sessions{check} {load}",
            ),
            Result(
                bench,
                "endpoint warm (same request again)",
                points,
                warm_s,
                f"p50; from the history cache (one MGET, no SQL); the SQL alone takes {sql_s * 1e3:.1f} ms",
            ),
            Result(
                bench, "baseline: SQL bucketing alone", points, sql_s, f"{sql_names[bench]}, warm connection"
            ),
        ]
        load = ""
    return out


# -- 3. realtime under load ---------------------------------------------------------------------------


def _skipped(case: str, reason: str) -> Result:
    return Result(_REALTIME, case, 1, float("nan"), f"skipped: {reason}")


def _realtime_rows() -> list[Result]:
    if shutil.which("wrk") is None:
        return [_skipped("all", "wrk is not installed (scripts/install-system-deps.sh installs it)")]
    port = loadgen.free_port()
    base = f"http://127.0.0.1:{port}"
    server, log = loadgen.daphne_start(port, env=loadgen.server_env())
    runs: dict[str, list[dict]] = {}
    skipped: dict[str, str] = {}
    stopped: float | None = None
    try:
        loadgen.wait_until(
            "daphne live",
            lambda: loadgen.http(base + "/api/v2/health/live", timeout=2)[0] == 200,
            timeout=60,
            alive=loadgen.exited(server, "daphne", log),
        )
        load = load_note()
        for case, path in REALTIME_PATHS:
            status, body = loadgen.http(base + path)
            if status != 200:
                skipped[case] = f"GET {path} answered {status}: {body[:200]!r}"
        # Rounds in alternating order: a drift of the shared machine's load hits every case alike.
        for round_ in range(WRK_ROUNDS):
            order = REALTIME_PATHS if round_ % 2 == 0 else REALTIME_PATHS[::-1]
            for case, path in order:
                if case in skipped:
                    continue
                try:
                    runs.setdefault(case, []).append(
                        loadgen.wrk_run(base + path, connections=WRK_CONNECTIONS, seconds=WRK_SECONDS)
                    )
                except loadgen.WrkFailed as exc:
                    skipped[case] = str(exc)
        # Let the requests wrk left in flight finish: a SIGTERM with requests in flight leaves
        # daphne's request threads waiting on its stopped event loop (the process never exits).
        time.sleep(1.0)
        stopped = loadgen.process_stop(server)
    finally:
        if server.poll() is None:
            loadgen.process_stop(server)
    out = []
    baseline = None
    for case, _ in REALTIME_PATHS:
        if case in skipped:
            out.append(_skipped(case, skipped[case]))
            continue
        stats = runs[case]
        p50 = statistics.mean(s["p50"] for s in stats)
        p99 = max(s["p99"] for s in stats)
        requests = sum(s["requests"] for s in stats)
        non_2xx = sum(s["non_2xx"] for s in stats)
        socket_errors = sum(s["socket_errors"] for s in stats)
        rps = statistics.mean(s["rps"] for s in stats)
        if baseline is None:
            baseline, ratio = p50, "the baseline"
        else:
            ratio = f"{p50 / baseline:.2f}x the baseline's p50"
        out.append(
            Result(
                _REALTIME,
                case,
                1,
                p50,
                f"p50 (mean of {len(stats)} x {WRK_SECONDS} s); p99 {p99 * 1e3:.1f} ms (worst); "
                f"{rps:,.0f} req/s; {requests:,} requests, errors: {non_2xx} non-2xx, {socket_errors} "
                f"socket; {ratio} {load}",
                rate=rps,
            )
        )
        load = ""
    if stopped is None:
        out.append(
            _skipped(
                "server stop",
                f"daphne did not exit within {loadgen.STOP_TIMEOUT_S:.0f} s of SIGTERM (killed); see {log}",
            )
        )
    else:
        os.unlink(log)
    return out


def run() -> list[Result]:
    _configure()
    return [*_chain_rows(), *_history_rows(), *_realtime_rows()]


if __name__ == "__main__":  # pragma: no cover
    for result in run():
        print(result)
