"""Shard ownership: the coordinator's reconcile against real Redis, and real workers under a kill."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis as redis_lib
from django.conf import settings

from signalsvc.farm.ownership import (
    COORDINATOR_KEY,
    WORKERS_KEY,
    Coordinator,
    owners_read,
    unacked_restore,
    workers_read,
)
from signalsvc.farm.queues import UNACKED_KEY
from signalsvc.farm.routing import shard_queue
from tests.conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[2]


class RecordingControl:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def add_consumer(self, queue, destination, reply):
        self.sent.append(("add", destination[0], queue))

    def cancel_consumer(self, queue, destination, reply):
        self.sent.append(("cancel", destination[0], queue))


@pytest.fixture
def broker(redis_client):
    """The broker's Redis, bytes in and out (as the workers write it)."""
    return redis_lib.Redis.from_url(settings.CELERY_BROKER_URL)


def _heartbeat(client, name, *, seen, queues=(), stolen=(), tags=()):
    info = {
        "seen": seen,
        "queues": list(queues),
        "stolen": list(stolen),
        "busy": bool(tags),
        "tags": list(tags),
    }
    client.hset(WORKERS_KEY, name, json.dumps(info))


def test_reconcile_sends_each_worker_what_it_lacks_and_cancels_what_it_should_not_have(broker):
    now = time.time()
    _heartbeat(broker, "a@h", seen=now, queues=[shard_queue(s) for s in range(8)])
    _heartbeat(broker, "b@h", seen=now)
    control = RecordingControl()

    assignment = Coordinator(broker, control, shard_count=8, ttl=5).reconcile(now=now)

    assert Counter(assignment.values()) == {"a@h": 4, "b@h": 4}
    assert owners_read(broker) == assignment
    adds = {(w, q) for action, w, q in control.sent if action == "add"}
    cancels = {(w, q) for action, w, q in control.sent if action == "cancel"}
    assert adds == {("b@h", shard_queue(s)) for s, w in assignment.items() if w == "b@h"}
    assert cancels == {("a@h", shard_queue(s)) for s, w in assignment.items() if w == "b@h"}


def test_reconcile_leaves_a_thief_its_stolen_shard_and_does_not_resend_within_the_resend_delay(broker):
    now = time.time()
    coordinator = Coordinator(broker, control := RecordingControl(), shard_count=4, ttl=5)
    _heartbeat(broker, "a@h", seen=now)
    _heartbeat(broker, "b@h", seen=now)
    assignment = coordinator.reconcile(now=now)
    first = list(control.sent)
    a_shard = next(s for s, w in assignment.items() if w == "a@h")
    # b consumes a's shard as a thief, and everything it was told to take.
    b_queues = [shard_queue(s) for s, w in assignment.items() if w == "b@h"]
    _heartbeat(
        broker, "b@h", seen=now + 1, queues=[*b_queues, shard_queue(a_shard)], stolen=[shard_queue(a_shard)]
    )

    control.sent.clear()
    coordinator.reconcile(now=now + 1)

    assert len(first) == 4  # every shard added once
    assert ("cancel", "b@h", shard_queue(a_shard)) not in control.sent
    assert control.sent == []  # a's adds were sent 1 s ago: not again yet


def test_a_silent_worker_loses_its_shards_and_its_held_tasks_go_back_to_the_head_of_their_queue(broker):
    now = time.time()
    queue = shard_queue(3)
    message = {"body": "e30=", "headers": {"id": "t-1", "task": "x"}, "properties": {"delivery_info": {}}}
    broker.hset(UNACKED_KEY, "tag-1", json.dumps([message, "default", queue]))
    broker.zadd("unacked_index", {"tag-1": now - 10})
    broker.lpush(queue, b"newer")  # queued after the held task: it must stay behind it
    _heartbeat(broker, "dead@h", seen=now - 6, queues=[queue], tags=["tag-1"])
    _heartbeat(broker, "live@h", seen=now)

    assignment = Coordinator(broker, RecordingControl(), shard_count=4, ttl=5).reconcile(now=now)

    assert set(assignment.values()) == {"live@h"}
    assert broker.hget(UNACKED_KEY, "tag-1") is None
    assert broker.zscore("unacked_index", "tag-1") is None
    head = json.loads(broker.lindex(queue, -1))  # BRPOP takes from the right: next to run
    assert head["headers"]["id"] == "t-1" and head["headers"]["redelivered"] is True
    assert json.loads(broker.hget(WORKERS_KEY, "dead@h"))["reaped"] is True
    assert list(workers_read(broker, ttl=5, now=now)) == ["live@h"]


