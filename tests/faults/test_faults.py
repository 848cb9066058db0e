"""Faults (SPEC §14, issue 12 item 2): while the simulator publishes, one process or backing service
at a time is killed or stopped, then restarted, and what was published is counted against what
was stored.

One topology (tests/faults/topology.py) on a private PostgreSQL and a private Redis serves the
whole module; the tests run in file order, each fault after the previous one has recovered, and
the last one stops every process with SIGTERM. Each test's docstring says what "published" means
for its count. Figures of each run are written to FAULTS_REPORT (default /tmp/faults/fault-rows.json).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from tests.faults.counts import (
    acked_frontier,
    bars_check,
    duplicate_rows,
    greeks_minutes,
    last_position,
    position,
)
from tests.faults.topology import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("faults")]

CHAIN_TASK = "greeks.tasks.chain_compute"
OUTCOMES = {"task-succeeded", "task-failed", "task-revoked"}
SCHEDULE_TASK = "greeks.tasks.schedule_chains"
REPORT = Path(os.environ.get("FAULTS_REPORT", "/tmp/faults/fault-rows.json"))
_rows: dict[str, dict] = {}


def record(fault: str, **figures) -> None:
    _rows[fault] = figures
    try:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(_rows, indent=2, default=str))
    except OSError:
        pass  # the figures are also in the assertion messages; the report file is a convenience


class PgReader:
    """Reads of the private database by the test; ``reset()`` after the database was restarted."""

    def __init__(self, private_pg) -> None:
        from tests.faults.conftest import DATABASE

        self._connect = lambda: private_pg.connect(DATABASE)
        self.conn = self._connect()

    def cursor(self):
        if self.conn.closed or self.conn.broken:
            self.conn = self._connect()
        return self.conn.cursor()

    def reset(self) -> None:
        self.conn.close()
        self.conn = self._connect()


@pytest.fixture(scope="module")
def pg(private_pg):
    reader = PgReader(private_pg)
    yield reader
    reader.conn.close()


@pytest.fixture(scope="module")
def rds(private_redis):
    return private_redis.client()


def bars_caught_up(topology, rds, pg, *, past: int, timeout: float) -> tuple[float, object]:
    """Wait until the ingest group has acknowledged every entry up to stream position ``past``,
    then check every bar against the stream. Returns (seconds waited, report)."""
    started = time.monotonic()
    wait_for(
        "ingest acknowledged the stream up to the fault's last entry",
        lambda: acked_frontier(rds) >= past,
        timeout,
        0.25,
        detail=lambda: (
            f"frontier {acked_frontier(rds)} < {past}; ingest log: {topology['ingest'].log_tail(1500)}"
        ),
    )
    waited = time.monotonic() - started
    report = bars_check(rds, pg)
    assert report.ok(), report.describe()
    return waited, report


def chain_outcomes(
    topology, *, sent_after: float, sent_before: float, timeout: float, require_sent: bool = True
) -> dict:
    """Every chain task sent in the window, once each has an outcome: succeeded, failed, or
    revoked (expired). Returns counts and the uuids of each kind."""
    events = topology.events

    def unsettled(tasks):
        return {u: sorted(t) for u, t in tasks.items() if not OUTCOMES & t.keys()}

    def settled():
        if not events.caught_up(sent_before):
            return None
        tasks = events.tasks(CHAIN_TASK, sent_after=sent_after, sent_before=sent_before)
        return (tasks,) if not unsettled(tasks) else None

    def pending_detail():
        tasks = events.tasks(CHAIN_TASK, sent_after=sent_after, sent_before=sent_before)
        open_ = unsettled(tasks)
        return f"{len(open_)} of {len(tasks)} chain tasks without an outcome (events seen): {list(open_.items())[:5]}"

    (tasks,) = wait_for(
        "every chain task sent in the window has an outcome", settled, timeout, 0.5, detail=pending_detail
    )
    if not tasks and require_sent:
        seen = Counter((e.type, e.name) for e in events.snapshot() if sent_after <= e.at < sent_before)
        raise AssertionError(f"no chain task sent in the window; events received in it: {dict(seen)}")
    succeeded = {u for u, t in tasks.items() if "task-succeeded" in t}
    return {
        "sent": len(tasks),
        "succeeded": len(succeeded),
        "failed": sorted(u for u, t in tasks.items() if "task-failed" in t and u not in succeeded),
        "expired": sorted(u for u, t in tasks.items() if "task-revoked" in t and u not in succeeded),
        "ran_twice": sorted(u for u, t in tasks.items() if len(t.get("task-succeeded", [])) > 1),
        "tasks": tasks,
    }


def greeks_rows_follow_computations(topology, pg, *, since: float, until: float) -> int:
    """Every minute in which a chain computation of an underlying succeeded (a task-succeeded
    event more than 3 s from the minute's edges, so the minute is unambiguous) has that
    underlying's Greeks rows. Returns how many (underlying, minute) pairs were checked."""
    rows = greeks_minutes(pg)
    events = topology.events.snapshot()
    args_of = {e.uuid: e.args for e in events if e.type == "task-sent" and e.name == CHAIN_TASK}
    wanted = set()
    for e in events:
        if e.type != "task-succeeded" or e.uuid not in args_of or not since <= e.at <= until:
            continue
        if 3 < e.at % 60 < 57:
            underlying = args_of[e.uuid].strip("[]()',\" ")
            wanted.add((underlying, dt.datetime.fromtimestamp(e.at // 60 * 60, tz=dt.UTC)))
    missing = sorted(w for w in wanted if not rows.get(w))
    assert not missing, f"minutes with a successful computation but no Greeks rows: {missing[:10]}"
    return len(wanted)


class ReadySampler:
    """Polls /health/ready every 0.25 s in a thread: (time, status or None if no answer)."""

    def __init__(self, topology) -> None:
        self.topology = topology
        self.samples: list[tuple[float, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self.topology.ready_status()))
            self._stop.wait(0.25)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def between(self, start: float, end: float) -> list[int | None]:
        return [s for t, s in self.samples if start <= t <= end]


def test_topology_comes_up_and_computes(topology, rds, pg):
    """The baseline: bars are stored exactly as the stream implies, and chains are computed."""
    wait_for(
        "chain computations", lambda: any(e.type == "task-succeeded" for e in topology.events.snapshot()), 60
    )
    bars_caught_up(topology, rds, pg, past=last_position(rds), timeout=30)
    topology.assert_all_alive()


def test_ingest_sigkill_mid_batch_loses_and_doubles_no_bar(topology, rds, pg):
    """SIGKILL of the ingest consumer while it holds a batch it has read and not acknowledged,
    restart after 3 s under the same consumer name.

    Published = every entry the simulator XADDed to the stream up to the moment the restarted
    ingest had caught up (its acknowledged frontier passed the last entry published before the
    restart). Stored = the 1-minute bars in PostgreSQL. Every bar equals exactly the ticks of the
    stream up to its ``source_seq`` (nothing doubled), and every acknowledged entry is in its bar
    (nothing lost)."""
    ingest = topology["ingest"]
    # Kill it with a batch in hand: read (pending in the group) and not yet acknowledged.
    in_hand = wait_for(
        "ingest holding a batch",
        lambda: (p := rds.xpending("md:ticks", "ingest")["pending"]) > 0 and p,
        30,
        0.002,
    )
    ingest.kill()
    killed_at = time.monotonic()
    pending_after_kill = rds.xpending("md:ticks", "ingest")["pending"]
    kill_position = last_position(rds)
    time.sleep(3)  # the outage: the simulator keeps publishing into the stream
    restart_position = last_position(rds)
    ingest.start()
    restarted = time.monotonic()
    waited, report = bars_caught_up(topology, rds, pg, past=restart_position, timeout=45)
    assert acked_frontier(rds) >= restart_position
    assert duplicate_rows(pg)["market_bar_1m"] == 0
    topology.assert_all_alive()
    published_during = sum(
        1 for _ in rds.xrange("md:ticks", min=_id(kill_position + 1), max=_id(restart_position))
    )
    record(
        "ingest",
        killed="ingest (SIGKILL, mid-batch)",
        outage_s=round(restarted - killed_at, 1),
        pending_at_kill=pending_after_kill or in_hand,
        published_while_down=published_during,
        stream_entries=report.entries,
        acknowledged_checked=report.covered,
        bars=report.bars,
        wrong_bars=len(report.doubled_or_wrong),
        missing_ticks=len(report.missing),
        recovery_s=round(waited, 1),
    )


def _id(pos: int) -> str:
    return f"{pos // 1_000_000}-{pos % 1_000_000}"


def _in_hand(rds, queues: set[str]) -> dict[str, str]:
    """Task id -> queue of the messages delivered from ``queues`` and not acknowledged (kombu's
    ``unacked`` hash): what a worker consuming them has running or reserved."""
    held = {}
    for raw in rds.hvals("unacked"):
        payload, _exchange, routing_key = json.loads(raw)
        if routing_key in queues:
            held[payload["headers"]["id"]] = routing_key
    return held


def test_worker_sigkill_mid_task_every_chain_task_runs(topology, rds, pg):
    """SIGKILL of the farm worker that is computing a chain, while it computes it (the chain's
    ``greeks:running`` mark is set and its message is unacknowledged), then an immediate restart
    under the same worker name (what a supervisor does).

    Published = every ``chain_compute`` task whose ``task-sent`` event was received from 2 s
    before the kill to 5 s after the restart (the ingest's live cadence sends one per underlying
    per second), the task in hand included. Each must succeed (counted by task id), on either
    worker; none may fail or expire. Rows: every minute with a successful computation has its
    Greeks rows, and no table has two rows under one key."""
    from signalsvc.farm.live import RUNNING_PREFIX
    from signalsvc.farm.routing import greeks_queue

    events = topology.events
    window_start = time.time()
    underlyings = ["NSE@NIFTY@equity_spot", "NSE@BANKNIFTY@equity_spot"]

    def computing():
        running = [u for u in underlyings if rds.exists(RUNNING_PREFIX + u)]
        if not running:
            return None
        queue = greeks_queue(running[0], 4)
        for name, raw in rds.hgetall("farm:workers").items():
            info = json.loads(raw)
            if queue in info.get("queues", []) and name.split("@")[0] in topology.WORKERS:
                held = _in_hand(rds, set(info["queues"]))
                if held:
                    return name.split("@")[0], info, held
        return None

    name, info, _ = wait_for("a worker computing a chain", computing, 30, 0.001)
    victim = topology[name]
    victim.kill()
    killed_at = time.time()
    in_hand = _in_hand(rds, set(info["queues"]))  # after the kill: exactly what died with it
    assert in_hand, "the worker was killed between tasks; the test wants one in hand"
    victim.start()
    restarted_at = time.time()
    wait_for("a chain task succeeding after the restart", lambda: any(
        e.type == "task-succeeded" and e.at > restarted_at for e in events.snapshot()), 30)  # fmt: skip
    time.sleep(5)  # the window's end: tasks sent in the first seconds after the restart count too
    window_end = time.time()
    outcome = chain_outcomes(topology, sent_after=window_start - 2, sent_before=window_end, timeout=60)
    detail = {k: v for k, v in outcome.items() if k != "tasks"}
    assert outcome["failed"] == [] and outcome["expired"] == [], detail
    assert outcome["succeeded"] == outcome["sent"], detail
    reruns = {}
    for uuid in in_hand:
        done = [e for e in events.snapshot() if e.uuid == uuid and e.type == "task-succeeded"]
        assert done, f"task {uuid}, in hand at the kill, never succeeded"
        reruns[uuid] = done[0]
    assert set(in_hand) <= set(outcome["tasks"])
    checked = greeks_rows_follow_computations(topology, pg, since=window_start, until=window_end)
    assert set(duplicate_rows(pg).values()) == {0}
    topology.assert_all_alive()
    record(
        "worker",
        killed=f"{victim.name} (SIGKILL, mid-task: {len(in_hand)} task(s) in hand)",
        restarted_after_s=round(restarted_at - killed_at, 1),
        chain_tasks_sent=outcome["sent"],
        succeeded=outcome["succeeded"],
        failed=len(outcome["failed"]),
        expired=len(outcome["expired"]),
        ran_twice=len(outcome["ran_twice"]),
        in_hand_rerun_on=sorted({e.hostname for e in reruns.values()}),
        in_hand_rerun_after_s=round(max(e.at for e in reruns.values()) - killed_at, 1),
        greeks_minutes_checked=checked,
    )


def test_beat_sigkill_schedule_resumes_once_per_minute(topology, rds, pg):
    """SIGKILL of beat, immediate restart; the next minute's ``schedule_chains`` is sent.

    Published = the minute schedule: one ``schedule_chains`` per minute boundary since the
    topology started (crontab, expiry 50 s). Counted = its ``task-sent`` events per minute: exactly
    one each (the database scheduler kept its last run, so the restart neither skipped nor
    repeated a minute), each run; and the chain rows it leads to are not duplicated."""
    beat = topology["beat"]
    events = topology.events
    beat.kill()
    killed_at = time.time()
    beat.start()
    restarted_at = time.time()
    sent = wait_for(
        "schedule_chains sent by the restarted beat",
        lambda: [
            e
            for e in events.snapshot()
            if e.type == "task-sent" and e.name == SCHEDULE_TASK and e.at > restarted_at
        ],
        75,
        0.5,
        detail=lambda: beat.log_tail(1500),
    )
    per_minute = Counter(
        int(e.at // 60) for e in events.snapshot() if e.type == "task-sent" and e.name == SCHEDULE_TASK
    )
    assert set(per_minute.values()) == {1}, per_minute
    minutes = sorted(per_minute)
    assert minutes == list(range(minutes[0], minutes[-1] + 1)), f"a minute without its schedule: {minutes}"
    uuids = {e.uuid for e in events.snapshot() if e.type == "task-sent" and e.name == SCHEDULE_TASK}
    wait_for("every schedule_chains ran", lambda: uuids <= {
        e.uuid for e in events.snapshot() if e.type == "task-succeeded"}, 30)  # fmt: skip
    assert set(duplicate_rows(pg).values()) == {0}
    topology.assert_all_alive()
    record(
        "beat",
        killed="beat (SIGKILL)",
        restarted_after_s=round(restarted_at - killed_at, 1),
        minutes_scheduled=len(per_minute),
        schedule_sends_per_minute=sorted(set(per_minute.values())),
        first_send_after_restart_s=round(sent[0].at - restarted_at, 1),
    )


def _rest_ok(topology) -> bool:
    try:
        r = requests.get(f"{topology.rest}/api/v2/signals/realtime/moneyness/NIFTY/atm-iv", timeout=5)
        return r.status_code == 200 and r.json()["underlying"] == "NIFTY"
    except (requests.RequestException, ValueError, KeyError):
        return False


def test_web_worker_and_master_sigkill_rest_answers_again(topology, rds, pg):
    """SIGKILL of one granian worker (the master replaces it), then of the master itself, and the
    web process restarted as a supervisor restarts it: a granian worker outlives its master, so the
    supervisor ends what is left of the process (compose and Kubernetes end the container, systemd
    the unit's cgroup, honcho the process group), here its process group, then starts it again.

    Counted: REST answers 200 with the right body after each, the worker count is back to
    WEB_WORKERS, and nothing stored was corrupted (bars still equal the stream; no duplicate rows)."""
    web = topology["web"]
    assert _rest_ok(topology)
    victim = web.children()[0]
    victim.kill()
    worker_killed_at = time.monotonic()
    wait_for("granian replaced its worker", lambda: len(web.children()) == 2 and victim.pid not in {
        c.pid for c in web.children()}, 30)  # fmt: skip
    wait_for("REST after the worker kill", lambda: _rest_ok(topology), 30)
    worker_recovery = time.monotonic() - worker_killed_at

    orphans = web.children()
    web.kill()
    master_killed_at = time.monotonic()

    # The supervisor ends the rest of the process: SIGTERM, then SIGKILL after a grace period. A
    # granian worker whose master was killed does not get through its own shutdown on SIGTERM
    # (seen here), so it is the SIGKILL that ends it; nothing it held is lost (checked below).
    def left() -> list:
        return [p for p in orphans if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    os.killpg(web.pid, signal.SIGTERM)
    try:
        wait_for("the killed master's workers exit on SIGTERM", lambda: not left(), 5)
        needed_sigkill = False
    except AssertionError:
        needed_sigkill = True
        os.killpg(web.pid, signal.SIGKILL)
        wait_for("the killed master's workers exit on SIGKILL", lambda: not left(), 10)
    orphans_gone = time.monotonic() - master_killed_at
    web.start()
    wait_for(
        "REST after the master's restart", lambda: _rest_ok(topology), 60, detail=lambda: web.log_tail(2000)
    )
    master_recovery = time.monotonic() - master_killed_at
    assert topology.ready_status() == 200
    _, report = bars_caught_up(topology, rds, pg, past=last_position(rds), timeout=30)
    assert set(duplicate_rows(pg).values()) == {0}
    topology.assert_all_alive()
    record(
        "web",
        killed="granian worker, then master (SIGKILL)",
        worker_recovery_s=round(worker_recovery, 1),
        orphans_exit_s=round(orphans_gone, 1),
        orphans_needed_sigkill=needed_sigkill,
        master_recovery_s=round(master_recovery, 1),
        bars_checked=report.bars,
    )


@dataclass
class Outage:
    down_at: float  # just before the stop
    up_at: float  # just after the start
    ready_again: float  # seconds from the start to readiness 200
    during: list[int | None]  # readiness samples taken while it was down


def _outage(topology, *, stop, start, seconds: float, before_start=lambda: None) -> Outage:
    """Stop a dependency for ``seconds`` while readiness is sampled (``before_start`` runs at the end
    of the outage), start it again and wait for readiness 200. Every sample taken while it was down
    must be 503."""
    with ReadySampler(topology) as ready:
        down_at = time.time()
        stop()
        stopped = time.time()
        time.sleep(seconds)
        before_start()
        up_begin = time.time()
        start()
        up_at = time.time()
        wait_for("readiness 200 after the restart", lambda: topology.ready_status() == 200, 60)
        ready_again = time.time() - up_at
    during = _outage_window_samples(ready, stopped, up_begin)
    assert during and set(during) == {503}, Counter(during)
    return Outage(down_at, up_at, ready_again, during)


def _outage_window_samples(ready: ReadySampler, down_at: float, up_at: float) -> list[int | None]:
    # Half a second of margin at each end: a request in flight at the edge may see either state.
    return ready.between(down_at + 0.5, up_at - 0.5)


def _chain_succeeds_after(topology, moment: float, timeout: float) -> float:
    found = wait_for(
        "a chain computation succeeding after the outage",
        lambda: [e for e in topology.events.snapshot() if e.type == "task-succeeded" and e.at > moment
                 and e.hostname and e.hostname.split("@")[0] in topology.WORKERS],
        timeout,
        0.25,
        detail=lambda: {n: topology[n].log_tail(800) for n in topology.WORKERS},
    )  # fmt: skip
    return found[0].at


def test_postgres_outage_readiness_and_recovery(topology, rds, pg, private_pg):
    """PostgreSQL stopped (``pg_ctl stop -m fast``) for 12 s while the simulator publishes, then
    started; no process is restarted by the test.

    Published = every entry XADDed to the stream up to the moment PostgreSQL came back (those of
    the outage included: the stream holds them, unacknowledged, until the ingest can commit them).
    Stored = bars, checked exactly against the stream. Readiness: every sample taken while the
    database was down answered 503, and it answers 200 again after. Greeks: the chain tasks sent
    from 3 s after the restart all succeed, and their minutes have rows."""
    starts = {n: p.starts for n, p in topology.procs.items()}
    assert topology.ready_status() == 200
    end_of_outage: list[int] = []
    outage = _outage(
        topology,
        stop=lambda: private_pg.stop("fast"),
        start=private_pg.start,
        seconds=12,
        before_start=lambda: end_of_outage.append(last_position(rds)),
    )
    down_at, up_at, ready_again, during = outage.down_at, outage.up_at, outage.ready_again, outage.during
    (published_down,) = end_of_outage
    pg.reset()
    waited, report = bars_caught_up(topology, rds, pg, past=published_down, timeout=60)
    first = _chain_succeeds_after(topology, up_at, 60)
    time.sleep(5)
    outcome = chain_outcomes(topology, sent_after=up_at + 3, sent_before=time.time(), timeout=60)
    detail = {k: v for k, v in outcome.items() if k != "tasks"}
    assert outcome["sent"] > 0 and outcome["succeeded"] == outcome["sent"], detail
    down_tasks = chain_outcomes(
        topology, sent_after=down_at, sent_before=up_at, timeout=60, require_sent=False
    )
    assert _rest_ok(topology)
    assert set(duplicate_rows(pg).values()) == {0}
    checked = greeks_rows_follow_computations(topology, pg, since=up_at, until=time.time())
    topology.assert_all_alive()
    assert {n: p.starts for n, p in topology.procs.items()} == starts  # nobody was restarted
    published_during = sum(
        1 for _ in rds.xrange("md:ticks", min=_id(position_at(rds, down_at)), max=_id(published_down))
    )
    record(
        "postgres",
        stopped="PostgreSQL (pg_ctl stop -m fast)",
        outage_s=round(up_at - down_at, 1),
        ready_during=dict(Counter(during)),
        ready_200_after_s=round(ready_again, 1),
        published_while_down=published_during,
        stream_entries=report.entries,
        bars=report.bars,
        wrong_bars=len(report.doubled_or_wrong),
        missing_ticks=len(report.missing),
        bars_caught_up_after_s=round(waited, 1),
        first_chain_after_s=round(first - up_at, 1),
        chain_tasks_during_outage={"sent": down_tasks["sent"], "succeeded": down_tasks["succeeded"],
                                   "failed": len(down_tasks["failed"]), "expired": len(down_tasks["expired"])},
        chain_tasks_after={"sent": outcome["sent"], "succeeded": outcome["succeeded"]},
        greeks_minutes_checked=checked,
    )  # fmt: skip


def position_at(rds, moment: float) -> int:
    """The stream position of the first entry added at or after ``moment`` (epoch seconds)."""
    return int(moment * 1000) * 1_000_000


def test_redis_outage_no_acknowledged_tick_lost_and_websocket_resumes(topology, rds, pg, private_redis):
    """Redis shut down cleanly (``SHUTDOWN``: the AOF is written and fsynced) for 10 s, then started
    from its AOF; no process is restarted by the test.

    Published = the ticks whose XADD was acknowledged: writes are paused (``CLIENT PAUSE WRITE``)
    and the stream's ids read, then the server shut down, so a write that got an id is in that
    list and a paused one never got an answer. After the restart the stream holds exactly those
    ids (none lost), and the ingest puts every one of them, and all published after, into bars.
    Readiness: 503 throughout the outage, 200 after. Every process recovers by itself (the
    simulator, whose publishing fails meanwhile, included). The WebSocket client (the seed's NIFTY
    ATM moneyness subscription) keeps or re-opens its connection and receives new data after."""
    from tests.faults.wsclient import ReconnectingClient

    starts = {n: p.starts for n, p in topology.procs.items()}
    client = ReconnectingClient(topology.ws_url)
    client.start()
    try:
        wait_for("WebSocket updates before the outage", lambda: len(client.data_after(0)) >= 2, 30,
                 detail=lambda: client.types()[:10])  # fmt: skip
        assert topology.ready_status() == 200
        rds.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
        acked = [entry_id for entry_id, _ in rds.xrange("md:ticks")]
        outage = _outage(topology, stop=private_redis.shutdown, start=private_redis.start, seconds=10)
        down_at, up_at, ready_again, during = outage.down_at, outage.up_at, outage.ready_again, outage.during
        kept = [entry_id for entry_id, _ in rds.xrange("md:ticks", max=acked[-1])]
        assert kept == acked, f"{len(set(acked) - set(kept))} acknowledged ticks lost"
        wait_for("the simulator publishing again", lambda: last_position(rds) > position(acked[-1]), 30,
                 detail=lambda: topology["simulator"].log_tail(2000))  # fmt: skip
        since_restart = last_position(rds)
        waited, report = bars_caught_up(topology, rds, pg, past=since_restart, timeout=60)
        first = _chain_succeeds_after(topology, up_at, 60)
        wait_for("WebSocket data after Redis returned", lambda: client.data_after(up_at), 45,
                           detail=lambda: f"connections {client.connections}, closes {client.closes}; "
                                          f"ws log: {topology['ws'].log_tail(2000)}")  # fmt: skip
        updated_after = updates_time(client, up_at) - up_at
        time.sleep(3)
        outcome = chain_outcomes(topology, sent_after=up_at + 3, sent_before=time.time(), timeout=60)
        detail = {k: v for k, v in outcome.items() if k != "tasks"}
        assert outcome["sent"] > 0 and outcome["succeeded"] == outcome["sent"], detail
        assert _rest_ok(topology)
        assert set(duplicate_rows(pg).values()) == {0}
        topology.assert_all_alive()
        assert {n: p.starts for n, p in topology.procs.items()} == starts  # nobody was restarted
    finally:
        client.stop()
    record(
        "redis",
        stopped=f"Redis (SHUTDOWN, AOF appendfsync {private_redis.appendfsync})",
        outage_s=round(up_at - down_at, 1),
        ready_during=dict(Counter(during)),
        ready_200_after_s=round(ready_again, 1),
        acknowledged_ticks=len(acked),
        acknowledged_ticks_lost=len(set(acked) - set(kept)),
        stream_entries=report.entries,
        bars=report.bars,
        wrong_bars=len(report.doubled_or_wrong),
        missing_ticks=len(report.missing),
        bars_caught_up_after_s=round(waited, 1),
        first_chain_after_s=round(first - up_at, 1),
        websocket_connections=len(client.connections),
        websocket_closes=client.closes,
        websocket_first_update_after_s=round(updated_after, 1),
        chain_tasks_after={"sent": outcome["sent"], "succeeded": outcome["succeeded"]},
    )


def updates_time(client, moment: float) -> float:
    return next(t for t, m in list(client.messages) if t > moment and m.get("type") == "data")


# Grace periods: compose.yaml's stop_grace_period of each service (the simulator is not in compose:
# honcho's 5 s, doubled for this loaded machine).
GRACE = {"simulator": 10, "ingest": 60, "beat": 30, "web": 30, "ws": 30, "worker-1": 120, "worker-2": 120}


def test_sigterm_every_process_drains_and_exits_zero(topology, rds, pg):
    """SIGTERM to each process in turn; each must exit 0 within its grace period (GRACE):

    * the worker computing a chain finishes it (the task in hand at the signal succeeds on that
      worker and is not redelivered), then leaves the farm;
    * beat, and the simulator, stop;
    * ingest, after the simulator stopped, finishes its batch: the stream is then fully
      acknowledged and every bar equals the whole stream's ticks exactly;
    * granian finishes its requests (WEB_GRACEFUL_TIMEOUT, 25 s);
    * uvicorn sends each WebSocket client a ``closing`` message, then closes with 1012.
    """
    from signalsvc.farm.live import RUNNING_PREFIX
    from tests.faults.wsclient import ReconnectingClient

    client = ReconnectingClient(topology.ws_url)
    client.start()
    results: dict[str, tuple] = {}
    try:
        wait_for("WebSocket updates", lambda: client.data_after(0), 30)
        # A worker with a chain in hand: its running mark is set and it holds an unacked message.
        underlyings = ["NSE@NIFTY@equity_spot", "NSE@BANKNIFTY@equity_spot"]

        def computing():
            if not any(rds.exists(RUNNING_PREFIX + u) for u in underlyings):
                return None
            for name, raw in rds.hgetall("farm:workers").items():
                info = json.loads(raw)
                held = _in_hand(rds, set(info.get("queues", [])))
                if held and info.get("busy") is not None and name.split("@")[0] in topology.WORKERS:
                    return name.split("@")[0], held
            return None

        first, held = wait_for("a worker computing a chain", computing, 30, 0.001)
        order = [
            first,
            *[w for w in topology.WORKERS if w != first],
            "beat",
            "simulator",
            "ingest",
            "web",
            "ws",
        ]
        for name in order:
            code, seconds = topology[name].terminate(GRACE[name])
            results[name] = (code, round(seconds, 1))
            if name == first:
                for uuid in held:
                    runs = wait_for(f"{uuid}, in hand at SIGTERM, reported finished", lambda uuid=uuid: [
                        e for e in topology.events.snapshot() if e.uuid == uuid and e.type == "task-succeeded"], 15)  # fmt: skip
                    assert {e.hostname.split("@")[0] for e in runs} == {first}, runs
            if name == "ingest":
                assert acked_frontier(rds) == last_position(rds), "stream not fully acknowledged"
                assert rds.xpending("md:ticks", "ingest")["pending"] == 0
                report = bars_check(rds, pg)
                assert report.ok() and report.covered == report.entries, report.describe()
                results["ingest_bars"] = (report.entries, report.bars)
        # The client's thread reads what the server sent before it exited.
        wait_for("the WebSocket client saw the close", lambda: client.closes, 10, detail=client.types)
        closing = [m for _, m in client.messages if m.get("type") == "closing"]
    finally:
        client.stop()
    bad = {n: r for n, r in results.items() if n in GRACE and r[0] != 0}
    assert not bad, {n: (r, topology[n].log_tail(1500)) for n, r in bad.items()}
    assert closing, client.types()[-5:]
    assert client.closes and client.closes[0][1] == 1012, client.closes
    record(
        "sigterm",
        exits={
            n: {"code": r[0], "seconds": r[1], "grace_s": GRACE[n]} for n, r in results.items() if n in GRACE
        },
        worker_task_in_hand=len(held),
        final_stream_entries=results["ingest_bars"][0],
        final_bars=results["ingest_bars"][1],
        websocket_close_code=client.closes[0][1],
    )
