"""The Redis bar cache: closed sessions cached, never a stale bucket, usage in signal_custom_timeframes."""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import pytest

from tests.timeframes.conftest import put_bars, random_rows, refresh
from tests.timeframes.reference import reference_bars
from timeframes import cache
from timeframes.core.grammar import parse_timeframe
from timeframes.models import CustomTimeframe
from timeframes.render import bar_items
from timeframes.services import custom_timeframes_flush

pytestmark = pytest.mark.django_db

SEVEN = parse_timeframe("7m")


@pytest.fixture
def sessions(nse):
    return nse.sessions(dt.date(2025, 3, 3), dt.date(2025, 3, 7))  # five sessions


def _read(instrument_id, sessions, *, timeframe=SEVEN, now=None):
    return cache.bars_read(
        instrument_id=instrument_id,
        timeframe=timeframe,
        start=sessions[0].open,
        end=sessions[-1].close,
        now=now,
    )


def _assert_matches(read, rows, sessions, minutes=7):
    ref = reference_bars(rows, sessions, minutes)
    assert read.count == len(ref)
    for field in ("open", "high", "low", "close", "volume", "oi"):
        np.testing.assert_array_equal(read.bars[field], ref[field].to_numpy(dtype=float), err_msg=field)


def test_closed_sessions_are_served_from_the_cache_after_the_first_read(spot, sessions):
    rows = random_rows(sessions, seed=20, with_oi=True)
    put_bars(spot.id, rows)
    refresh()

    first = _read(spot.id, sessions)
    second = _read(spot.id, sessions)

    assert (first.source, first.sessions_cached, first.sessions_computed) == ("database", 0, 5)
    assert (second.source, second.sessions_cached, second.sessions_computed) == ("range", 5, 0)
    assert second.items_json == first.items_json
    _assert_matches(second, rows, sessions)


def test_an_overlapping_range_reuses_the_cached_sessions(spot, sessions):
    rows = random_rows(sessions, seed=21)
    put_bars(spot.id, rows)
    refresh()
    _read(spot.id, sessions[:3])

    read = _read(spot.id, sessions[1:])

    assert (read.source, read.sessions_cached, read.sessions_computed) == ("sessions", 2, 2)
    _assert_matches(read, rows, sessions[1:])


def test_without_a_refresh_nothing_is_cached(spot, sessions):
    put_bars(spot.id, random_rows(sessions, seed=22))
    _read(spot.id, sessions)

    read = _read(spot.id, sessions)

    assert (read.source, read.sessions_computed) == ("database", 5)


def test_the_open_session_is_recomputed_on_every_read(spot, sessions):
    rows = random_rows(sessions, seed=23)
    last = sessions[-1]
    now = last.open + dt.timedelta(minutes=200)
    live = [r for r in rows if r[0] < now - dt.timedelta(minutes=1)]
    put_bars(spot.id, live)
    refresh()
    _read(spot.id, sessions, now=now)
    # A new minute arrives in the open session, and the bar of the minute before is revised.
    ts, o, h, low, c, v, oi = live[-1]
    revised = (ts, o, h + 7.0, low, c + 1.0, v + 3.0, oi)
    arrived = (now - dt.timedelta(minutes=1), c + 1.0, c + 2.0, c, c + 1.5, 4.0, None)
    put_bars(spot.id, [revised, arrived])

    read = _read(spot.id, sessions, now=now)

    assert (read.source, read.sessions_cached, read.sessions_computed) == ("sessions", 4, 1)
    _assert_matches(read, [*live[:-1], revised, arrived], sessions)


def test_a_corrected_closed_session_is_never_served_stale(spot, sessions):
    rows = random_rows(sessions, seed=24)
    put_bars(spot.id, rows)
    refresh()
    _read(spot.id, sessions)
    _read(spot.id, sessions)  # now in both cache levels
    ts, o, h, low, c, v, oi = rows[400]  # second session
    corrected = (ts, o, h + 100.0, low, c, v, oi)
    put_bars(spot.id, [corrected])
    current = [*rows[:400], corrected, *rows[401:]]

    before_refresh = _read(spot.id, sessions)
    refresh()
    after_refresh = _read(spot.id, sessions)
    again = _read(spot.id, sessions)

    _assert_matches(before_refresh, current, sessions)
    assert (before_refresh.sessions_cached, before_refresh.sessions_computed) == (4, 1)
    _assert_matches(after_refresh, current, sessions)
    assert (after_refresh.sessions_cached, after_refresh.sessions_computed) == (4, 1)
    _assert_matches(again, current, sessions)
    assert again.source == "range"