def test_restoring_an_already_acknowledged_task_does_nothing(broker):
    assert unacked_restore(broker, ["gone"]) == 0


# --- real workers ---------------------------------------------------------------------------------

WORKERS = 3
SHARDS_USED = [0, 5, 9, 17, 23, 31, 40, 47, 52, 63]


def _start_worker(name: str, log_dir: Path, *, steal_after: float = 600) -> subprocess.Popen:
    # Stealing trades a shard's order for its latency (docs/farm.md), so the order test turns it
    # off; the stealing test turns it on.
    env = subprocess_env(
        SHARD_COUNT="64", DJANGO_SETTINGS_MODULE="signalsvc.settings", STEAL_AFTER_SECONDS=str(steal_after)
    )
    log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"), "-A", "tests.farm.farm_app", "worker", "-l", "info",
            "-n", f"{name}@farmtest", "--farm", "-Q", "default", "--pool", "solo",
            "--without-gossip", "--without-mingle",
        ],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _owned_by_live(broker, names: set[str]) -> bool:
    """Every shard consumed, now, by exactly one of ``names`` (as the workers report it)."""
    live = workers_read(broker, ttl=settings.FARM_WORKER_TTL_SECONDS)
    consumers = Counter(q for name, info in live.items() if name in names for q in info["queues"])
    return len(consumers) == 64 and set(consumers.values()) == {1}


def _wait(predicate, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"not true within {timeout} s")


@pytest.mark.slow
def test_three_workers_own_every_shard_once_and_a_killed_worker_loses_no_task(broker, tmp_path):
    from tests.farm.farm_app import done_key, record

    names = {f"farm{i}" for i in range(WORKERS)}
    nodes = {n: f"{n}@farmtest" for n in names}
    procs = {n: _start_worker(n, tmp_path) for n in names}
    try:
        _wait(lambda: _owned_by_live(broker, set(nodes.values())), timeout=60)
        # Celery itself agrees: each greeks queue has exactly one consumer (asked until every
        # worker has answered; on a busy machine a reply can miss the inspect timeout).
        from tests.farm.farm_app import app

        def celery_agrees() -> bool:
            active = app.control.inspect(timeout=3, destination=sorted(nodes.values())).active_queues() or {}
            consumers = Counter(
                q["name"] for qs in active.values() for q in qs if q["name"].startswith("greeks.")
            )
            return len(active) == WORKERS and len(consumers) == 64 and set(consumers.values()) == {1}

        _wait(celery_agrees, timeout=20)

        published: dict[int, list[int]] = {s: [] for s in SHARDS_USED}

        def publish(rounds: int, start: int) -> None:
            for seq in range(start, start + rounds):
                for shard in SHARDS_USED:
                    record.apply_async(args=[shard, seq], queue=shard_queue(shard))
                    published[shard].append(seq)

        publish(30, 0)
        # The victim is the coordinator: the worst case (its lease must lapse first).
        _wait(
            lambda: (
                broker.get(COORDINATOR_KEY) is not None and any(broker.llen(done_key(s)) for s in SHARDS_USED)
            ),
            30,
        )
        victim_node = broker.get(COORDINATOR_KEY).decode()
        victim = next(n for n, node in nodes.items() if node == victim_node)
        victim_pids = {procs[victim].pid} | _children(procs[victim].pid)
        os.kill(procs[victim].pid, signal.SIGKILL)
        for pid in victim_pids - {procs[victim].pid}:
            _kill_quietly(pid)
        killed_at = time.monotonic()
        publish(20, 30)

        survivors = {nodes[n] for n in names - {victim}}
        recovered_after = _wait(lambda: _owned_by_live(broker, survivors), timeout=30)
        assert time.monotonic() - killed_at <= 15, "shards without an owner for more than 15 s"
        assert victim_node not in owners_read(broker).values()

        def all_done() -> bool:
            return all(
                {int(x.split(b":")[0]) for x in broker.lrange(done_key(s), 0, -1)} == set(published[s])
                for s in SHARDS_USED
            )

        try:
            _wait(all_done, timeout=90)
        except AssertionError:
            missing = {
                s: sorted(
                    set(published[s]) - {int(x.split(b":")[0]) for x in broker.lrange(done_key(s), 0, -1)}
                )
                for s in SHARDS_USED
            }
            depths = {s: broker.llen(shard_queue(s)) for s in SHARDS_USED}
            raise AssertionError(
                f"missing {missing}; ready {depths}; unacked {broker.hlen(UNACKED_KEY)}; workers {workers_read(broker, ttl=5)}"
            ) from None
        victim_pid_tags = {str(pid).encode() for pid in victim_pids}
        for shard in SHARDS_USED:
            runs = [entry.split(b":") for entry in broker.lrange(done_key(shard), 0, -1)]
            seqs = [int(seq) for seq, _ in runs]
            assert set(seqs) == set(published[shard])  # every task ran: none lost
            # Order: the tasks not in flight at the kill ran in publish order. In flight = run twice,
            # or run on the victim without being acknowledged before it died (the requeued copy).
            counts = Counter(seqs)
            in_flight = {int(seq) for seq, pid in runs if counts[int(seq)] > 1 and pid in victim_pid_tags}
            in_flight |= {s for s, c in counts.items() if c > 1}
            first_runs = [s for s in dict.fromkeys(seqs) if s not in in_flight]
            assert first_runs == sorted(first_runs), f"shard {shard} out of order: {first_runs}"
            assert len(in_flight) <= 1
        print(f"shards owned again {recovered_after:.1f} s after the kill")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.slow
