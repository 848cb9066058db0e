"""The market-data stream (SPEC §5): tick format, publishing, and the consumer-group reader.

Entry fields (all strings, as Redis stores them): ``key`` (instrument key), ``ts`` (epoch
milliseconds, or ISO-8601 with an offset), ``ltp``, ``volume`` (quantity traded since the
instrument's previous tick), ``oi``, ``bid``, ``ask`` (the last three optional).

Delivery guarantee: an entry is acknowledged only after the bars it touches are committed to
PostgreSQL (and, if it is unusable, after it was copied to the dead-letter stream with the
reason). A consumer that dies leaves its entries pending; the next consumer — the same one
restarted, or another after ``MARKET_DATA_CLAIM_IDLE_MS`` — processes them again before reading
anything newer, and the bar's stream-position guard (services.ticks_merge) makes the replay exact.
One consumer at a time: ticks must be merged in stream order (docs/decisions.md).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import close_old_connections, transaction

from signalsvc.farm.live import LiveCadence
from signalsvc.instruments.selectors import instrument_ids
from signalsvc.marketdata import latest
from signalsvc.marketdata.bar_events import BarEvents
from signalsvc.marketdata.services import TickIn, ticks_merge
from signalsvc.redis_clients import redis_client as shared_redis_client

log = logging.getLogger(__name__)
UTC = dt.UTC


def redis_client() -> redis.Redis:
    return shared_redis_client(decode_responses=True, socket_timeout=10)


def stream_position(entry_id: str) -> int:
    """Stream id "ms-seq" as one orderable integer."""
    ms, _, seq = entry_id.partition("-")
    return int(ms) * 1_000_000 + int(seq or 0)


def parse_ts(text: str) -> dt.datetime:
    if text.isdigit():
        return dt.datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("timestamp has no UTC offset")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class ParsedTick:
    key: str
    ts: dt.datetime
    ltp: float
    volume: float
    oi: float | None
    bid: float | None
    ask: float | None


def _number(fields: dict, name: str, *, required: bool, minimum: float | None = None) -> float | None:
    raw = fields.get(name)
    if raw in (None, ""):
        if required:
            raise ValueError(f"missing {name}")
        return None
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"{name} is not finite")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} below {minimum}")
    return value


def parse_entry(fields: dict) -> ParsedTick:
    """Validate one entry; raise ValueError saying what is wrong."""
    key = fields.get("key")
    if not key:
        raise ValueError("missing key")
    ltp = _number(fields, "ltp", required=True)
    if ltp <= 0:
        raise ValueError("ltp must be positive")
    return ParsedTick(
        key=key,
        ts=parse_ts(fields.get("ts") or ""),
        ltp=ltp,
        volume=_number(fields, "volume", required=False, minimum=0) or 0.0,
        oi=_number(fields, "oi", required=False, minimum=0),
        bid=_number(fields, "bid", required=False, minimum=0),
        ask=_number(fields, "ask", required=False, minimum=0),
    )


def tick_fields(
    *, key: str, ts: dt.datetime, ltp: float, volume: float = 0.0, oi=None, bid=None, ask=None
) -> dict:
    """The stream entry for one tick (what publishers XADD)."""
    fields = {
        "key": key,
        "ts": str(int(ts.timestamp() * 1000)),
        "ltp": repr(float(ltp)),
        "volume": repr(float(volume)),
    }
    for name, value in (("oi", oi), ("bid", bid), ("ask", ask)):
        if value is not None:
            fields[name] = repr(float(value))
    return fields


def publish(client: redis.Redis, entries: Iterable[dict], *, maxlen: int | None = None) -> int:
    """XADD entries in one pipeline. ``maxlen`` trims approximately (keep it far above what the
    consumer can fall behind by)."""
    pipe = client.pipeline(transaction=False)
    count = 0
    for fields in entries:
        pipe.xadd(settings.MARKET_DATA_STREAM, fields, maxlen=maxlen, approximate=True)
        count += 1
    pipe.execute()
    return count


class StreamConsumer:
    """Reads the stream with a consumer group and commits ticks into 1-minute bars."""

    def __init__(
        self, *, client: redis.Redis | None = None, name: str | None = None, batch: int | None = None
    ):
        self.client = client or redis_client()
        self.stream = settings.MARKET_DATA_STREAM
        self.group = settings.MARKET_DATA_GROUP
        # The default name outlives the process: a restarted ingest (make run's, a container's) is the
        # same consumer and reads what its predecessor left pending before anything newer. Under a
        # new name it would merge newer ticks first and wait MARKET_DATA_CLAIM_IDLE_MS to claim the
        # older ones, which the bars' position guard then skips (lost). One ingest per host.
        self.name = name or f"ingest-{socket.gethostname()}"
        self.batch = batch or settings.MARKET_DATA_BATCH
        self.claim_idle_ms = settings.MARKET_DATA_CLAIM_IDLE_MS
        self.stopping = False
        self._last_claim = 0.0
        self.bar_events = BarEvents(self.client)
        self.live = LiveCadence(self.client)

    def ensure_group(self) -> None:
        try:
            # From the start of the stream: entries published before the first consumer are kept.
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def install_signal_handlers(self) -> None:
        def stop(signum, frame):
            log.info("ingest %s: signal %s, finishing the current batch", self.name, signum)
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self) -> None:
        self.ensure_group()
        log.info("ingest %s reading %s as group %s", self.name, self.stream, self.group)
        # Entries delivered to this name and not acknowledged (a restart, or a failed batch) are
        # read again before any new one, in stream order: a newer tick merged first would make the
        # bar's position guard skip them. Inside the loop's error handling, so that an outage that
        # outlasts the first retry is waited out, not a crash.
        redrain = True
        inherited = True
        while not self.stopping:
            try:
                if redrain:
                    self.drain_own_pending()
                    redrain = False
                if inherited:
                    self.wait_for_inherited_pending()
                    inherited = False
                if time.monotonic() - self._last_claim > max(self.claim_idle_ms / 2000, 1):
                    self.claim_dead_consumers()
                # Wake in time to announce coalesced bar changes (at most one a second each) and
                # to request the live chain computations that are due.
                waiting = self.bar_events.pending or self.live.pending
                self.read_new(block_ms=250 if waiting else 1000)
                self.bar_events.flush_due()
                self.live.flush_due()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("ingest: Redis unavailable (%s); retrying in 1 s", exc)
                redrain = True  # a read whose reply was lost left its entries pending
                time.sleep(1)
            except Exception:
                # A database outage: nothing was acked, so everything is re-read after the pause.
                log.exception("ingest: batch failed; retrying in 1 s")
                close_old_connections()
                redrain = True
                time.sleep(1)
        try:
            self.bar_events.flush_due(force=True)
        except redis.RedisError as exc:
            log.warning("ingest: last bar changes not announced (%s)", exc)
        log.info("ingest %s stopped", self.name)

    def drain_own_pending(self) -> int:
        """Entries delivered to this consumer name but never acked (a restart with the same name)."""
        total = 0
        while not self.stopping:
            reply = self.client.xreadgroup(self.group, self.name, {self.stream: "0"}, count=self.batch)
            entries = reply[0][1] if reply else []
            if not entries:
                break
            total += self.process(entries)
        return total

    def wait_for_inherited_pending(self) -> int:
        """Before reading anything new, see every entry that another consumer held unacknowledged
        when this one started processed: acknowledged by its owner, or claimed here once idle for
        MARKET_DATA_CLAIM_IDLE_MS. Entries are merged in stream order, and a bar's position guard
        skips a tick older than one already merged, so a consumer under a new name (a pod
        rescheduled under a new host name) that read newer ticks first would lose its dead
        predecessor's. Costs up to the idle limit, only when such entries exist; entries delivered
        to live consumers after this one started are not waited for. Returns the entries claimed."""
        summary = self.client.xpending(self.stream, self.group)
        if not summary or not summary.get("pending"):
            return 0
        newest_inherited = summary["max"]
        claimed = 0
        logged = False
        while not self.stopping:
            claimed += self.claim_dead_consumers()
            left = self.client.xpending_range(self.stream, self.group, min="-", max=newest_inherited, count=1)
            if not left:
                break
            if not logged:
                log.info(
                    "ingest %s: waiting for entries left pending by %s before reading new ones",
                    self.name,
                    left[0]["consumer"],
                )
                logged = True
            time.sleep(min(1.0, self.claim_idle_ms / 4000))
        return claimed

    def read_new(self, *, block_ms: int) -> int:
        reply = self.client.xreadgroup(
            self.group, self.name, {self.stream: ">"}, count=self.batch, block=block_ms
        )
        entries = reply[0][1] if reply else []
        return self.process(entries) if entries else 0

    def claim_dead_consumers(self) -> int:
        """Take over entries other consumers left pending for longer than the idle limit, and
        forget consumers that have nothing pending and have been idle for an hour."""
        self._last_claim = time.monotonic()
        total = 0
        start = "0-0"
        while not self.stopping:
            next_start, entries, *_ = self.client.xautoclaim(
                self.stream,
                self.group,
                self.name,
                min_idle_time=self.claim_idle_ms,
                start_id=start,
                count=self.batch,
            )
            entries = [e for e in entries if e and e[1] is not None]
            if entries:
                log.info("ingest %s claimed %d pending entries", self.name, len(entries))
                total += self.process(entries)
            if next_start in ("0-0", b"0-0"):
                break
            start = next_start
        for consumer in self.client.xinfo_consumers(self.stream, self.group):
            if consumer["name"] != self.name and consumer["pending"] == 0 and consumer["idle"] > 3_600_000:
                self.client.xgroup_delconsumer(self.stream, self.group, consumer["name"])
        return total

    def process(self, entries: list) -> int:
        """Commit one batch, then dead-letter the unusable entries, then ack them all."""
        parsed: list[tuple[str, ParsedTick]] = []
        dead: list[tuple[str, dict, str]] = []
        for entry_id, fields in entries:
            try:
                parsed.append((entry_id, parse_entry(fields)))
            except (ValueError, TypeError) as exc:
                dead.append((entry_id, fields, str(exc)))
        ids = instrument_ids(keys={t.key for _, t in parsed})
        ticks = []
        for entry_id, tick in parsed:
            instrument_id = ids.get(tick.key)
            if instrument_id is None:
                dead.append((entry_id, {"key": tick.key}, "unknown instrument"))
                continue
            ticks.append(
                TickIn(instrument_id, tick.ts, tick.ltp, tick.volume, tick.oi, stream_position(entry_id))
            )
        with transaction.atomic():
            ticks_merge(ticks=ticks)
        if parsed:
            latest.latest_ticks_store(self.client, [t for _, t in parsed if t.key in ids])
        if ticks:
            self.bar_events.changed({t.instrument_id for t in ticks})
            self.live.changed({t.key for _, t in parsed if t.key in ids})
        if dead:
            pipe = self.client.pipeline(transaction=False)
            for entry_id, fields, reason in dead:
                pipe.xadd(
                    settings.MARKET_DATA_DEAD_LETTER_STREAM,
                    {"entry_id": entry_id, "reason": reason, "fields": json.dumps(fields)},
                    maxlen=100_000,
                    approximate=True,
                )
            pipe.execute()
            log.warning(
                "ingest: %d unusable entries moved to %s", len(dead), settings.MARKET_DATA_DEAD_LETTER_STREAM
            )
        self.client.xack(self.stream, self.group, *[entry_id for entry_id, _ in entries])
        return len(entries)


def ticks_ingest(client: redis.Redis, ticks: Iterable, *, consumer_name: str = "local") -> int:
    """Publish ``ticks`` (objects with key, ts, ltp, volume, oi, bid, ask: the simulator's ``Tick``)
    to the stream and consume it to the end in this process, through the real consumer group: what
    tests and benchmarks use to put a market into Redis and PostgreSQL. Returns the entries read."""
    publish(
        client,
        (
            tick_fields(key=t.key, ts=t.ts, ltp=t.ltp, volume=t.volume, oi=t.oi, bid=t.bid, ask=t.ask)
            for t in ticks
        ),
    )
    consumer = StreamConsumer(client=client, name=consumer_name, batch=5000)
    consumer.ensure_group()
    read = 0
    while batch := consumer.read_new(block_ms=10):
        read += batch
    consumer.bar_events.flush_due(force=True)
    return read
