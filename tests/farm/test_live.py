"""Live cadence: coalesced chain requests, the ingest's once-per-interval trigger, and refreshes
that join one computation."""

from __future__ import annotations

import threading
import time

import pytest
from django.conf import settings

from signalsvc.farm import live
from signalsvc.farm.backpressure import Level
from signalsvc.farm.queues import queue_depths
from signalsvc.farm.routing import greeks_queue

NIFTY = "NSE@NIFTY@equity_spot"
NIFTY_CALL = "NSE@NIFTY@equity_options@2026-12-31@call@24000"
NO_OPTIONS = "NSE@INFY@equity_spot"


def _queued(client, underlying: str = NIFTY) -> int:
    queue = greeks_queue(underlying, settings.SHARD_COUNT)
    return queue_depths(client, [queue])[queue].ready


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cadence(db, redis_client, make_instruments, monkeypatch):
    make_instruments(NIFTY, NIFTY_CALL, NO_OPTIONS)
    monkeypatch.setattr("signalsvc.farm.backpressure.current_level", lambda client=None: Level.LOW)
    clock = Clock()
    return live.LiveCadence(redis_client, clock=clock), clock


def test_a_change_is_requested_at_once_and_again_only_after_the_interval(cadence, redis_client):
    cadence, clock = cadence

    cadence.changed([NIFTY_CALL, NO_OPTIONS])
    assert cadence.flush_due() == 1  # INFY has no options: nothing to compute
    assert _queued(redis_client) == 1 and not cadence.pending

    cadence.changed([NIFTY])
    clock.now += 0.5
    assert cadence.flush_due() == 0 and cadence.pending  # within the interval: waits

    clock.now += 0.5
    # Due, but the first task has not started: the request coalesces into it.
    assert cadence.flush_due() == 0 and _queued(redis_client) == 1 and not cadence.pending


def test_a_change_during_a_computation_queues_exactly_one_more(cadence, redis_client):
    cadence, clock = cadence
    cadence.changed([NIFTY_CALL])
    cadence.flush_due()

    with live.ChainRun(redis_client, NIFTY):  # the worker took it: the pending flag is cleared
        for _ in range(3):
            clock.now += 1
            cadence.changed([NIFTY_CALL])
            cadence.flush_due()

    assert _queued(redis_client) == 2
    assert live.computations(redis_client, NIFTY) == 1


def test_backpressure_stretches_the_interval(cadence, redis_client, monkeypatch):
    cadence, clock = cadence
    monkeypatch.setattr("signalsvc.farm.backpressure.current_level", lambda client=None: Level.HIGH)
    factor = settings.BACKPRESSURE_CADENCE_FACTORS[Level.HIGH]
    assert factor > 1
    cadence.changed([NIFTY_CALL])
    cadence.flush_due()
    redis_client.delete(live.PENDING_PREFIX + NIFTY)

    cadence.changed([NIFTY_CALL])
    clock.now += settings.GREEKS_LIVE_INTERVAL * factor - 0.01
    assert cadence.flush_due() == 0
    clock.now += 0.02
    assert cadence.flush_due() == 1


def test_a_broker_failure_keeps_the_change_for_the_next_round(cadence, redis_client, monkeypatch):
    cadence, _clock = cadence

    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr("signalsvc.celery.app.send_task", down)
    cadence.changed([NIFTY_CALL])
    assert cadence.flush_due() == 0
    assert cadence.pending and redis_client.get(live.PENDING_PREFIX + NIFTY) is None  # flag released

    monkeypatch.undo()
    monkeypatch.setattr("signalsvc.farm.backpressure.current_level", lambda client=None: Level.LOW)
    assert cadence.flush_due() == 1


def _concurrently(n: int, target) -> list:
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            target()
            results[i] = "ok"
        except Exception as exc:  # reported below, not lost in the thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def test_twenty_concurrent_refreshes_without_a_farm_cost_one_computation(redis_client):
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.3)
        return {"price": 0.1}

    threads, results = _concurrently(
        20, lambda: live.chain_refresh(redis_client, NIFTY, compute=compute, farm_alive=False, timeout=5)
    )
    for t in threads:
        t.join()

    assert results == ["ok"] * 20
    assert len(calls) == 1
    assert live.computations(redis_client, NIFTY) == 1
    assert float(redis_client.hget(live.STAGES_KEY, "price")) == pytest.approx(0.1)


def test_twenty_concurrent_refreshes_on_the_farm_queue_one_task_and_all_return_when_it_ends(redis_client):
    threads, results = _concurrently(
        20, lambda: live.chain_refresh(redis_client, NIFTY, compute=None, farm_alive=True, timeout=5)
    )
    deadline = time.monotonic() + 5
    while _queued(redis_client) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # every caller has joined by now
    assert _queued(redis_client) == 1

    with live.ChainRun(redis_client, NIFTY):  # what the worker does around the computation
        pass
    for t in threads:
        t.join()

    assert results == ["ok"] * 20
    assert _queued(redis_client) == 1


def test_a_refresh_joins_a_running_computation_without_queueing_another(redis_client):
    with live.ChainRun(redis_client, NIFTY):
        threads, results = _concurrently(
            5, lambda: live.chain_refresh(redis_client, NIFTY, compute=None, farm_alive=True, timeout=5)
        )
        time.sleep(0.2)
    for t in threads:
        t.join()

    assert results == ["ok"] * 5
    assert _queued(redis_client) == 0


def test_a_refresh_nobody_computes_times_out(redis_client):
    with pytest.raises(live.RefreshTimeout):
        live.chain_refresh(redis_client, NIFTY, compute=None, farm_alive=True, timeout=0.2)


def test_a_refresh_that_waited_while_a_computation_finished_joins_it(redis_client):
    arrived = time.time()
    with live.ChainRun(redis_client, NIFTY):  # ran while the request waited in a backlog
        pass

    live.chain_refresh(redis_client, NIFTY, compute=None, farm_alive=True, timeout=0.2, requested_at=arrived)

    assert _queued(redis_client) == 0  # nothing new requested
    with pytest.raises(live.RefreshTimeout):  # a request that arrived after it needs a new one
        live.chain_refresh(
            redis_client, NIFTY, compute=None, farm_alive=True, timeout=0.2, requested_at=time.time()
        )
    assert _queued(redis_client) == 1


class _Request:
    def __init__(self, name: str, args: list) -> None:
        self.name, self.args = name, args


def test_an_expired_chain_task_releases_its_pending_flag(redis_client):
    redis_client.set(live.PENDING_PREFIX + NIFTY, 1)
    other = "NSE@BANKNIFTY@equity_spot"
    redis_client.set(live.PENDING_PREFIX + other, 1)

    live.pending_release_if_expired(request=_Request(live.CHAIN_TASK, [NIFTY]), expired=True)
    # Revoked for another reason (terminated), or another task: the flag is not this receiver's.
    live.pending_release_if_expired(request=_Request(live.CHAIN_TASK, [other]), expired=False)
    live.pending_release_if_expired(
        request=_Request("timeframes.tasks.refresh_rollups", [other]), expired=True
    )

    assert redis_client.get(live.PENDING_PREFIX + NIFTY) is None
    assert redis_client.get(live.PENDING_PREFIX + other) == "1"