def test_lost_tokens_never_bring_back_old_entries(spot, sessions, redis_client):
    rows = random_rows(sessions, seed=25)
    put_bars(spot.id, rows)
    refresh()
    _read(spot.id, sessions)
    ts, o, h, low, c, v, oi = rows[10]
    corrected = (ts, o, h + 9.0, low, c, v, oi)
    put_bars(spot.id, [corrected])
    refresh()
    # Redis lost the tokens (eviction, restart without persistence): readers make new ones.
    redis_client.delete(cache.token_key(spot.id), cache.epoch_key(spot.id))
    cache.local_ranges.clear()

    read = _read(spot.id, sessions)

    _assert_matches(read, [*rows[:10], corrected, *rows[11:]], sessions)


def test_standard_timeframes_are_cached_too(spot, sessions):
    rows = random_rows(sessions, seed=26)
    put_bars(spot.id, rows)
    refresh()
    _read(spot.id, sessions, timeframe=parse_timeframe("15m"))

    read = _read(spot.id, sessions, timeframe=parse_timeframe("15m"))

    assert read.source == "range"
    _assert_matches(read, rows, sessions, minutes=15)


def test_custom_timeframe_usage_is_recorded_in_signal_custom_timeframes(spot, sessions):
    put_bars(spot.id, random_rows(sessions, seed=27))
    refresh()
    _read(spot.id, sessions)
    _read(spot.id, sessions)
    _read(spot.id, sessions, timeframe=parse_timeframe("custom_45"))
    _read(spot.id, sessions, timeframe=parse_timeframe("15m"))  # standard: not recorded

    assert custom_timeframes_flush() == 2
    _read(spot.id, sessions)
    assert custom_timeframes_flush() == 1

    rows = {r.timeframe: r for r in CustomTimeframe.objects.filter(instrument=spot)}
    assert set(rows) == {"7m", "45m"}
    seven = rows["7m"]
    assert (seven.minutes, seven.request_count, seven.sessions_computed, seven.sessions_from_cache) == (
        7,
        3,
        5,
        10,
    )
    assert seven.first_requested_at <= seven.last_requested_at
    assert seven.cache_hit_ratio == pytest.approx(10 / 15)
    assert rows["45m"].request_count == 1


def test_block_encoding_round_trips(spot, sessions):
    put_bars(spot.id, random_rows(sessions[:1], seed=28, with_oi=True))
    read = _read(spot.id, sessions[:1])
    items, offsets = bar_items(read.bars)
    block = cache.Block(read.bars, items, offsets)

    encoded = cache.encode_block(block)
    decoded = cache.decode_block(encoded)

    assert decoded is not None
    for key, values in read.bars.items():
        np.testing.assert_array_equal(decoded.bars[key], values)
    assert decoded.items == items == read.items_json
    np.testing.assert_array_equal(decoded.offsets, offsets)
    assert cache.decode_block(b"garbage") is None
    assert cache.decode_block(encoded[:-1]) is None  # truncated: a miss, not wrong bars


def test_without_redis_the_bars_come_from_postgresql(spot, sessions, free_redis_port):
    import redis

    rows = random_rows(sessions, seed=29)
    put_bars(spot.id, rows)
    refresh()
    down = redis.Redis(host="127.0.0.1", port=free_redis_port, socket_connect_timeout=0.2)

    read = cache.bars_read(
        instrument_id=spot.id, timeframe=SEVEN, start=sessions[0].open, end=sessions[-1].close, client=down
    )

    assert (read.source, read.sessions_computed) == ("database", 5)
    _assert_matches(read, rows, sessions)


@pytest.fixture
def free_redis_port():
    from tests.conftest import free_port

    return free_port()  # nothing listens there


def _entries(redis_client, instrument_id) -> list[bytes]:
    return sorted(redis_client.scan_iter(match=f"{cache.ENTRY_PREFIX}{instrument_id}:*"))


@pytest.fixture
def held_fill(monkeypatch) -> threading.Event:
    """Cache fills wait for this event before they write (a slow fill, in flight)."""
    release = threading.Event()
    write = cache._write
    monkeypatch.setattr(cache, "_write", lambda *args: (release.wait(10), write(*args)))
    return release


def test_the_cache_fill_follows_the_response_and_a_repeat_waits_for_it(
    spot, sessions, redis_client, held_fill
):
    rows = random_rows(sessions, seed=30)
    put_bars(spot.id, rows)
    refresh()

    first = _read(spot.id, sessions)

    assert first.source == "database" and _entries(redis_client, spot.id) == []  # answered before the fill
    threading.Timer(0.2, held_fill.set).start()
    cache.local_ranges.clear()  # so the repeat can only be served by what the fill writes to Redis
    second = _read(spot.id, sessions)  # same instrument and timeframe: waits for the fill in flight
    assert (second.source, second.sessions_cached) == ("range", 5)
    assert len(_entries(redis_client, spot.id)) == 5
    _assert_matches(second, rows, sessions)