def test_an_idle_worker_steals_a_stale_shard_until_its_backlog_clears_then_lets_go(broker, tmp_path):
    from tests.farm.farm_app import done_key, record

    nodes = {n: f"{n}@farmtest" for n in ("steal0", "steal1")}
    procs = {n: _start_worker(n, tmp_path, steal_after=2) for n in nodes}
    try:
        _wait(lambda: _owned_by_live(broker, set(nodes.values())), timeout=60)
        owners = owners_read(broker)
        owner = owners[0]
        other_shard = next(s for s, w in sorted(owners.items()) if w == owner and s != 0)
        # The owner is held by one long task; the quick ones behind it on another of its shards wait.
        record.apply_async(args=[0, 0, 12.0], queue=shard_queue(0))
        _wait(lambda: json.loads(broker.hget(WORKERS_KEY, owner))["busy"], timeout=10)
        for seq in range(5):
            record.apply_async(args=[other_shard, seq], queue=shard_queue(other_shard))
        thief = next(node for node in nodes.values() if node != owner)

        _wait(lambda: broker.llen(done_key(other_shard)) == 5, timeout=10)
        assert broker.llen(done_key(0)) == 0  # the long task still runs: the thief did the quick ones
        thief_pids = {
            p.decode() for p in {e.split(b":")[1] for e in broker.lrange(done_key(other_shard), 0, -1)}
        }
        assert len(thief_pids) == 1
        # Its backlog clear, the thief lets go; the owner keeps the shard.
        _wait(
            lambda: shard_queue(other_shard) not in json.loads(broker.hget(WORKERS_KEY, thief))["queues"],
            timeout=10,
        )
        # ... and every shard is back to exactly one consumer once the heartbeats have caught up.
        _wait(lambda: _owned_by_live(broker, set(nodes.values())), timeout=10)
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _children(pid: int) -> set[int]:
    import psutil

    try:
        return {c.pid for c in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_a_stolen_shard_later_assigned_to_the_thief_is_kept_when_its_backlog_clears(broker):
    from types import SimpleNamespace

    from signalsvc.farm.ownership import OWNERS_KEY, FarmMember

    queue = shard_queue(2)
    consumer = SimpleNamespace(task_consumer=SimpleNamespace(queues=[SimpleNamespace(name=queue)]))
    settings_ = SimpleNamespace(
        FARM_HEARTBEAT_SECONDS=1.0, FARM_WORKER_TTL_SECONDS=5.0, FARM_COORDINATOR_LEASE_SECONDS=5.0,
        STEAL_AFTER_SECONDS=10.0, SHARD_COUNT=4,
    )  # fmt: skip
    control = RecordingControl()
    broker.set(COORDINATOR_KEY, "other@h")  # this worker does not coordinate
    member = FarmMember(
        name="thief@h", app=SimpleNamespace(control=control), consumer=consumer, client=broker,
        settings=settings_, held_tags=list,
    )  # fmt: skip
    member.stolen = {queue}
    broker.hset(OWNERS_KEY, mapping={"2": "thief@h"})  # meanwhile the coordinator gave it shard 2

    member.step()  # shard 2 has no backlog: a thief would let go of it, its owner keeps it

    assert member.stolen == set()
    assert control.sent == []
