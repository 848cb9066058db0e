"""Bars of any timeframe through a Redis cache (SPEC §8: closed buckets long TTL, the open bucket
short TTL).

Two levels, both holding numeric arrays and the rendered JSON items:

* **Sessions** — the buckets of one *closed* session of one instrument and timeframe, under
  ``tf:bars:{instrument}:{label}:{date}:{token}`` for ``CACHE_TTL_SECONDS``. A request reads its
  closed sessions from here and aggregates the rest (misses, the open session, sessions with
  fresh changes) in one PostgreSQL query.
* **Ranges** — a whole response range ``[start, end)`` made only of closed, unchanged sessions,
  under ``tf:range:{instrument}:{label}:{start}:{end}`` for ``RANGE_TTL_SECONDS``, stamped with the
  instrument's epoch token ``tf:epoch:{instrument}``. A repeated historical request is one
  lookup.

The cache never serves a stale bucket:

* The open session (close in the future) is never cached: it is recomputed on every request (a
  few hundred 1-minute rows at most). That is the "short TTL" of the open bucket, set to zero.
* Bars can be corrected after the fact. A session holding a 1-minute bar with ``updated_at`` newer
  than the refresh watermark is recomputed and not cached (``selectors.sessions_changed_after``,
  one indexed query), and a range holding one is not served from the range level.
* When the refresh (``services.rollups_refresh``) moves the watermark past a change, it first
  deletes the session's token (hash ``tf:tok:{instrument}``: date -> random token) and gives the
  instrument a new random epoch token. Readers create a fresh random token when none exists
  (so an evicted token cannot resurrect old entries), and always read the watermark and check
  for changes *before* they take the tokens, and take the tokens before they read PostgreSQL: an
  entry is never older than the tokens it is stored under.

Entries are written after the response by one background thread per process (``_WriteBehind``):
safe because they are filed under tokens taken before PostgreSQL was read.

Requests for custom timeframes are counted in ``tf:stats:{instrument}:{label}`` and flushed to
``signal_custom_timeframes`` by the refresh task. Each read of a custom timeframe is also counted
as warm, cold or changed (``read_counts``, and the hash ``tf:reads`` across processes).

The custom timeframes in use are kept warm by farm tasks (``sessions_warm``, called by
``services.custom_timeframe_warm``): every closed session of the history a request can ask for
is in the cache before a user asks, so only the first request ever for an (instrument,
timeframe) meets a cold aggregation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import struct
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import cachetools
import numpy as np
import redis
from django.conf import settings

from signalsvc.core.calendar import Session
from signalsvc.redis_clients import redis_client as shared_redis_client
from timeframes import selectors
from timeframes.core.grammar import Timeframe
from timeframes.render import bar_items

log = logging.getLogger(__name__)

UTC = dt.UTC
CACHE_TTL_SECONDS = settings.TIMEFRAMES_CACHE_TTL_SECONDS
RANGE_TTL_SECONDS = settings.TIMEFRAMES_RANGE_CACHE_TTL_SECONDS
LOCAL_CACHE_BYTES = settings.TIMEFRAMES_LOCAL_CACHE_BYTES
TOKEN_PREFIX = "tf:tok:"
EPOCH_PREFIX = "tf:epoch:"
ENTRY_PREFIX = "tf:bars:"
RANGE_PREFIX = "tf:range:"
STATS_PREFIX = "tf:stats:"
READS_KEY = "tf:reads"
WARM_PENDING_PREFIX = "tf:warm:pending:"
WARM_CLOSED_PREFIX = "tf:warm:closed:"
_MAGIC = b"TFB3"
_HEADER = struct.Struct("<4sII")  # magic, buckets, JSON bytes
_FLOAT_FIELDS = ("open", "high", "low", "close", "volume", "oi")
_EPOCH_BYTES = 16
STATS_FLUSH_SECONDS = 5.0
WATERMARK_MAX_AGE_SECONDS = 1.0  # an older watermark is safe for readers (see selectors.watermark_get)


def redis_client() -> redis.Redis:
    return shared_redis_client(decode_responses=False, socket_timeout=5)


def token_key(instrument_id: int) -> str:
    return f"{TOKEN_PREFIX}{instrument_id}"


def epoch_key(instrument_id: int) -> str:
    return f"{EPOCH_PREFIX}{instrument_id}"


def stats_key(instrument_id: int, label: str) -> str:
    return f"{STATS_PREFIX}{instrument_id}:{label}"


def warm_pending_key(instrument_id: int, label: str) -> str:
    return f"{WARM_PENDING_PREFIX}{instrument_id}:{label}"


def _new_token() -> str:
    return secrets.token_hex(_EPOCH_BYTES // 2)


# -- read outcomes ---------------------------------------------------------------------------------

# How a read of a custom timeframe was served (see ``read_outcome``).
WARM = "warm"
COLD = "cold"
CHANGED = "changed"
READ_OUTCOMES = (WARM, COLD, CHANGED)


def read_outcome(computed: Sequence[Session], changed: set[dt.date], now: dt.datetime) -> str:
    """``cold`` when a read aggregated in PostgreSQL a closed session that the cache could have held
    (a miss: what the farm's warm tasks exist to prevent); ``changed`` when the only closed sessions
    it aggregated hold a correction the refresh has not settled yet (never cacheable meanwhile);
    ``warm`` otherwise. The open session is recomputed on every read by design and does not count."""
    past = [s for s in computed if s.close <= now]
    if any(s.date not in changed for s in past):
        return COLD
    return CHANGED if past else WARM


# -- blocks ---------------------------------------------------------------------------------------


# One record per bucket in a cache entry: little-endian, fixed width, so a session's entry is a
# byte slice of the records of a whole computed range.
RECORD = np.dtype([("start", "<i8"), ("end", "<i8"), ("count", "<i8")] + [(f, "<f8") for f in _FLOAT_FIELDS])


@dataclass(frozen=True)
class Block:
    """Buckets (arrays as in ``selectors``), their JSON items each followed by a comma, and the byte
    offset of each item (``len(offsets) == buckets + 1``); ``records`` is the same buckets as
    ``RECORD`` rows when already built."""

    bars: dict[str, np.ndarray]
    items: bytes
    offsets: np.ndarray
    records: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.bars["start"])


def to_records(bars: dict[str, np.ndarray]) -> np.ndarray:
    records = np.empty(len(bars["start"]), dtype=RECORD)
    records["start"] = bars["start"].view(np.int64)
    records["end"] = bars["end"].view(np.int64)
    records["count"] = bars["count"]
    for field in _FLOAT_FIELDS:
        records[field] = bars[field]
    return records


def encode_block(block: Block) -> bytes:
    records = block.records if block.records is not None else to_records(block.bars)
    return b"".join(
        (
            _HEADER.pack(_MAGIC, len(block), len(block.items)),
            records.tobytes(),
            block.offsets.astype("<i8").tobytes(),
            block.items,
        )
    )


def decode_block(data: bytes | memoryview, offset: int = 0) -> Block | None:
    """The block at ``offset`` of ``data``, or None for anything unreadable (treated as a miss)."""
    if len(data) - offset < _HEADER.size:
        return None
    magic, n, json_len = _HEADER.unpack_from(data, offset)
    pos = offset + _HEADER.size
    if magic != _MAGIC or len(data) - pos != RECORD.itemsize * n + 8 * (n + 1) + json_len:
        return None
    records = np.frombuffer(data, dtype=RECORD, count=n, offset=pos)
    offsets = np.frombuffer(data, dtype="<i8", count=n + 1, offset=pos + RECORD.itemsize * n)
    bars = {"start": records["start"].view(selectors.US), "end": records["end"].view(selectors.US)}
    bars.update((field, records[field]) for field in _FLOAT_FIELDS)
    bars["count"] = records["count"]
    items_at = pos + RECORD.itemsize * n + 8 * (n + 1)
    return Block(
        bars=bars, items=bytes(data[items_at : items_at + json_len]), offsets=offsets, records=records
    )


def _split(bars: dict[str, np.ndarray], sessions: Sequence[Session]) -> list[Block]:
    """One rendered block per session (``bars`` sorted, every bucket inside one of ``sessions``)."""
    items, offsets = bar_items(bars)
    records = to_records(bars)
    starts = bars["start"].view(np.int64)
    opens = np.array([selectors.to_us(s.open) for s in sessions], dtype=np.int64)
    closes = np.array([selectors.to_us(s.close) for s in sessions], dtype=np.int64)
    los = np.searchsorted(starts, opens, side="left").tolist()
    his = np.searchsorted(starts, closes, side="left").tolist()
    blocks = []
    for lo, hi in zip(los, his, strict=True):
        a, b = int(offsets[lo]), int(offsets[hi])
        blocks.append(
            Block(
                bars={k: v[lo:hi] for k, v in bars.items()},
                items=items[a:b],
                offsets=offsets[lo : hi + 1] - a,
                records=records[lo:hi],
            )
        )
    return blocks


# -- tokens ---------------------------------------------------------------------------------------


# Sets each missing field to its proposed token (HSETNX: the first writer wins) and returns the
# fields' values, in one round trip however many sessions a request spans.
_TAKE_TOKENS = """
for i = 1, #ARGV - 1, 2 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[#ARGV]))
local fields = {}
for i = 1, #ARGV - 1, 2 do fields[#fields + 1] = ARGV[i] end
return redis.call('HMGET', KEYS[1], unpack(fields))
"""


def session_tokens(client: redis.Redis, instrument_id: int, dates: Sequence[dt.date]) -> list[str]:
    """The current token of each session, creating missing ones (first writer wins)."""
    if not dates:
        return []
    key = token_key(instrument_id)
    fields = [d.isoformat() for d in dates]
    values = client.hmget(key, fields)
    missing = [i for i, v in enumerate(values) if v is None]
    if missing:
        proposals = [x for i in missing for x in (fields[i], _new_token())]
        taken = client.eval(_TAKE_TOKENS, 1, key, *proposals, CACHE_TTL_SECONDS + 86400)
        for i, v in zip(missing, taken, strict=True):
            values[i] = v
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _epoch(client: redis.Redis, instrument_id: int, current: bytes | None) -> bytes:
    if current is not None:
        return current
    key = epoch_key(instrument_id)
    pipe = client.pipeline(transaction=False)
    pipe.set(key, _new_token(), nx=True, ex=RANGE_TTL_SECONDS + 86400)
    pipe.get(key)
    return pipe.execute()[1]


def sessions_invalidate(*, pairs: Sequence[tuple[int, dt.date]], client: redis.Redis | None = None) -> int:
    """Forget the tokens of (instrument, session date) pairs and renew those instruments' epochs:
    entries computed before are never read again (they expire by TTL). Called by the refresh
    before it moves the watermark."""
    if not pairs:
        return 0
    client = client or redis_client()
    by_instrument: dict[int, list[str]] = {}
    for instrument_id, day in pairs:
        by_instrument.setdefault(instrument_id, []).append(day.isoformat())
    pipe = client.pipeline(transaction=False)
    for instrument_id, fields in by_instrument.items():
        pipe.hdel(token_key(instrument_id), *fields)
        pipe.set(epoch_key(instrument_id), _new_token(), ex=RANGE_TTL_SECONDS + 86400)
    pipe.execute()
    return len(pairs)


# -- in-process tier of the range level -------------------------------------------------------------


class _LocalLRU:
    """A small LRU in this process, bounded in bytes, in front of Redis: a large range costs
    milliseconds to move out of Redis (and to copy into a response), and a repeated request is
    common. Keys always include the epoch token, so entries obey the same invalidation as Redis.
    cachetools does the bookkeeping; its caches are not thread-safe, hence the lock."""

    def __init__(self, max_bytes: int) -> None:
        self._entries = cachetools.LRUCache(maxsize=max_bytes, getsizeof=lambda entry: entry[1])
        self._lock = threading.Lock()

    def get(self, key: tuple) -> object | None:
        with self._lock:
            entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: tuple, value: object, size: int) -> None:
        if size > self._entries.maxsize:  # larger than the whole tier: not kept
            return
        with self._lock:
            self._entries[key] = (value, size)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _block_size(block: Block) -> int:
    return len(block.items) + 80 * len(block) + 200


local_ranges = _LocalLRU(LOCAL_CACHE_BYTES)


# -- reads ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BarsRead:
    """Bars whose bucket starts in the requested range: arrays, the JSON items (each followed by a
    comma, no brackets) and where they came from (``source``: "range" cache, "sessions" (at least
    one from the cache) or "database")."""

    bars: dict[str, np.ndarray]
    items_json: bytes
    sessions_cached: int
    sessions_computed: int
    source: str
    cache_key: tuple | None = None  # (range key, epoch) of a range-level hit: a stable identity
    outcome: str = WARM  # of a custom timeframe: warm, cold or changed (``read_outcome``)

    @property
    def count(self) -> int:
        return len(self.bars["start"])


def _entry_key(instrument_id: int, label: str, day: dt.date, token: str) -> str:
    return f"{ENTRY_PREFIX}{instrument_id}:{label}:{day.isoformat()}:{token}"


def range_key(instrument_id: int, label: str, start: dt.datetime, end: dt.datetime) -> str:
    return f"{RANGE_PREFIX}{instrument_id}:{label}:{selectors.to_us(start)}:{selectors.to_us(end)}"


def bars_read(
    *,
    instrument_id: int,
    timeframe: Timeframe,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime | None = None,
    client: redis.Redis | None = None,
) -> BarsRead:
    """Bars of ``timeframe`` whose bucket starts in ``[start, end)``, exact and current, served from
    Redis where it can be (see the module docstring), aggregated in PostgreSQL otherwise. When
    Redis is unreachable the bars are aggregated in PostgreSQL without the cache."""
    now = now or dt.datetime.now(UTC)
    try:
        read = _bars_read(
            instrument_id=instrument_id,
            timeframe=timeframe,
            start=start,
            end=end,
            now=now,
            client=client or redis_client(),
        )
    except redis.RedisError as exc:
        log.warning("bar cache unavailable (%s); reading PostgreSQL only", exc)
    else:
        if read.outcome == COLD and not timeframe.is_standard:
            _warm_on_demand(instrument_id, timeframe.label)
        return read
    sessions = selectors.market_calendar().sessions_overlapping(start, end)
    rollup = selectors.is_rollup_timeframe(timeframe)
    watermark = selectors.watermark_get(tracker=timeframe.label) if rollup else None
    if watermark is not None:
        computed = selectors.bars_from_rollup(
            instrument_id=instrument_id, timeframe=timeframe, sessions=sessions, watermark=watermark
        )
    else:
        computed = selectors.bars_from_minutes(
            instrument_id=instrument_id, timeframe=timeframe, sessions=sessions
        )
    result = _assemble(_split(computed, sessions), start, end)
    outcome = read_outcome(sessions, set(), now)
    if not timeframe.is_standard:
        _stats.count_read(outcome)
    return BarsRead(result.bars, result.items, 0, len(sessions), "database", outcome=outcome)


def _warm_on_demand(instrument_id: int, label: str) -> None:
    """A cold read of a custom timeframe queues the farm's warm of its whole history now rather than
    at the next minute's flush of the request counters, so that the next request for another range
    (or a session the cache lost) is served warm. Coalesced with every other trigger. It costs a
    mark, the instrument's key and a publish (~2 ms) on a read that has just aggregated in
    PostgreSQL; a failure costs later cold reads, never this read."""
    from timeframes.services import custom_timeframes_warm_enqueue  # services builds on this module

    try:
        custom_timeframes_warm_enqueue(pairs=[(instrument_id, label)])
    except Exception:  # the broker, Redis or PostgreSQL: logged, the read is already answered
        log.warning("could not queue the warm of %s %s", instrument_id, label, exc_info=True)


def _bars_read(
    *,
    instrument_id: int,
    timeframe: Timeframe,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    client: redis.Redis,
) -> BarsRead:
    label = timeframe.label
    _writer.wait((instrument_id, label))
    sessions = selectors.market_calendar().sessions_overlapping(start, end)
    rollup = selectors.is_rollup_timeframe(timeframe)
    watermark = selectors.watermark_get(
        tracker=label if rollup else selectors.CACHE_TRACKER, max_age=WATERMARK_MAX_AGE_SECONDS
    )
    closed = [s for s in sessions if s.close <= now] if watermark is not None else []
    changed = (
        selectors.sessions_changed_after(instrument_id=instrument_id, sessions=closed, watermark=watermark)
        if closed
        else set()
    )
    whole_range = bool(sessions) and len(closed) == len(sessions) and not changed

    epoch = None
    if whole_range:
        rkey = range_key(instrument_id, label, start, end)
        epoch = _epoch(client, instrument_id, client.get(epoch_key(instrument_id)))
        block = local_ranges.get((rkey, epoch))
        if block is None:
            raw = client.get(rkey)
            if raw is not None and raw[:_EPOCH_BYTES] == epoch:
                block = decode_block(memoryview(raw), _EPOCH_BYTES)
                if block is not None:
                    local_ranges.put((rkey, epoch), block, _block_size(block))
        if block is not None:
            if not timeframe.is_standard:
                _stats.add(
                    instrument_id, timeframe.label, now, cached=len(sessions), computed=0, outcome=WARM
                )
                if _stats.due():
                    stats_flush(client)
            return BarsRead(block.bars, block.items, len(sessions), 0, "range", (rkey, epoch))

    cacheable = [s for s in closed if s.date not in changed]
    tokens = session_tokens(client, instrument_id, [s.date for s in cacheable])
    keys = {
        s.date: _entry_key(instrument_id, label, s.date, t) for s, t in zip(cacheable, tokens, strict=True)
    }
    blocks: dict[dt.date, Block] = {}
    if keys:
        for day, raw in zip(keys, client.mget(list(keys.values())), strict=True):
            block = decode_block(raw) if raw is not None else None
            if block is not None:
                blocks[day] = block

    needed = [s for s in sessions if s.date not in blocks]
    fresh: dict[dt.date, Block] = {}
    if needed:
        if rollup and watermark is not None:
            computed = selectors.bars_from_rollup(
                instrument_id=instrument_id, timeframe=timeframe, sessions=needed, watermark=watermark
            )
        else:
            computed = selectors.bars_from_minutes(
                instrument_id=instrument_id, timeframe=timeframe, sessions=needed
            )
        fresh = dict(zip((s.date for s in needed), _split(computed, needed), strict=True))

    result = _assemble([blocks[s.date] if s.date in blocks else fresh[s.date] for s in sessions], start, end)
    writes = [(keys[day], b"", block, CACHE_TTL_SECONDS) for day, block in fresh.items() if day in keys]
    if epoch is not None:
        writes.append((rkey, epoch, result, RANGE_TTL_SECONDS))
        local_ranges.put((rkey, epoch), result, _block_size(result))
    outcome = read_outcome(needed, changed, now)
    if not timeframe.is_standard:
        _stats.add(instrument_id, label, now, cached=len(blocks), computed=len(needed), outcome=outcome)
    if writes or (not timeframe.is_standard and _stats.due()):
        _writer.submit((instrument_id, label), client, writes)
    source = "sessions" if blocks else "database"
    return BarsRead(result.bars, result.items, len(blocks), len(needed), source, outcome=outcome)


# -- warming ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarmReport:
    """What ``sessions_warm`` did: closed sessions of the window, those already cached (their TTL
    renewed), those aggregated now, and those skipped because they hold an unsettled change."""

    sessions: int
    cached: int
    computed: int
    changed: int


def sessions_warm(
    *,
    instrument_id: int,
    timeframe: Timeframe,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime | None = None,
    client: redis.Redis | None = None,
) -> WarmReport:
    """Put every closed session of ``[start, end)`` into the cache: the sessions it lacks are
    aggregated in one PostgreSQL query and written; those it has get their TTL renewed, so the
    entries of a timeframe in use never expire. Idempotent.

    It caches exactly what a reader would: nothing before the first refresh, and no session
    holding a change newer than the watermark (the refresh that settles it invalidates the session
    and queues another warm). Same order as readers, for the same reason (module docstring): the
    watermark and the changes first, then the tokens, then PostgreSQL. The watermark is read fresh:
    a warm queued after a refresh committed must see that refresh's watermark."""
    now = now or dt.datetime.now(UTC)
    client = client or redis_client()
    closed = [s for s in selectors.market_calendar().sessions_overlapping(start, end) if s.close <= now]
    watermark = selectors.watermark_get(tracker=selectors.CACHE_TRACKER)
    if watermark is None or not closed:
        return WarmReport(len(closed), 0, 0, 0)
    changed = selectors.sessions_changed_after(
        instrument_id=instrument_id, sessions=closed, watermark=watermark
    )
    cacheable = [s for s in closed if s.date not in changed]
    tokens = session_tokens(client, instrument_id, [s.date for s in cacheable])
    keys = [
        _entry_key(instrument_id, timeframe.label, s.date, t) for s, t in zip(cacheable, tokens, strict=True)
    ]
    # EXPIRE answers whether the entry exists and renews it, in one round trip for the window.
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.expire(key, CACHE_TTL_SECONDS)
    present = pipe.execute()
    missing = [(s, key) for s, key, hit in zip(cacheable, keys, present, strict=True) if not hit]
    if missing:
        sessions = [s for s, _ in missing]
        computed = selectors.bars_from_minutes(
            instrument_id=instrument_id, timeframe=timeframe, sessions=sessions
        )
        pipe = client.pipeline(transaction=False)
        for (_, key), block in zip(missing, _split(computed, sessions), strict=True):
            pipe.set(key, encode_block(block), ex=CACHE_TTL_SECONDS)
        pipe.execute()
    return WarmReport(len(closed), len(cacheable) - len(missing), len(missing), len(changed))


def _write(client: redis.Redis, writes: Sequence[tuple[str, bytes, Block, int]]) -> None:
    pipe = client.pipeline(transaction=False)
    for key, prefix, block, ttl in writes:
        pipe.set(key, prefix + encode_block(block), ex=ttl)
    if _stats.due():
        _stats.write(pipe)
    if len(pipe):
        pipe.execute()


class _WriteBehind:
    """Cache fills after the response: encoding and writing a year of session entries costs about
    as much as rendering it, and the response does not depend on it.

    One thread per process writes in submission order. A late write is as safe as an immediate
    one: entries are stored under the tokens and epoch taken *before* PostgreSQL was read, so an
    invalidation in between leaves them unreachable. A read waits for the fill of its own
    (instrument, timeframe) still in flight (a repeated request finds the cache filled instead of
    recomputing); fills beyond ``TIMEFRAMES_WRITE_BEHIND_MAX_PENDING`` are written in the request
    itself (back-pressure). ``TIMEFRAMES_CACHE_WRITE_BEHIND = False`` writes every fill in the request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0
        self._pending: dict[tuple[int, str], Future] = {}

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None or self._pid != os.getpid():  # a forked child has no thread
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tf-cache-fill")
            self._pid = os.getpid()
            self._pending = {}
        return self._executor

    def submit(self, scope: tuple[int, str], client: redis.Redis, writes: list) -> None:
        enabled = settings.TIMEFRAMES_CACHE_WRITE_BEHIND
        limit = settings.TIMEFRAMES_WRITE_BEHIND_MAX_PENDING
        future = None
        with self._lock:
            if enabled and len(self._pending) < limit:
                future = self._pool().submit(self._run, client, writes)
                self._pending[scope] = future
        if future is None:
            _write(client, writes)
            return
        # Outside the lock: a fill that has already finished runs the callback right here, and
        # the callback takes the lock.
        future.add_done_callback(lambda f, scope=scope: self._done(scope, f))

    @staticmethod
    def _run(client: redis.Redis, writes: list) -> None:
        # A cache fill lost is a later recomputation, nothing more: never let it reach a reader
        # (readers wait on this future).
        try:
            _write(client, writes)
        except redis.RedisError as exc:
            log.warning("bar cache fill failed (%s)", exc)
        except Exception:
            log.exception("bar cache fill failed")

    def _done(self, scope: tuple[int, str], future: Future) -> None:
        with self._lock:
            if self._pending.get(scope) is future:
                del self._pending[scope]

    def wait(self, scope: tuple[int, str] | None = None, timeout: float = 5.0) -> None:
        """Wait for the fill of ``scope`` (every pending fill when None)."""
        with self._lock:
            futures = list(self._pending.values()) if scope is None else [self._pending.get(scope)]
        for future in futures:
            if future is not None:
                with contextlib.suppress(FutureTimeout):
                    future.result(timeout=timeout)


_writer = _WriteBehind()


def fills_wait(timeout: float = 5.0) -> None:
    """Wait until this process's pending cache fills are written (tests, benchmarks, shutdown)."""
    _writer.wait(None, timeout)


def _assemble(blocks: Sequence[Block], start: dt.datetime, end: dt.datetime) -> Block:
    """Concatenate session blocks (in order) and keep the buckets starting in ``[start, end)``."""
    blocks = [b for b in blocks if len(b)]
    if not blocks:
        return Block(selectors.empty_bars(), b"", np.zeros(1, dtype=np.int64))
    bars = {k: np.concatenate([b.bars[k] for b in blocks]) for k in selectors.BAR_FIELDS}
    items = b"".join(b.items for b in blocks)
    sizes = np.array([len(b.items) for b in blocks], dtype=np.int64)
    bases = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    offsets = np.concatenate(
        [b.offsets[:-1] + base for b, base in zip(blocks, bases, strict=True)] + [[len(items)]]
    )
    starts = bars["start"].view(np.int64)
    lo, hi = np.searchsorted(starts, [selectors.to_us(start), selectors.to_us(end)], side="left").tolist()
    if lo == 0 and hi == len(starts):
        return Block(bars, items, offsets)
    a, b = int(offsets[lo]), int(offsets[hi])
    return Block({k: v[lo:hi] for k, v in bars.items()}, items[a:b], offsets[lo : hi + 1] - a)


class _StatsBuffer:
    """Request counters of custom timeframes, summed in this process and written to Redis
    (``tf:stats:*``) at most every ``STATS_FLUSH_SECONDS`` (within a request's own pipeline when
    it has one), so a cached read costs no extra round trip. Counts of a process killed in
    between are lost: they are usage statistics, not data.

    Reads are also counted by outcome (warm, cold, changed): in total for this process
    (``read_counts``) and, with the same flush, in the Redis hash ``tf:reads`` for all processes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[int, str], list] = {}
        self._since = time.monotonic()
        self.reads: dict[str, int] = dict.fromkeys(READ_OUTCOMES, 0)
        self._reads_unsent: dict[str, int] = dict.fromkeys(READ_OUTCOMES, 0)

    def count_read(self, outcome: str) -> None:
        with self._lock:
            self.reads[outcome] += 1
            self._reads_unsent[outcome] += 1

    def add(
        self, instrument_id: int, label: str, now: dt.datetime, *, cached: int, computed: int, outcome: str
    ) -> None:
        self.count_read(outcome)
        with self._lock:
            entry = self._counts.get((instrument_id, label))
            if entry is None:
                self._counts[(instrument_id, label)] = [1, cached, computed, now, now]
            else:
                entry[0] += 1
                entry[1] += cached
                entry[2] += computed
                entry[4] = now

    def due(self) -> bool:
        return time.monotonic() - self._since >= STATS_FLUSH_SECONDS or len(self._counts) >= 1000

    def write(self, pipe: redis.client.Pipeline) -> None:
        with self._lock:
            counts, self._counts, self._since = self._counts, {}, time.monotonic()
            reads, self._reads_unsent = self._reads_unsent, dict.fromkeys(READ_OUTCOMES, 0)
        for outcome, n in reads.items():
            if n:
                pipe.hincrby(READS_KEY, outcome, n)
        for (instrument_id, label), (requests, cached, computed, first, last) in counts.items():
            key = stats_key(instrument_id, label)
            pipe.hincrby(key, "requests", requests)
            pipe.hincrby(key, "cached", cached)
            pipe.hincrby(key, "computed", computed)
            pipe.hsetnx(key, "first", first.isoformat())
            pipe.hset(key, "last", last.isoformat())


_stats = _StatsBuffer()


def read_counts() -> dict[str, int]:
    """Reads of custom timeframes served by this process, by outcome (``READ_OUTCOMES``), since it
    started or since ``read_counts_reset``."""
    with _stats._lock:
        return dict(_stats.reads)


def read_counts_reset() -> None:
    with _stats._lock:
        _stats.reads = dict.fromkeys(READ_OUTCOMES, 0)


def read_totals(client: redis.Redis | None = None) -> dict[str, int]:
    """Reads of custom timeframes by outcome, summed over every process (as flushed so far)."""
    values = (client or redis_client()).hgetall(READS_KEY)
    totals = dict.fromkeys(READ_OUTCOMES, 0)
    for key, value in values.items():
        totals[key.decode() if isinstance(key, bytes) else key] = int(value)
    return totals


def stats_flush(client: redis.Redis | None = None) -> None:
    """Write this process's buffered request counters to Redis now."""
    pipe = (client or redis_client()).pipeline(transaction=False)
    _stats.write(pipe)
    if len(pipe):
        pipe.execute()


def stats_drain(client: redis.Redis | None = None, limit: int = 10_000) -> list[dict]:
    """Take (read and delete, atomically per key) the request counters of custom timeframes."""
    client = client or redis_client()
    out = []
    for raw_key in client.scan_iter(match=f"{STATS_PREFIX}*", count=1000):
        key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        pipe = client.pipeline(transaction=True)
        pipe.hgetall(key)
        pipe.delete(key)
        values, _ = pipe.execute()
        if not values:
            continue
        fields = {k.decode(): v.decode() for k, v in values.items()}
        _, instrument_id, label = key.rsplit(":", 2)
        out.append(
            {
                "instrument_id": int(instrument_id),
                "timeframe": label,
                "requests": int(fields.get("requests", 0)),
                "cached": int(fields.get("cached", 0)),
                "computed": int(fields.get("computed", 0)),
                "first": dt.datetime.fromisoformat(fields["first"]) if "first" in fields else None,
                "last": dt.datetime.fromisoformat(fields["last"]) if "last" in fields else None,
            }
        )
        if len(out) >= limit:
            break
    return out