def test_a_fill_that_lands_after_an_invalidation_is_never_read(spot, sessions, redis_client, held_fill):
    rows = random_rows(sessions, seed=31)
    put_bars(spot.id, rows)
    refresh()
    _read(spot.id, sessions)  # its fill (of the old bars) is held back
    ts, o, h, low, c, v, oi = rows[700]
    corrected = (ts, o, h + 50.0, low, c, v, oi)
    put_bars(spot.id, [corrected])
    refresh()  # invalidates the tokens the held-back fill was computed under

    held_fill.set()
    cache.fills_wait()
    cache.local_ranges.clear()
    read = _read(spot.id, sessions)
    cache.fills_wait()  # this read's own fill (of the corrected session) is written behind it too

    _assert_matches(read, [*rows[:700], corrected, *rows[701:]], sessions)
    assert len(_entries(redis_client, spot.id)) == 5 + 1  # the late fill is there, under a dead token


@pytest.mark.parametrize(
    "overrides",
    [{"TIMEFRAMES_CACHE_WRITE_BEHIND": False}, {"TIMEFRAMES_WRITE_BEHIND_MAX_PENDING": 0}],
    ids=["write-behind off", "back-pressure"],
)
def test_fills_are_written_in_the_request_when_write_behind_is_off_or_full(
    spot, sessions, redis_client, settings, monkeypatch, overrides
):
    for name, value in overrides.items():
        setattr(settings, name, value)
    put_bars(spot.id, random_rows(sessions, seed=32))
    refresh()
    monkeypatch.setattr(cache._writer, "_pool", lambda: pytest.fail("no background fill expected"))

    _read(spot.id, sessions)

    assert len(_entries(redis_client, spot.id)) == 5


def test_a_closed_session_without_bars_is_served_from_the_cache_too(spot, sessions):
    # The first session has no bars (e.g. warm-up history reaching before the data starts) and
    # the last is still open: the second read takes the empty session's entry from the cache.
    now = sessions[-1].open + dt.timedelta(minutes=100)
    live = [r for r in random_rows(sessions[1:], seed=33) if r[0] < now]
    put_bars(spot.id, live)
    refresh()

    first = _read(spot.id, sessions, now=now)
    second = _read(spot.id, sessions, now=now)

    assert (second.source, second.sessions_cached, second.sessions_computed) == ("sessions", 4, 1)
    assert second.items_json == first.items_json
    _assert_matches(second, live, sessions)


def test_a_fill_that_finishes_before_it_is_tracked_does_not_deadlock(monkeypatch):
    from concurrent.futures import Future

    class Immediate:  # the worker thread finishing the fill before submit() returns
        def submit(self, fn, *args):
            future = Future()
            fn(*args)
            future.set_result(None)
            return future

    writer = cache._WriteBehind()
    monkeypatch.setattr(writer, "_pool", Immediate)
    monkeypatch.setattr(cache, "_write", lambda client, writes: None)
    done = threading.Event()

    def submit():
        writer.submit((1, "7m"), None, [])
        writer.wait((1, "7m"), timeout=1)
        done.set()

    threading.Thread(target=submit, daemon=True).start()
    assert done.wait(5), "submit() deadlocked on its own lock"
    assert writer._pending == {}


def test_a_failing_fill_never_reaches_the_next_reader(spot, sessions, monkeypatch, caplog):
    rows = random_rows(sessions, seed=34)
    put_bars(spot.id, rows)
    refresh()
    release = threading.Event()

    def broken(client, writes):
        release.wait(10)
        raise ValueError("encoding bug")

    monkeypatch.setattr(cache, "_write", broken)
    _read(spot.id, sessions)
    threading.Timer(0.2, release.set).start()
    cache.local_ranges.clear()  # only Redis could serve it now, and the fill never gets there
    read = _read(spot.id, sessions)  # waits on the failing fill: no error, computed again

    assert read.source == "database"
    _assert_matches(read, rows, sessions)
    assert "bar cache fill failed" in caplog.text


def test_the_in_process_tier_keeps_the_most_recent_entries_within_its_byte_budget():
    lru = cache._LocalLRU(max_bytes=100)
    lru.put("a", "A", 40)
    lru.put("b", "B", 40)
    assert lru.get("a") == "A"  # now the most recent
    lru.put("c", "C", 40)  # over budget: the least recent ("b") goes

    assert (lru.get("a"), lru.get("b"), lru.get("c")) == ("A", None, "C")
    lru.put("huge", "H", 101)  # larger than the whole tier: not kept, nothing evicted
    assert (lru.get("huge"), lru.get("a")) == (None, "A")
