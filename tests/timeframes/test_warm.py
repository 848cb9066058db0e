"""Custom timeframes on the farm: the timeframes in use are kept warm by tasks on the shard queue of
their instrument's underlying, queued when a session closes, after a correction, on a cold read and
when a timeframe comes into use; reads are counted warm, cold or changed."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from signalsvc.farm.queues import queue_depths
from signalsvc.farm.routing import QUEUE_TIMEFRAMES, all_queues, greeks_queue
from signalsvc.redis_clients import client_for_url
from tests.conftest import subprocess_env
from tests.timeframes.conftest import OPTION_KEY, SPOT_KEY, put_bars, random_rows, refresh
from tests.timeframes.reference import reference_bars
from timeframes import cache
from timeframes.core.grammar import parse_timeframe
from timeframes.models import CustomTimeframe
from timeframes.services import (
    custom_timeframe_warm,
    custom_timeframes_flush,
    custom_timeframes_warm_closed,
    custom_timeframes_warm_corrected,
    custom_timeframes_warm_enqueue,
)
from timeframes.tasks import WARM_TASK

pytestmark = pytest.mark.django_db

SEVEN = parse_timeframe("7m")
BANKNIFTY_KEY = "NSE@BANKNIFTY@equity_spot"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def after():
    """Now: the triggers (the refresh's commit hook, the minute task) work in real time."""
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def sessions(nse, after):
    """The last five sessions closed by now."""
    return nse.previous_sessions(after, 5, include_current=False)


@pytest.fixture
def broker():
    return client_for_url(settings.CELERY_BROKER_URL)


@pytest.fixture(autouse=True)
def _counts_from_zero():
    cache.read_counts_reset()


def in_use(instrument, *labels: str, when: dt.datetime) -> None:
    """Register the timeframes as requested at ``when`` (what the minute flush records)."""
    for label in labels:
        CustomTimeframe.objects.create(
            instrument=instrument,
            timeframe=label,
            minutes=parse_timeframe(label).minutes,
            first_requested_at=when,
            last_requested_at=when,
            request_count=1,
        )


def read(instrument_id, sessions, now, timeframe=SEVEN):
    return cache.bars_read(
        instrument_id=instrument_id,
        timeframe=timeframe,
        start=sessions[0].open,
        end=sessions[-1].close,
        now=now,
    )


def minute(sessions, k: int, m: int) -> int:
    """Index in ``random_rows(sessions)`` of minute ``m`` of session ``k``."""
    return sum(s.minutes for s in sessions[:k]) + m


def correct(instrument_id, rows, index, bump=25.0):
    """Revise the high of one stored bar (a late correction); returns the rows as they now are."""
    ts, o, h, low, c, v, oi = rows[index]
    revised = (ts, o, h + bump, low, c, v, oi)
    put_bars(instrument_id, [revised])
    return [*rows[:index], revised, *rows[index + 1 :]]


def refresh_and_commit(capture) -> None:
    """A refresh whose commit hooks run, as they do outside the test's transaction."""
    with capture(execute=True):
        refresh()


def ready(broker, queue) -> int:
    return queue_depths(broker, [queue])[queue].ready


def queued_warms(broker) -> list[tuple[str, int, str]]:
    """(queue, instrument id, timeframe) of every warm waiting on the broker."""
    out = []
    for queue in all_queues(settings.SHARD_COUNT):
        for raw in broker.lrange(queue, 0, -1):
            message = json.loads(raw)
            if message["headers"]["task"] == WARM_TASK:
                args, _, _ = json.loads(base64.b64decode(message["body"]))
                out.append((queue, *args))
    return sorted(out)


def pending(redis_client) -> set[str]:
    return set(redis_client.scan_iter(match=f"{cache.WARM_PENDING_PREFIX}*"))


def _aggregations(queries) -> list[str]:
    return [q["sql"] for q in queries if "string_agg" in q["sql"]]


# -- the warm ------------------------------------------------------------------------------------


def test_after_the_warm_a_never_asked_range_is_served_without_aggregating(spot, sessions, after):
    rows = random_rows(sessions, seed=40)
    put_bars(spot.id, rows)
    refresh()

    report = custom_timeframe_warm(instrument_id=spot.id, timeframe="7m", now=after)
    with CaptureQueriesContext(connection) as queries:
        served = read(spot.id, sessions[1:4], after)

    assert report["computed"] == report["sessions"] > 240  # the year before `after`, every session
    assert report["cached"] == report["changed"] == 0
    assert (served.sessions_cached, served.sessions_computed) == (3, 0)
    assert _aggregations(queries) == []
    assert cache.read_counts() == {"warm": 1, "cold": 0, "changed": 0}
    ref = reference_bars(rows, sessions[1:4], 7)
    assert served.items_json and served.count == len(ref)
    assert served.bars["high"].tolist() == ref["high"].to_numpy(dtype=float).tolist()


def test_without_the_warm_the_same_read_is_cold(spot, sessions, after):
    put_bars(spot.id, random_rows(sessions, seed=41))
    refresh()

    with CaptureQueriesContext(connection) as queries:
        served = read(spot.id, sessions[1:4], after)

    assert (served.sessions_cached, served.sessions_computed) == (0, 3)
    assert len(_aggregations(queries)) == 1
    assert cache.read_counts() == {"warm": 0, "cold": 1, "changed": 0}


def test_a_cold_read_queues_the_warm_of_its_timeframe_on_demand(spot, sessions, after, broker):
    put_bars(spot.id, random_rows(sessions, seed=56))
    refresh()
    read(spot.id, sessions[1:4], after)  # cold
    read(spot.id, sessions[0:2], after)  # cold again: coalesced into the warm already waiting

    custom_timeframe_warm(instrument_id=spot.id, timeframe="7m", now=after)  # the worker runs it
    served = read(spot.id, sessions, after)  # a range never asked

    assert queued_warms(broker) == [(greeks_queue(SPOT_KEY, settings.SHARD_COUNT), spot.id, "7m")]
    assert (served.sessions_cached, served.sessions_computed) == (5, 0)
    assert cache.read_counts() == {"warm": 1, "cold": 2, "changed": 0}


def test_a_warm_read_queues_nothing(spot, sessions, after, broker):
    put_bars(spot.id, random_rows(sessions, seed=57))
    refresh()
    custom_timeframe_warm(instrument_id=spot.id, timeframe="7m", now=after)

    read(spot.id, sessions, after)

    assert queued_warms(broker) == []


def test_a_second_warm_aggregates_nothing_and_renews_the_entries(spot, sessions, after, redis_client):
    put_bars(spot.id, random_rows(sessions, seed=42))
    refresh()
    first = custom_timeframe_warm(instrument_id=spot.id, timeframe="7m", now=after)
    entries = list(redis_client.scan_iter(match=f"{cache.ENTRY_PREFIX}{spot.id}:7m:*"))
    for key in entries:
        redis_client.expire(key, 60)  # close to expiring

    with CaptureQueriesContext(connection) as queries:
        second = custom_timeframe_warm(instrument_id=spot.id, timeframe="7m", now=after)

    assert second == {"sessions": first["sessions"], "cached": first["sessions"], "computed": 0, "changed": 0}
    assert _aggregations(queries) == []
    assert len(entries) == first["sessions"]
    assert min(redis_client.ttl(key) for key in entries) > cache.CACHE_TTL_SECONDS - 60


def test_nothing_is_warmed_before_the_first_refresh(spot, sessions, after, redis_client):
    put_bars(spot.id, random_rows(sessions, seed=43))

    report = custom_timeframe_warm(instrument_id=spot.id, timeframe="7m", now=after)

    assert report["computed"] == 0
    assert list(redis_client.scan_iter(match=f"{cache.ENTRY_PREFIX}*")) == []


def test_a_correction_rewarms_the_corrected_session(
    spot, sessions, after, broker, django_capture_on_commit_callbacks
):
    rows = random_rows(sessions, seed=44)
    put_bars(spot.id, rows)
    refresh()
    in_use(spot, "7m", when=after)
    custom_timeframe_warm(instrument_id=spot.id, timeframe="7m", now=after)
    current = correct(spot.id, rows, minute(sessions, 2, 10))

    refresh_and_commit(django_capture_on_commit_callbacks)
    queued = queued_warms(broker)
    rewarm = custom_timeframe_warm(instrument_id=spot.id, timeframe="7m", now=after)
    served = read(spot.id, sessions, after)

    assert queued == [(greeks_queue(SPOT_KEY, settings.SHARD_COUNT), spot.id, "7m")]
    assert rewarm["computed"] == 1  # only the corrected session
    assert (served.sessions_cached, served.sessions_computed) == (5, 0)
    assert cache.read_counts() == {"warm": 1, "cold": 0, "changed": 0}
    assert (
        served.bars["high"].tolist()
        == reference_bars(current, sessions, 7)["high"].to_numpy(dtype=float).tolist()
    )


def test_a_change_in_the_open_session_queues_nothing(spot, sessions, broker, redis_client):
    # At this time the last session is still open: its bars change every minute, it is never cached.
    now = sessions[-1].open + dt.timedelta(minutes=200)
    in_use(spot, "7m", when=now)

    open_session = custom_timeframes_warm_corrected(pairs=[(spot.id, sessions[-1].date)], now=now)
    closed_session = custom_timeframes_warm_corrected(pairs=[(spot.id, sessions[-2].date)], now=now)

    assert (open_session, closed_session) == (0, 1)
    assert pending(redis_client) == {cache.warm_pending_key(spot.id, "7m")}


# -- routing and coalescing ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", [SPOT_KEY, OPTION_KEY, BANKNIFTY_KEY])
def test_a_warm_goes_to_the_shard_queue_of_the_instruments_underlying(make_instruments, broker, key):
    instrument = make_instruments(key)[key]
    underlying = "NSE@BANKNIFTY@equity_spot" if "BANKNIFTY" in key else SPOT_KEY
    expected = greeks_queue(underlying, settings.SHARD_COUNT)

    custom_timeframes_warm_enqueue(pairs=[(instrument.id, "7m")])

    depths = queue_depths(broker, all_queues(settings.SHARD_COUNT))
    assert {q: d.ready for q, d in depths.items() if d.ready} == {expected: 1}
    assert depths[QUEUE_TIMEFRAMES].ready == 0
    assert queued_warms(broker) == [(expected, instrument.id, "7m")]


def test_a_burst_of_triggers_queues_one_warm_per_timeframe(
    spot, sessions, after, broker, redis_client, django_capture_on_commit_callbacks
):
    rows = random_rows(sessions, seed=46)
    put_bars(spot.id, rows)
    refresh()
    in_use(spot, "7m", "45m", when=after)
    queue = greeks_queue(SPOT_KEY, settings.SHARD_COUNT)

    for i in range(3):  # three corrections, each through its own refresh
        rows = correct(spot.id, rows, minute(sessions, i, 10))
        refresh_and_commit(django_capture_on_commit_callbacks)
    assert custom_timeframes_warm_enqueue(pairs=[(spot.id, "7m"), (spot.id, "45m")]) == 0
    burst = ready(broker, queue)

    custom_timeframe_warm(instrument_id=spot.id, timeframe="7m", now=after)  # started: no longer waiting
    correct(spot.id, rows, minute(sessions, 3, 10))
    refresh_and_commit(django_capture_on_commit_callbacks)

    assert burst == 2
    assert ready(broker, queue) == 3  # 7m queued again (its warm had started), 45m still waiting
    assert queued_warms(broker) == sorted(
        [(queue, spot.id, "45m"), (queue, spot.id, "7m"), (queue, spot.id, "7m")]
    )


def test_a_warm_that_could_not_be_queued_does_not_block_the_next_trigger(
    spot, broker, redis_client, monkeypatch
):
    from timeframes.tasks import warm_custom_timeframe

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(warm_custom_timeframe, "apply_async", broker_down)
    with pytest.raises(ConnectionError):
        custom_timeframes_warm_enqueue(pairs=[(spot.id, "7m")])
    monkeypatch.undo()

    assert pending(redis_client) == set()
    assert custom_timeframes_warm_enqueue(pairs=[(spot.id, "7m")]) == 1


# -- what is in use -----------------------------------------------------------------------------------


def test_only_timeframes_in_use_are_warmed_after_a_session_close(
    make_instruments, sessions, after, broker, redis_client, settings
):
    settings.TIMEFRAMES_WARM_IN_USE_DAYS = 7
    instruments = make_instruments(SPOT_KEY, BANKNIFTY_KEY)
    spot, bank = instruments[SPOT_KEY], instruments[BANKNIFTY_KEY]
    for instrument, seed in ((spot, 47), (bank, 48)):
        put_bars(instrument.id, random_rows(sessions, seed=seed))
    refresh()
    in_use(spot, "7m", "45m", when=after - dt.timedelta(days=6))
    in_use(bank, "7m", when=after - dt.timedelta(days=8))  # last requested before the window

    queued = custom_timeframes_warm_closed(now=after)
    again = custom_timeframes_warm_closed(now=after + dt.timedelta(minutes=1))

    assert queued == 2 and again == 0  # once per session
    assert pending(redis_client) == {
        cache.warm_pending_key(spot.id, "7m"),
        cache.warm_pending_key(spot.id, "45m"),
    }
    queue = greeks_queue(SPOT_KEY, settings.SHARD_COUNT)
    assert queued_warms(broker) == [(queue, spot.id, "45m"), (queue, spot.id, "7m")]


def test_a_session_whose_last_bars_settle_after_the_close_is_warmed_when_they_do(
    spot, sessions, after, broker, django_capture_on_commit_callbacks
):
    rows = random_rows(sessions, seed=49)
    put_bars(spot.id, rows[:-1])
    refresh()
    in_use(spot, "7m", when=after)
    put_bars(spot.id, rows[-1:])  # the last minute's bar, written at the close: not settled yet

    custom_timeframes_warm_closed(now=after)
    at_close = custom_timeframe_warm(instrument_id=spot.id, timeframe="7m", now=after)  # the worker
    refresh_and_commit(django_capture_on_commit_callbacks)  # settles it
    queued = queued_warms(broker)
    settled = custom_timeframe_warm(instrument_id=spot.id, timeframe="7m", now=after)
    served = read(spot.id, sessions, after)

    assert at_close["changed"] == 1
    queue = greeks_queue(SPOT_KEY, settings.SHARD_COUNT)
    assert queued == [(queue, spot.id, "7m"), (queue, spot.id, "7m")]  # at the close, then settled
    assert (settled["computed"], settled["changed"]) == (1, 0)
    assert (served.sessions_cached, served.sessions_computed) == (5, 0)
    assert served.bars["close"][-1] == rows[-1][4]


def test_a_timeframe_coming_into_use_is_warmed_at_the_minute_flush(
    spot, sessions, after, broker, redis_client, django_capture_on_commit_callbacks
):
    put_bars(spot.id, random_rows(sessions, seed=50))
    refresh()
    month_ago = after - dt.timedelta(days=30)
    CustomTimeframe.objects.create(
        instrument=spot, timeframe="45m", minutes=45, first_requested_at=month_ago,
        last_requested_at=month_ago, request_count=3,
    )  # fmt: skip
    read(spot.id, sessions, after)  # the first request ever of 7m
    read(spot.id, sessions, after, timeframe=parse_timeframe("45m"))  # back in use after a month
    broker.delete(*all_queues(settings.SHARD_COUNT))  # the warms these cold reads queued have run
    redis_client.delete(*pending(redis_client))

    with django_capture_on_commit_callbacks(execute=True):
        flushed = custom_timeframes_flush()
    first = queued_warms(broker)
    broker.delete(*all_queues(settings.SHARD_COUNT))  # a worker took them
    redis_client.delete(*pending(redis_client))
    read(spot.id, sessions, after)  # 7m again: in use now
    with django_capture_on_commit_callbacks(execute=True):
        custom_timeframes_flush()

    queue = greeks_queue(SPOT_KEY, settings.SHARD_COUNT)
    assert flushed == 2
    assert first == [(queue, spot.id, "45m"), (queue, spot.id, "7m")]
    assert queued_warms(broker) == []


# -- read counters ------------------------------------------------------------------------------------


def test_a_read_of_a_session_with_an_unsettled_correction_counts_as_changed(spot, sessions, after):
    rows = random_rows(sessions, seed=51)
    put_bars(spot.id, rows)
    refresh()
    custom_timeframe_warm(instrument_id=spot.id, timeframe="7m", now=after)
    correct(spot.id, rows, minute(sessions, 0, 10))  # not refreshed yet

    served = read(spot.id, sessions, after)

    assert (served.sessions_cached, served.sessions_computed) == (4, 1)
    assert cache.read_counts() == {"warm": 0, "cold": 0, "changed": 1}


def test_the_open_session_recomputed_does_not_make_a_read_cold(spot, sessions):
    put_bars(spot.id, random_rows(sessions, seed=52))
    refresh()
    now = sessions[-1].open + dt.timedelta(minutes=100)
    custom_timeframe_warm(instrument_id=spot.id, timeframe="7m", now=now)

    served = read(spot.id, sessions, now)

    assert (served.sessions_cached, served.sessions_computed) == (4, 1)
    assert cache.read_counts() == {"warm": 1, "cold": 0, "changed": 0}


def test_read_counts_of_every_process_are_summed_in_redis(spot, sessions, after):
    put_bars(spot.id, random_rows(sessions, seed=53))
    refresh()
    read(spot.id, sessions, after)  # cold
    cache.fills_wait()
    read(spot.id, sessions, after)  # warm (range)
    read(spot.id, sessions, after, timeframe=parse_timeframe("15m"))  # standard: not counted

    cache.stats_flush()

    assert cache.read_totals() == {"warm": 1, "cold": 1, "changed": 0}
    assert cache.read_counts() == {"warm": 1, "cold": 1, "changed": 0}


# -- tasks ---------------------------------------------------------------------------------------------


def test_the_warm_task_is_registered_and_acks_late():
    from signalsvc.celery import app

    warm = app.tasks[WARM_TASK]
    assert (warm.acks_late, warm.reject_on_worker_lost, warm.ignore_result) == (True, True, True)


def test_the_minute_task_queues_the_warms_once_after_a_session_close(
    spot, sessions, after, broker, monkeypatch
):
    from timeframes import services
    from timeframes.tasks import refresh_rollups

    # No settle window, so the result does not depend on running within two minutes of a close.
    monkeypatch.setattr(
        services, "rollups_refresh", partial(services.rollups_refresh, settle=dt.timedelta(0))
    )
    put_bars(spot.id, random_rows(sessions, seed=55))
    in_use(spot, "7m", when=after)

    first = refresh_rollups.run()
    second = refresh_rollups.run()

    assert (first["warms_after_close"], second["warms_after_close"]) == (1, 0)
    assert queued_warms(broker) == [(greeks_queue(SPOT_KEY, settings.SHARD_COUNT), spot.id, "7m")]


def test_a_queued_warm_expires_when_it_is_stale(spot, broker):
    custom_timeframes_warm_enqueue(pairs=[(spot.id, "7m")])

    queue = greeks_queue(SPOT_KEY, settings.SHARD_COUNT)
    message = json.loads(broker.lindex(queue, 0))
    sent = message["headers"]["sent_at"]
    expires = dt.datetime.fromisoformat(message["headers"]["expires"]).timestamp()
    assert expires - sent == pytest.approx(600, abs=5)


# -- on the farm ------------------------------------------------------------------------------------


@pytest.fixture
def committed_spot(make_instruments):
    """The spot instrument in a test whose writes commit (the worker must see them). The bars and
    rollups are not Django-managed tables, so the flush after the test leaves them: dropped here."""
    spot = make_instruments(SPOT_KEY)[SPOT_KEY]
    yield spot
    with connection.cursor() as cur:
        cur.execute("DELETE FROM market_bar_1m WHERE instrument_id = %s", [spot.id])
        cur.execute("DELETE FROM timeframe_rollup WHERE instrument_id = %s", [spot.id])


@pytest.mark.django_db(transaction=True)
def test_a_worker_consuming_the_shard_queue_warms_the_cache(committed_spot, nse, broker, redis_client):
    now = dt.datetime.now(dt.UTC)
    sessions = nse.previous_sessions(now, 5, include_current=False)
    spot = committed_spot
    put_bars(spot.id, random_rows(sessions, seed=54))
    refresh()
    queue = greeks_queue(SPOT_KEY, settings.SHARD_COUNT)
    custom_timeframes_warm_enqueue(pairs=[(spot.id, "7m")])
    celery = Path(sys.executable).parent / "celery"
    command = [str(celery), "-A", "signalsvc", "worker", "-Q", queue, "-P", "solo", "-l", "warning"]
    command += ["-n", f"warm-test-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    worker = subprocess.Popen(command, env=subprocess_env(), cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while queue_depths(broker, [queue])[queue].total and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=20)

    served = read(spot.id, sessions, now)

    assert queue_depths(broker, [queue])[queue].total == 0
    assert pending(redis_client) == set()
    assert (served.sessions_cached, served.sessions_computed) == (5, 0)
    assert cache.read_counts() == {"warm": 1, "cold": 0, "changed": 0}
