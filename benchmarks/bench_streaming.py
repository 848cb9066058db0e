"""WebSocket fan-out under load (issue 10): one uvicorn node, 10,000 connections, 100 topics, with
channels_redis ``group_send`` as the baseline and a framework-free floor measured in the same run.

Setup, in the bench database ``signal_bench`` and Redis DB 9 (``bench_timeframes._configure``):
100 synthetic underlyings ``NSE@BWS000@equity_spot`` ... ``BWS099`` with one call option each,
registered with ``instruments_upsert``, and each option's latest Greeks in Redis
(field ``<key>`` of the chain hash ``greeks:chain:<underlying>``, the shape the chain task stores,
~700 bytes) ending in a field ``"bench":"<phase>:<publish ns>"`` that the bench controls. One
*update* of a topic = HSET of that JSON with the current ``time.time_ns()``, then PUBLISH
``signal:greeks:<underlying>`` (the chain task's announcement), in one pipeline: the hub reads the
option's value (one HMGET per topic update) and writes it to its sockets. Latency = receive time - publish time, both
``time.time_ns()`` on this machine (loopback only). Phase ids are unique in the run, and snapshots
(``"snapshot":true``, whatever value was stored) are not counted.

Processes, all started and stopped by this module:

* **server**: one uvicorn process with ``scripts/start-ws.sh``'s flags (``--loop uvloop --http
  httptools --ws websockets-sansio --lifespan off --no-access-log``, one worker) on a free loopback
  port, open-file limit raised to the hard limit, anonymous reads, ``WEBSOCKET_MAX_CONNECTIONS=20000``,
  every other setting at its default (heartbeat, GC freeze, backlog). It is started through a small
  launcher here (``_serve``) that registers a ``gc.callbacks`` probe (every collection's duration and
  generation, written to a file) and then calls ``uvicorn.main``: no server code is changed.
* **clients**: 4 processes x 2,500 connections (2 x 500 for the 1,000-receiver comparison), asyncio
  on uvloop with a minimal RFC 6455 client written here (handshake, unmasked server frames, masked
  client frames, pong to pings; no compression offered), kept small because the clients share the
  machine's 2 cores with the server. Each connection: handshake, ``connection`` message, one
  ``subscribe`` to ``greeks`` on one of the 100 options (100 connections per topic), its
  confirmation. Per message: one timestamp per read, the ``bench`` field found from the end.
* **publisher**: one process, asyncio + redis.asyncio; a phase of rate r per topic for D seconds
  publishes 100 x r x D updates evenly spread (topic i's k-th update at t0 + k/r + i/(100 r)); when
  late it publishes what is due in one pipeline and records the lag.

Phases of the 10,000-connection run (the first 6 s after the connect burst, when the server's GC
freeze has run; each once the server is idle, < 0.25 cores, 15 s at most, so that one phase's
backlog does not land in the next; counts are taken 2 s after the last publish): (a) 1 update/s per topic for 10 s (10,000 messages/s); (b) 10/s for 10 s (100,000
messages/s); then a ramp, 6 s a step: upwards (15, 20, 30, 50 /s) until p99 >= 100 ms, or, when (b)
missed p99 < 100 ms, downwards (5, 2, 0.5, 0.2 /s) until p99 < 100 ms. The highest delivered
messages/s among the phases with p99 < 100 ms is the "highest" row.

The same phases then run against the **floor**: ``_Floor``, a server written here on uvloop with no
Django, Channels or ASGI: the upgrade, one pub/sub connection (subscribes serialised), one MGET per
topic update (coalesced per topic like the hub), the frame encoded once and written to each socket;
no per-connection task, no conflation, no limits. It is what one Python process can do on this
machine, so the hub's distance to it is the cost of its stack, and the floor's distance to the
targets is the machine's.

Baseline: a naive Channels design served by the same uvicorn (``baseline_application``: each
consumer joins the group of its topic with ``group_add``; ``group_send`` per update from the
publisher, at most 8 in flight, carries the whole data message (most favourable to it: no
per-socket read), the consumer's handler sends it) on channels_redis's ``RedisChannelLayer`` (the
project's ``CHANNEL_LAYERS``, default capacity and expiry), and for reference
``RedisPubSubChannelLayer``. At 1,000 receivers (10 per topic), a scale the issue reports it
survives, with the same rates for the hub at 1,000 receivers: 1, 2, 3, 5, 7, 10, 15, 20, 30, 50
updates/s per topic, 6 s each, stopping after the first step with p99 >= 100 ms. Ratios: the hub's
best at 1,000 against channels_redis's best at 1,000 (bounded by the steps offered), and the hub's
best at 10,000 against it (the issue's target: >= 40x).

Rows: connect (time to open and subscribe all connections, failures, GC during the burst); memory
per connection (server RSS before connecting and after, difference / connections; and after the
phases); one row per phase: median = p50 latency, items/s = delivered messages/s, note = p99 /
p99.9 / max, delivered share, connections short of their topic's updates, topics that delivered
nothing, connections closed, offered rate, publisher lag, CPU of the server (its kernel part),
clients and whole machine (cores, while publishing), the server's CPU per delivered message (drain
included), GC collections and longest pause; the highest rate; GC of the whole run; the baselines;
the ratios; how the servers stopped. Targets are printed (met / NOT met), never asserted. Bounded:
about 6 minutes; every process is stopped at the end (clients close their sockets, the server gets
SIGTERM, SIGKILL after 10 s). The machine is shared: the first row of each group has the load.
"""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import datetime as dt
import gc
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import loadgen
from benchmarks.common import Result, load_note, verdict

WS_PATH = "/api/v2/signals/subscriptions/websocket"
TOPICS = 100
SYMBOL = "BWS{:03d}"
CONNECTIONS = 10_000
CLIENT_PROCESSES = 4
SMALL_CONNECTIONS = 1_000  # the scale of the channels_redis comparison
SMALL_CLIENT_PROCESSES = 2
CONNECTS_IN_FLIGHT = 64  # per client process
GROUP_SENDS_IN_FLIGHT = 8
CONNECT_TIMEOUT_S = 180.0
DRAIN_S = 2.0
AFTER_CONNECT_S = 6.0
SETTLE_CORES = 0.25
SETTLE_MAX_S = 15.0
MAX_PHASES = 64  # phase ids are unique in the whole run (``_PHASE_IDS``)

PHASE_A = (1, 10.0)  # (updates/s per topic, seconds)
PHASE_B = (10, 10.0)
RAMP_UP = (15, 20, 30, 50)
RAMP_DOWN = (5, 2, 0.5, 0.2)
RAMP_S = 6.0
SMALL_RATES = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50)
SMALL_S = 6.0

A_P99_S = 0.010
B_P99_S = 0.050
B_DELIVERED = 0.99
RAMP_P99_S = 0.100
RATIO_TARGET = 40.0

_PHASE_IDS = itertools.count(1)
_BENCH = "streaming: hub, 10k connections, 100 topics"
_SMALL = "streaming: 1k receivers, 100 topics"


# -- the load client (in its own processes) ---------------------------------------------------------


def _nofile_raise() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 5.3: every client frame is masked)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + mask + _masked(payload, mask)


class _Stats:
    """What one client process saw: latencies (us) per phase, in arrival order."""

    def __init__(self) -> None:
        self.latencies = [array.array("q") for _ in range(MAX_PHASES)]
        self.closed = 0  # connections the server closed, or lost, before the bench stopped
        self.stopping = False


class _Conn(asyncio.Protocol):
    def __init__(self, stats: _Stats):
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.fragments: list[bytes] = []
        self.counts = [0] * MAX_PHASES
        self.control: asyncio.Queue[bytes] = asyncio.Queue()
        self.upgrade: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        if not self.lost and not self.stats.stopping:
            self.stats.closed += 1
        self.lost = True
        if not self.upgrade.done():
            self.upgrade.set_exception(ConnectionError("closed during the handshake"))
        self.control.put_nowait(b"")

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            self.upgraded = True
            self.upgrade.set_result(head)
        at, size = 0, len(buffer)
        while size - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            length, start = second & 0x7F, at + 2
            if length == 126:
                if size - at < 4:
                    break
                length, start = int.from_bytes(buffer[at + 2 : at + 4], "big"), at + 4
            elif length == 127:
                if size - at < 10:
                    break
                length, start = int.from_bytes(buffer[at + 2 : at + 10], "big"), at + 10
            if second & 0x80:
                start += 4  # a masked server frame is a protocol error; skip the key and carry on
            end = start + length
            if end > size:
                break
            self._frame(first & 0x0F, bool(first & 0x80), bytes(buffer[start:end]), now)
            at = end
        if at:
            del buffer[:at]

    def _frame(self, opcode: int, fin: bool, payload: bytes, now: int) -> None:
        if opcode == 0x9:  # ping
            self.transport.write(_client_frame(0xA, payload))
            return
        if opcode == 0x8:  # close: answer it
            with contextlib.suppress(Exception):
                self.transport.write(_client_frame(0x8, payload[:2]))
            self.transport.close()
            return
        if opcode in (0x1, 0x0):
            if not fin or self.fragments:
                self.fragments.append(payload)
                if not fin:
                    return
                payload, self.fragments = b"".join(self.fragments), []
            self._message(payload, now)

    def _message(self, payload: bytes, now: int) -> None:
        if payload.startswith(b'{"type":"data"'):
            # A snapshot carries whatever value was stored, maybe from another scenario: not counted.
            at = payload.rfind(b'"bench":"')
            if at >= 0 and payload.find(b'"snapshot":true', 0, 400) < 0:
                colon = payload.index(b":", at + 9)
                phase = int(payload[at + 9 : colon])
                if phase:
                    sent = int(payload[colon + 1 : payload.index(b'"', colon)])
                    self.counts[phase] += 1
                    self.stats.latencies[phase].append((now - sent) // 1000)
        elif not payload.startswith(b'{"type":"heartbeat"'):
            self.control.put_nowait(payload)


def _commands(pipe, loop: asyncio.AbstractEventLoop) -> asyncio.Queue:
    """The parent's commands, read by a thread: the pipe stays blocking (a reader on the event loop
    would make it non-blocking, and a large report would then fail to send)."""
    queue: asyncio.Queue = asyncio.Queue()

    def read() -> None:
        while True:
            try:
                command = pipe.recv()
            except (EOFError, OSError):
                command = ("stop",)
            loop.call_soon_threadsafe(queue.put_nowait, command)
            if command[0] == "stop":
                return

    threading.Thread(target=read, daemon=True, name="commands").start()
    return queue


async def _next_control(conn: _Conn, want: bytes) -> bytes:
    """The next control message of type ``want``; ConnectionError on an ``error`` or a close."""
    while True:
        message = await conn.control.get()
        if not message:
            raise ConnectionError("closed")
        if message.startswith(b'{"type":"' + want + b'"'):
            return message
        if message.startswith(b'{"type":"error"'):
            raise ConnectionError(message[:200].decode(errors="replace"))


async def _open(port: int, option: str, client_id: str, stats: _Stats) -> _Conn:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: _Conn(stats), "127.0.0.1", port)
    try:
        return await _handshake(conn, port, option, client_id)
    except BaseException:
        conn.transport.close()
        raise


async def _handshake(conn: _Conn, port: int, option: str, client_id: str) -> _Conn:
    key = base64.b64encode(os.urandom(16))
    conn.transport.write(
        f"GET {WS_PATH}?client_id={client_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await conn.upgrade
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    if b" 101 " not in head.split(b"\r\n", 1)[0] or accept not in head:
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    await _next_control(conn, b"connection")
    subscribe = json.dumps({"type": "subscribe", "channel": "greeks", "instrument_key": option, "params": {}})
    conn.transport.write(_client_frame(0x1, subscribe.encode()))
    await _next_control(conn, b"subscription")
    return conn


async def _client(pipe, port: int, options: list[str], first: int) -> None:
    stats = _Stats()
    conns: list[_Conn | None] = [None] * len(options)
    errors: dict[str, int] = {}
    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)

    async def one(i: int) -> None:
        async with gate:
            try:
                conns[i] = await asyncio.wait_for(_open(port, options[i], f"bench-{first + i}", stats), 60)
            except (OSError, TimeoutError, ConnectionError, ValueError) as exc:
                reason = f"{type(exc).__name__}: {exc}"[:120]
                errors[reason] = errors.get(reason, 0) + 1

    begin = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(len(options))))
    stats.closed = 0  # failures of the connect phase are counted as failures, not closes
    opened = [c for c in conns if c is not None and not c.lost]
    pipe.send(("ready", {"opened": len(opened), "seconds": time.perf_counter() - begin, "errors": errors}))

    loop = asyncio.get_running_loop()
    commands = _commands(pipe, loop)
    while True:
        command = await commands.get()
        if command[0] == "report":
            phase = command[1]
            pipe.send(
                (
                    "phase",
                    {
                        "latencies": stats.latencies[phase].tobytes(),
                        "counts": [c.counts[phase] if c is not None else -1 for c in conns],
                        "closed": stats.closed,
                    },
                )
            )
            stats.latencies[phase] = array.array("q")
        elif command[0] == "stop":
            stats.stopping = True
            for conn in opened:
                if not conn.lost:
                    conn.transport.write(_client_frame(0x8, (1000).to_bytes(2, "big")))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(not c.lost for c in opened):
                await asyncio.sleep(0.1)
            for conn in opened:
                if not conn.lost:
                    conn.transport.close()
            pipe.send(("stopped", {}))
            return


def _client_main(pipe, port: int, options: list[str], first: int) -> None:
    """Entry of a client process: open the connections, then answer the parent's commands."""
    import uvloop

    _nofile_raise()
    gc.freeze()  # the client's own collections must not show as server latency
    uvloop.run(_client(pipe, port, options, first))


# -- the publisher (in its own process) -----------------------------------------------------------


def _chain_key(channel: str) -> str:
    """The chain hash the chain task writes for the underlying announced on ``channel``."""
    return "greeks:chain:" + channel.removeprefix("signal:greeks:")


@dataclass(frozen=True)
class _Topic:
    option: str
    channel: str  # Redis pub/sub topic of the hub
    group: str  # channels_redis group of the baseline
    prefix: bytes  # the stored Greeks JSON up to the value of its "bench" field
    announce: bytes  # what the chain task publishes


async def _publisher(pipe, redis_url: str, mode: str, topics: list[_Topic]) -> None:
    import redis.asyncio as aioredis

    redis = aioredis.Redis.from_url(redis_url)
    layer = None
    if mode == "core":
        from channels_redis.core import RedisChannelLayer

        layer = RedisChannelLayer(hosts=[redis_url])
    elif mode == "pubsub":
        from channels_redis.pubsub import RedisPubSubChannelLayer

        layer = RedisPubSubChannelLayer(hosts=[redis_url])
    seq = [0] * len(topics)
    # A few group_sends in flight when late (the layer's connection pool is bounded).
    gate = asyncio.Semaphore(GROUP_SENDS_IN_FLIGHT)

    async def bounded(group: str, message: dict) -> None:
        async with gate:
            await layer.group_send(group, message)

    heads = [
        f'{{"type":"data","channel":"greeks","instrument_key":"{t.option}","subscription_key":"greeks:{t.option}:{{}}",'
        for t in topics
    ]
    loop = asyncio.get_running_loop()
    commands = _commands(pipe, loop)
    pipe.send(("ready", {}))
    n = len(topics)
    while True:
        command = await commands.get()
        if command[0] == "stop":
            break
        _, phase, rate, seconds = command
        total = round(rate * seconds * n)
        interval = 1.0 / (rate * n)
        per_topic = [0] * n
        lag = 0.0
        k = 0
        t0 = time.perf_counter() + 0.05
        while k < total:
            now = time.perf_counter()
            due = t0 + k * interval
            if due > now:
                await asyncio.sleep(due - now)
                continue
            lag = max(lag, now - due)
            upto = min(total, int((now - t0) / interval) + 1)
            ns = time.time_ns()
            tail = f'{phase}:{ns}"}}'.encode()
            if layer is None:
                pipe_ = redis.pipeline(transaction=False)
                for j in range(k, upto):
                    topic = topics[j % n]
                    pipe_.hset(_chain_key(topic.channel), topic.option, topic.prefix + tail)
                    pipe_.publish(topic.channel, topic.announce)
                    per_topic[j % n] += 1
                await pipe_.execute()
            else:
                stamp = dt.datetime.now(dt.UTC).isoformat()
                sends = []
                for j in range(k, upto):
                    i = j % n
                    seq[i] += 1
                    payload = (topics[i].prefix + tail).decode()
                    text = (
                        f'{heads[i]}"timestamp":"{stamp}","seq":{seq[i]},"snapshot":false,"data":{payload}}}'
                    )
                    sends.append(bounded(topics[i].group, {"type": "greeks.update", "text": text}))
                    per_topic[i] += 1
                await asyncio.gather(*sends)
            k = upto
        pipe.send(("done", {"per_topic": per_topic, "lag": lag, "seconds": time.perf_counter() - t0}))
    if layer is not None:
        with contextlib.suppress(Exception):
            await layer.flush()
    await redis.aclose()
    pipe.send(("stopped", {}))


def _publisher_main(pipe, redis_url: str, mode: str, topics: list[_Topic]) -> None:
    import uvloop

    uvloop.run(_publisher(pipe, redis_url, mode, topics))


# -- the server, with a GC probe ------------------------------------------------------------------


def _gc_probe(stats_path: str) -> None:
    """Record every collection's generation and duration (``gc.callbacks``) and write the totals
    and the pauses >= 5 ms to ``stats_path`` (JSON, rewritten twice a second by a thread)."""
    totals = {g: [0, 0.0, 0.0] for g in range(3)}  # generation -> [collections, seconds, longest]
    pauses: list[tuple[float, int, float]] = []  # (wall time, generation, seconds)
    started = [0.0]
    lock = threading.Lock()

    def probe(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        generation = info["generation"]
        with lock:
            total = totals[generation]
            total[0] += 1
            total[1] += took
            total[2] = max(total[2], took)
            if took >= 0.005 and len(pauses) < 10_000:
                pauses.append((time.time(), generation, took))

    def write() -> None:
        while True:
            time.sleep(0.5)
            with lock:
                text = json.dumps({"totals": totals, "pauses": pauses})
            Path(stats_path + ".tmp").write_text(text)
            os.replace(stats_path + ".tmp", stats_path)

    gc.callbacks.append(probe)
    threading.Thread(target=write, daemon=True, name="gc-probe").start()


def _serve() -> None:
    """``python -c 'from benchmarks.bench_streaming import _serve; _serve()' STATS UVICORN-ARGS``:
    uvicorn with the GC probe (``_gc_probe``). No server code is changed."""
    import uvicorn

    _gc_probe(sys.argv[1])
    uvicorn.main(sys.argv[2:])


# -- the floor: the least a Python process can do per message on this machine ------------------------


def _masked(payload: bytes, mask: bytes) -> bytes:
    """The payload XOR the 4-byte mask repeated (masks and unmasks alike)."""
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big") if n else b""


def _server_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


class _FloorConn(asyncio.Protocol):
    """One socket of the floor server: the upgrade, then only subscribe and close are understood."""

    def __init__(self, floor: _Floor):
        self.floor = floor
        self.buffer = bytearray()
        self.upgraded = False
        self.route: tuple[str, bytes] | None = None
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        if self.route is not None:
            self.floor.sockets[self.route].discard(self.transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).decode("latin-1")
            del buffer[: end + 4]
            key = next((line.split(":", 1)[1].strip() for line in head.split("\r\n")
                        if line.lower().startswith("sec-websocket-key:")), None)  # fmt: skip
            if key is None:  # a health check
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                self.transport.close()
                return
            accept = base64.b64encode(
                hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
            )
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + _server_frame(b'{"type":"connection"}')
            )
            self.upgraded = True
        while len(buffer) >= 6:
            opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + 4 + length:
                return
            payload = _masked(bytes(buffer[start + 4 : start + 4 + length]), bytes(buffer[start : start + 4]))
            del buffer[: start + 4 + length]
            if opcode == 0x8:
                self.transport.write(bytes((0x88, 2)) + payload[:2])
                self.transport.close()
                return
            if opcode == 0x1:
                option = json.loads(payload)["instrument_key"]
                self.floor.spawn(self.floor.add(self, option))


class _Floor:
    """The fan-out with nothing around it: one pub/sub connection, one MGET per topic update, the
    frame encoded once per update and written to every socket of the topic. No Django, no
    Channels, no ASGI, no per-connection task, no conflation, no limits."""

    def __init__(self, redis_url: str):
        import redis.asyncio as aioredis

        self.redis = aioredis.Redis.from_url(redis_url, max_connections=TOPICS + 10)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.sockets: dict[tuple[str, bytes], set] = {}
        self.options: dict[str, set[bytes]] = {}
        self.lock = asyncio.Lock()
        self.listener: asyncio.Task | None = None
        self.tasks: set[asyncio.Task] = set()
        self.running: set[str] = set()
        self.again: set[str] = set()

    def spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def add(self, conn: _FloorConn, option: str) -> None:
        topic = f"signal:greeks:NSE@{option.split('@')[1]}@equity_spot"
        async with self.lock:  # one subscribe at a time: see the report of the pub/sub race
            if topic not in self.options:
                self.options[topic] = set()
                await self.pubsub.subscribe(topic)
            if self.listener is None:
                self.listener = asyncio.create_task(self.listen())
        self.options[topic].add(option.encode())
        conn.route = (topic, option.encode())
        self.sockets.setdefault(conn.route, set()).add(conn.transport)
        conn.transport.write(_server_frame(b'{"type":"subscription","status":"subscribed"}'))

    async def listen(self) -> None:
        while True:
            message = await self.pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                topic = message["channel"].decode()
                if topic in self.running:  # as the hub does: one more run after the one in progress
                    self.again.add(topic)
                else:
                    self.running.add(topic)
                    self.spawn(self.update(topic))

    async def update(self, topic: str) -> None:
        try:
            while True:
                self.again.discard(topic)
                await self.deliver(topic)
                if topic not in self.again:
                    return
        finally:
            self.running.discard(topic)

    async def deliver(self, topic: str) -> None:
        options = list(self.options.get(topic, ()))
        values = await self.redis.hmget(_chain_key(topic), options)
        for option, value in zip(options, values, strict=True):
            if value is None:
                continue
            frame = _server_frame(
                b'{"type":"data","channel":"greeks","instrument_key":"' + option + b'","data":' + value + b"}"
            )
            for transport in self.sockets.get((topic, option), ()):
                transport.write(frame)


def _floor() -> None:
    """``python -c 'from benchmarks.bench_streaming import _floor; _floor()' STATS PORT REDIS_URL``."""
    import uvloop

    _gc_probe(sys.argv[1])
    port, redis_url = int(sys.argv[2]), sys.argv[3]

    async def main() -> None:
        floor = _Floor(redis_url)
        server = await asyncio.get_running_loop().create_server(
            lambda: _FloorConn(floor), "127.0.0.1", port, backlog=4096
        )
        async with server:
            await server.serve_forever()

    uvloop.run(main())


def baseline_application():
    """The naive Channels design (uvicorn ``--factory``): every consumer joins its topic's group,
    and each update is one ``group_send`` whose message the consumer's handler sends as it is.
    ``BENCH_CHANNEL_LAYER=pubsub`` swaps the project's RedisChannelLayer for RedisPubSubChannelLayer."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signalsvc.settings")
    from django.core.asgi import get_asgi_application

    http = get_asgi_application()
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.conf import settings
    from django.urls import path

    if os.environ.get("BENCH_CHANNEL_LAYER") == "pubsub":
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [settings.REDIS_URL]},
            }
        }

    class GroupConsumer(AsyncWebsocketConsumer):
        async def connect(self):
            self.joined: list[str] = []
            await self.accept()
            await self.send(text_data='{"type":"connection","status":"connected"}')

        async def receive(self, text_data=None, bytes_data=None):
            message = json.loads(text_data)
            group = "greeks." + message["instrument_key"].split("@")[1]
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)
            await self.send(text_data='{"type":"subscription","status":"subscribed"}')

        async def greeks_update(self, event):
            await self.send(text_data=event["text"])

        async def disconnect(self, code):
            for group in getattr(self, "joined", []):
                await self.channel_layer.group_discard(group, self.channel_name)

    return ProtocolTypeRouter(
        {"http": http, "websocket": URLRouter([path(WS_PATH.lstrip("/"), GroupConsumer.as_asgi())])}
    )


_SERVE = "from benchmarks.bench_streaming import _serve; _serve()"
_FLOOR = "from benchmarks.bench_streaming import _floor; _floor()"


def _server_start(port: int, *, kind: str, work: Path) -> tuple[subprocess.Popen, str, Path]:
    """The server of ``kind``: ``hub`` (the project's ASGI app) and ``core`` / ``pubsub``
    (``baseline_application``) in uvicorn as scripts/start-ws.sh runs it (one worker) through
    ``_serve``; ``floor`` (``_floor``). Returns (process, log path, GC stats path)."""
    stats = work / f"gc-{port}.json"
    log = work / f"server-{port}.log"
    if kind == "floor":
        command = [_FLOOR, str(stats), str(port), loadgen.server_env()["REDIS_URL"]]
    else:
        app = ["signalsvc.asgi:application"] if kind == "hub" else [
            "--factory", "benchmarks.bench_streaming:baseline_application"]  # fmt: skip
        command = [
            _SERVE,
            str(stats),
            *app,
            *("--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools"),
            *("--ws", "websockets-sansio", "--lifespan", "off", "--no-access-log"),
        ]
    env = loadgen.server_env(WEBSOCKET_MAX_CONNECTIONS="20000", BENCH_CHANNEL_LAYER=kind)
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", *command],
            cwd=loadgen.ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_nofile_raise,
        )
    return server, str(log), stats


# -- measurement ----------------------------------------------------------------------------------


def _cpu_ticks(pid: int, *, kernel_only: bool = False) -> int:
    """CPU ticks a process has used (user + system, or system only)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[12]) if kernel_only else int(fields[11]) + int(fields[12])


def _machine_ticks() -> int:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return sum(fields) - fields[3] - fields[4]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _gc_stats(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"totals": {str(g): [0, 0.0, 0.0] for g in range(3)}, "pauses": []}


@dataclass
class _Phase:
    label: str
    rate: float  # updates/s per topic
    seconds: float
    expected: int = 0
    delivered: int = 0
    short: int = 0  # connections that received fewer than their topic's updates
    closed: int = 0
    silent: int = 0  # topics published to whose subscribers received nothing
    lag: float = 0.0
    p50: float = float("nan")
    p99: float = float("nan")
    p999: float = float("nan")
    worst: float = float("nan")
    settle: float = 0.0  # seconds waited for the server to go idle before the phase
    cpu: dict = field(default_factory=dict)
    gc: str = ""

    @property
    def share(self) -> float:
        return self.delivered / self.expected if self.expected else float("nan")

    @property
    def per_second(self) -> float:
        return self.delivered / self.seconds

    @property
    def under_100ms(self) -> bool:
        return self.p99 < RAMP_P99_S


@dataclass
class _Session:
    """One server with its clients and publisher."""

    connections: int
    opened: int = 0
    connect_s: float = 0.0
    errors: dict = field(default_factory=dict)
    rss_before: float = 0.0
    rss_connected: float = 0.0
    rss_after: float = 0.0
    gc_connect: dict = field(default_factory=dict)
    gc_total: dict = field(default_factory=dict)
    phases: list[_Phase] = field(default_factory=list)
    stopped: float | None = None
    closing_s: float = 0.0
    log: str = ""
    overflow_closes: int = 0
    failure: str = ""


def _gc_between(before: dict, after: dict, since: float, until: float) -> dict:
    out = {}
    for g in range(3):
        b, a = before["totals"][str(g)], after["totals"][str(g)]
        out[g] = (a[0] - b[0], a[1] - b[1])
    longest = [p for p in after["pauses"] if since <= p[0] <= until]
    out["longest"] = max((p[2] for p in longest), default=0.0)
    out["longest_gen"] = max(longest, key=lambda p: p[2])[1] if longest else None
    return out


def _gc_text(d: dict) -> str:
    parts = [f"gen{g} x{d[g][0]} {d[g][1] * 1e3:.0f} ms" for g in range(3)]
    longest = (
        f"; longest {d['longest'] * 1e3:.0f} ms (gen{d['longest_gen']})"
        if d["longest_gen"] is not None
        else ""
    )
    return "GC " + ", ".join(parts) + longest


def _join(process) -> None:
    """Wait 5 s for a child process to exit, then kill it."""
    process.join(5)
    if process.is_alive():
        process.kill()
        process.join()


class _Scenario:
    def __init__(self, *, kind: str, connections: int, processes: int, topics: list[_Topic], work: Path):
        from django.conf import settings

        self.kind = kind
        self.connections = connections
        self.topics = topics
        self.work = work
        self.port = loadgen.free_port()
        self.session = _Session(connections)
        self.ctx = multiprocessing.get_context("spawn")
        self.server, self.log, self.stats_path = _server_start(self.port, kind=kind, work=work)
        self.session.log = self.log
        self.clients: list[tuple] = []
        self.assign: list[int] = []  # topic of each connection, in client order
        self.publisher = None
        self.processes = processes
        self.redis_url = settings.REDIS_URL

    def _recv(self, pipe, timeout: float, what: str):
        if not pipe.poll(timeout):
            raise RuntimeError(f"{what}: no answer within {timeout:.0f} s")
        return pipe.recv()

    def start(self) -> None:
        loadgen.wait_until(
            "uvicorn live",
            lambda: loadgen.http(f"http://127.0.0.1:{self.port}/api/v2/health/live", timeout=2)[0] == 200,
            timeout=90,
            alive=loadgen.exited(self.server, "uvicorn", self.log),
        )
        time.sleep(1.0)
        self.session.rss_before = _rss_mb(self.server.pid)
        ours, theirs = self.ctx.Pipe()
        mode = self.kind
        self.publisher = (
            self.ctx.Process(
                target=_publisher_main, args=(theirs, self.redis_url, mode, self.topics), daemon=True
            ),
            ours,
        )
        self.publisher[0].start()
        self._recv(ours, 60, "publisher start")
        gc_before = _gc_stats(self.stats_path)
        since = time.time()
        per = self.connections // self.processes
        begin = time.perf_counter()
        for c in range(self.processes):
            first = c * per
            topics = [(first + j) % TOPICS for j in range(per)]
            self.assign += topics
            ours, theirs = self.ctx.Pipe()
            process = self.ctx.Process(
                target=_client_main,
                args=(theirs, self.port, [self.topics[t].option for t in topics], first),
                daemon=True,
            )
            process.start()
            self.clients.append((process, ours))
        for _process, pipe in self.clients:
            _, ready = self._recv(pipe, CONNECT_TIMEOUT_S, "clients connect")
            self.session.opened += ready["opened"]
            for reason, count in ready["errors"].items():
                self.session.errors[reason] = self.session.errors.get(reason, 0) + count
        self.session.connect_s = time.perf_counter() - begin
        # The burst's tail, and the server's GC freeze: it collects and freezes 2-4 s after the last
        # connection (streaming.consumers._freeze_after_burst); the phases measure the steady state.
        time.sleep(AFTER_CONNECT_S)
        self.session.rss_connected = _rss_mb(self.server.pid)
        self.session.gc_connect = _gc_between(gc_before, _gc_stats(self.stats_path), since, time.time())

    def phase(self, label: str, rate: float, seconds: float) -> _Phase:
        import numpy as np

        phase = _Phase(label, rate, seconds)
        phase.settle = self._settle()
        number = next(_PHASE_IDS)
        pids = [p.pid for p, _ in self.clients]
        marks = (
            _cpu_ticks(self.server.pid),
            sum(_cpu_ticks(p) for p in pids),
            _machine_ticks(),
            _cpu_ticks(self.server.pid, kernel_only=True),
        )
        gc_before = _gc_stats(self.stats_path)
        since, begin = time.time(), time.perf_counter()
        pipe = self.publisher[1]
        pipe.send(("phase", number, rate, seconds))
        _, done = self._recv(pipe, seconds + 60, "publisher phase")
        span = time.perf_counter() - begin
        now = (
            _cpu_ticks(self.server.pid),
            sum(_cpu_ticks(p) for p in pids),
            _machine_ticks(),
            _cpu_ticks(self.server.pid, kernel_only=True),
        )
        hz = os.sysconf("SC_CLK_TCK")
        phase.cpu = {
            "server": (now[0] - marks[0]) / hz / span,
            "clients": (now[1] - marks[1]) / hz / span,
            "machine": (now[2] - marks[2]) / hz / span,
            "kernel": (now[3] - marks[3]) / hz / span,
        }
        time.sleep(DRAIN_S)
        server_seconds = (_cpu_ticks(self.server.pid) - marks[0]) / hz  # with the drain
        phase.gc = _gc_text(_gc_between(gc_before, _gc_stats(self.stats_path), since, time.time()))
        per_topic = done["per_topic"]
        phase.lag = done["lag"]
        latencies, counts = [], []
        closed = 0
        for _, client in self.clients:
            client.send(("report", number))
        for _, client in self.clients:
            _, report = self._recv(client, 60, "client report")
            latencies.append(np.frombuffer(report["latencies"], dtype=np.int64))
            counts += report["counts"]
            closed += report["closed"]
        expected = [per_topic[t] for t in self.assign]
        phase.expected = sum(e for e, c in zip(expected, counts, strict=True) if c >= 0)
        phase.delivered = sum(c for c in counts if c > 0)
        phase.short = sum(1 for e, c in zip(expected, counts, strict=True) if 0 <= c < e)
        phase.closed = closed
        reached = [0] * TOPICS
        for topic, count in zip(self.assign, counts, strict=True):
            reached[topic] += max(count, 0)
        phase.silent = sum(1 for t in range(TOPICS) if per_topic[t] and not reached[t])
        values = np.concatenate(latencies) / 1e6 if latencies else np.array([])
        if values.size:
            phase.p50, phase.p99, phase.p999 = (float(x) for x in np.percentile(values, [50, 99, 99.9]))
            phase.worst = float(values.max())
        phase.cpu["per_message"] = server_seconds / phase.delivered if phase.delivered else float("nan")
        self.session.phases.append(phase)
        return phase

    def stop(self) -> None:
        """Clients close their sockets, the publisher stops, then the server (always, even when
        something before it failed)."""
        gc_final = _gc_stats(self.stats_path)
        self.session.rss_after = _rss_mb(self.server.pid) if self.server.poll() is None else float("nan")
        try:
            begin = time.perf_counter()
            for _, pipe in self.clients:
                with contextlib.suppress(OSError):
                    pipe.send(("stop",))
            for process, pipe in self.clients:
                with contextlib.suppress(OSError, RuntimeError, EOFError):
                    self._recv(pipe, 30, "client stop")
                _join(process)
            self.session.closing_s = time.perf_counter() - begin
            if self.publisher is not None:
                process, pipe = self.publisher
                with contextlib.suppress(OSError, RuntimeError, EOFError):
                    pipe.send(("stop",))
                    self._recv(pipe, 10, "publisher stop")
                _join(process)
            self._wait_untracked()
        finally:
            self.session.stopped = loadgen.process_stop(self.server)
        self.session.gc_total = {g: gc_final["totals"][str(g)] for g in range(3)}
        with contextlib.suppress(OSError):
            self.session.overflow_closes = (
                Path(self.log).read_text(errors="replace").count("not reading its updates")
            )

    def _settle(self) -> float:
        """Wait until the server is idle (< SETTLE_CORES over half a second; SETTLE_MAX_S at most), so
        that the backlog of one phase does not land in the next. Returns the seconds waited."""
        hz = os.sysconf("SC_CLK_TCK")
        begin = time.perf_counter()
        while time.perf_counter() - begin < SETTLE_MAX_S:
            ticks = _cpu_ticks(self.server.pid)
            time.sleep(0.5)
            if (_cpu_ticks(self.server.pid) - ticks) / hz / 0.5 < SETTLE_CORES:
                break
        return time.perf_counter() - begin

    def _wait_untracked(self) -> None:
        """The hub's consumers delete their tracking rows on disconnect: wait (30 s at most) until
        this node has none left, so that SIGTERM does not cut the disconnects short."""
        if self.kind != "hub":
            return
        from streaming.models import WebSocketSubscription

        node = f":{self.server.pid}"
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline and WebSocketSubscription.objects.filter(node__endswith=node).exists()
        ):
            time.sleep(0.5)
        WebSocketSubscription.objects.filter(node__endswith=node).delete()


# -- setup ---------------------------------------------------------------------------------------


def _topics() -> list[_Topic]:
    """100 underlyings with one call each, registered, and their latest Greeks stored (phase 0)."""
    import orjson

    from greeks.services import GREEK_NAMES, redis_client
    from signalsvc.core.keys import InstrumentSpec
    from signalsvc.instruments.services import instruments_upsert

    expiry = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    specs, topics = [], []
    for i in range(TOPICS):
        symbol = SYMBOL.format(i)
        underlying = f"NSE@{symbol}@equity_spot"
        option = f"NSE@{symbol}@equity_options@{expiry.isoformat()}@call@1000"
        specs += [InstrumentSpec.from_key(underlying), InstrumentSpec.from_key(option, lot_size=50)]
        spot = 1000.0 + i
        payload = {
            "instrument_key": option,
            "underlying_key": underlying,
            "timestamp": now.isoformat(),
            "minute": now.replace(second=0).isoformat(),
            "expiry": expiry.isoformat(),
            "strike": 1000.0,
            "option_type": "call",
            "model": "black76",
            "underlying_price": spot,
            "forward": spot * 1.0053,
            "forward_source": "futures",
            "option_price": 31.45,
            "price_source": "mid",
            "time_to_expiry": 0.08219178,
            "iv": 0.1423,
            "iv_reason": "ok",
            "greeks": dict(
                zip(
                    GREEK_NAMES,
                    (0.5312, 0.00934, -0.4121, 1.1463, 0.4133, -0.0121, 0.0342, 0.0012),
                    strict=True,
                )
            )
            | {"iv": 0.1423},
            "computed_at": now.isoformat(),
        }
        prefix = orjson.dumps(payload)[:-1] + b',"bench":"'
        announce = orjson.dumps({"underlying": underlying, "minute": payload["minute"], "options": 1})
        topics.append(_Topic(option, f"signal:greeks:{underlying}", f"greeks.{symbol}", prefix, announce))
    instruments_upsert(specs=specs)
    client = redis_client()
    pipe = client.pipeline(transaction=False)
    for t in topics:
        pipe.hset(_chain_key(t.channel), t.option, t.prefix + f'0:{time.time_ns()}"}}'.encode())
        pipe.expire(_chain_key(t.channel), 86400)
    pipe.execute()
    return topics


def _layer_keys_delete() -> None:
    """channels_redis's keys (prefix ``asgi``) in the bench Redis DB: groups and queues of a run."""
    from greeks.services import redis_client

    client = redis_client()
    keys = list(client.scan_iter(match="asgi*", count=10_000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])


# -- plans and rows ------------------------------------------------------------------------------


def _run_plan(
    scenario: _Scenario, next_step: Callable[[list[_Phase]], tuple[str, int, float] | None]
) -> None:
    while True:
        step = next_step(scenario.session.phases)
        if step is None:
            return
        scenario.phase(*step)
        if scenario.server.poll() is not None:
            scenario.session.failure = f"the server exited ({scenario.server.returncode}); see {scenario.log}"
            return


def _main_plan(done: list[_Phase]) -> tuple[str, int, float] | None:
    if not done:
        return ("(a) 1 update/s per topic", *PHASE_A)
    if len(done) == 1:
        return ("(b) 10 updates/s per topic", *PHASE_B)
    b, ramp = done[1], done[2:]
    rates = RAMP_UP if b.under_100ms else RAMP_DOWN
    if ramp and (ramp[-1].under_100ms != b.under_100ms):
        return None  # upwards: first failure; downwards: first success
    if len(ramp) == len(rates):
        return None
    rate = rates[len(ramp)]
    return (f"ramp {rate:g} updates/s per topic", rate, RAMP_S)


def _small_plan(done: list[_Phase]) -> tuple[str, int, float] | None:
    if done and not done[-1].under_100ms:
        return None
    if len(done) == len(SMALL_RATES):
        return None
    rate = SMALL_RATES[len(done)]
    return (f"{rate} update{'s' if rate > 1 else ''}/s per topic", rate, SMALL_S)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if math.isfinite(seconds) else "-"


def _phase_row(bench: str, case: str, phase: _Phase, extra: str = "", load: str = "") -> Result:
    cpu = phase.cpu
    note = (
        f"p99 {_ms(phase.p99)}, p99.9 {_ms(phase.p999)}, max {_ms(phase.worst)}; delivered "
        f"{phase.delivered:,} of {phase.expected:,} ({phase.share * 100:.2f} %), {phase.short:,} connections short, "
        f"{phase.silent} of {TOPICS} topics delivered nothing, "
        f"{phase.closed} closed since connect; offered {phase.expected / phase.seconds:,.0f}/s, "
        f"publisher lag max {_ms(phase.lag)}; CPU cores: server {cpu['server']:.2f} (kernel "
        f"{cpu['kernel']:.2f}), clients {cpu['clients']:.2f}, machine {cpu['machine']:.2f}; server CPU "
        f"{cpu['per_message'] * 1e6:.0f} us per delivered message; {phase.gc}"
    )
    if phase.settle > 1.0:
        note += f"; started after {phase.settle:.1f} s for the server to go idle"
    if extra:
        note = f"{extra}; {note}"
    if load:
        note += f" {load}"
    return Result(bench, case, phase.delivered, phase.p50, note, rate=phase.per_second)


def _best(phases: list[_Phase]) -> _Phase | None:
    fine = [p for p in phases if p.under_100ms]
    return max(fine, key=lambda p: p.per_second) if fine else None


def _session_rows(bench: str, s: _Session, label: str, load: str) -> list[Result]:
    errors = "; ".join(f"{n} x {reason}" for reason, n in sorted(s.errors.items(), key=lambda x: -x[1])[:3])
    rows = [
        Result(
            bench,
            f"{label}: connect + subscribe",
            s.opened,
            s.connect_s,
            f"{s.opened:,} of {s.connections:,} opened and subscribed in {s.connect_s:.1f} s (median = the "
            f"whole burst){'; failures: ' + errors if errors else ''}; during it: {_gc_text(s.gc_connect)} {load}",
            rate=s.opened / s.connect_s if s.connect_s else None,
        )
    ]
    if s.opened:
        per_conn = (s.rss_connected - s.rss_before) * 1024 / s.opened
        per_after = (s.rss_after - s.rss_before) * 1024 / s.opened
        rows.append(
            Result(
                bench,
                f"{label}: memory per connection",
                s.opened,
                float("nan"),
                f"server RSS {s.rss_before:.0f} MB before, {s.rss_connected:.0f} MB connected: "
                f"{per_conn:.1f} KB per connection; after the phases {s.rss_after:.0f} MB "
                f"({per_after:.1f} KB per connection)",
            )
        )
    return rows


def _gc_row(bench: str, s: _Session) -> Result:
    totals = s.gc_total
    text = ", ".join(
        f"gen{g}: {int(totals[g][0])} collections, {totals[g][1] * 1e3:.0f} ms in all, longest {totals[g][2] * 1e3:.0f} ms"
        for g in range(3)
    )
    return Result(
        bench,
        "GC pauses in the server (whole run)",
        int(sum(totals[g][0] for g in range(3))),
        float("nan"),
        f"{text} (gc.callbacks probe); connect burst: {_gc_text(s.gc_connect)}",
    )


def _stop_row(bench: str, s: _Session, label: str) -> Result:
    stopped = (
        "did not exit within 10 s of SIGTERM (killed)"
        if s.stopped is None
        else f"exited {s.stopped:.1f} s after SIGTERM"
    )
    return Result(
        bench,
        f"{label}: stop",
        s.opened,
        float("nan"),
        f"clients closed {s.opened:,} sockets in {s.closing_s:.1f} s; server {stopped}; "
        f"{s.overflow_closes} slow-client closes in its log",
    )


def _main_rows(s: _Session, load: str) -> list[Result]:
    rows = _session_rows(_BENCH, s, "hub", load)
    all_open = s.opened == s.connections
    for i, phase in enumerate(s.phases):
        if i == 0:
            opened, complete = all_open and phase.closed == 0, phase.short == 0
            ok = opened and complete and phase.p99 < A_P99_S
            extra = (
                f"target: all {s.connections:,} open, nothing dropped, p99 < 10 ms: {verdict(ok)}"
                f" (open: {opened}, all delivered: {complete}, p99: {phase.p99 < A_P99_S})"
            )
        elif i == 1:
            ok = phase.share >= B_DELIVERED and phase.p99 < B_P99_S
            extra = f"target: >= 99 % delivered, p99 < 50 ms: {verdict(ok)}"
        else:
            extra = f"ramp step: p99 < 100 ms: {phase.under_100ms}"
        rows.append(_phase_row(_BENCH, phase.label, phase, extra))
    best = _best(s.phases)
    rows.append(
        _best_row(_BENCH, "highest delivered msgs/s, p99 < 100 ms", best, f" ({best.label})" if best else "")
    )
    rows += _failure_rows(_BENCH, "failure", s)
    rows.append(_gc_row(_BENCH, s))
    rows.append(_stop_row(_BENCH, s, "hub"))
    return rows


def _best_row(bench: str, case: str, best, label: str = "", tail: str = "") -> Result:
    """The row of a session's best phase (the highest delivered rate at p99 < 100 ms)."""
    if best is None:
        return Result(bench, case, 0, float("nan"), "no phase had p99 < 100 ms", rate=0.0)
    note = (
        f"at {best.rate:g} updates/s per topic{label}; p99 {_ms(best.p99)}, "
        f"delivered {best.share * 100:.1f} %{tail}"
    )
    return Result(bench, case, best.delivered, best.p50, note, rate=best.per_second)


def _failure_rows(bench: str, case: str, s: _Session) -> list[Result]:
    return [Result(bench, case, 0, float("nan"), s.failure)] if s.failure else []


def _floor_rows(s: _Session, hub: _Session, load: str) -> list[Result]:
    bench = "streaming: floor (no framework), 10k connections"
    rows = [r for r in _session_rows(bench, s, "floor", load) if "memory" not in r.case]
    rows += [_phase_row(bench, phase.label, phase) for phase in s.phases]
    best, hub_best = _best(s.phases), _best(hub.phases)
    versus = (
        f"; the hub reaches {hub_best.per_second / best.per_second:.2f}x of it" if best and hub_best else ""
    )
    rows.append(_best_row(bench, "highest delivered msgs/s, p99 < 100 ms", best, "", versus))
    rows += _failure_rows(bench, "failure", s)
    rows.append(_gc_row(bench, s))
    return rows


def _small_rows(name: str, s: _Session) -> list[Result]:
    rows = [r for r in _session_rows(_SMALL, s, name, "") if "memory" not in r.case]
    for phase in s.phases:
        rows.append(_phase_row(_SMALL, f"{name}: {phase.label}", phase))
    rows.append(_best_row(_SMALL, f"{name}: highest msgs/s, p99 < 100 ms", _best(s.phases)))
    rows += _failure_rows(_SMALL, f"{name}: failure", s)
    rows.append(_stop_row(_SMALL, s, name))
    return rows


def _ratio_rows(main: _Session, hub_small: _Session, core: _Session) -> list[Result]:
    base = _best(core.phases)
    small = _best(hub_small.phases)
    big = _best(main.phases)
    if base is None:
        return [
            Result(_SMALL, "ratio", 0, float("nan"), "channels_redis had no step with p99 < 100 ms: no ratio")
        ]
    rows = []
    if small is not None:
        rows.append(
            Result(
                _SMALL,
                "ratio at 1k: hub / channels_redis",
                0,
                float("nan"),
                f"{small.per_second / base.per_second:.1f}x ({small.per_second:,.0f} vs {base.per_second:,.0f} "
                "delivered msgs/s, both at p99 < 100 ms; the same rates were offered, so the ratio is bounded by "
                "the highest step)",
            )
        )
    if big is not None:
        ratio = big.per_second / base.per_second
        rows.append(
            Result(
                _SMALL,
                "ratio: hub at 10k / channels_redis at 1k",
                0,
                float("nan"),
                f"{ratio:.1f}x ({big.per_second:,.0f} vs {base.per_second:,.0f} msgs/s); target >= 40x: "
                f"{verdict(ratio >= RATIO_TARGET)}",
            )
        )
    return rows


def _scenario_run(*, kind: str, connections: int, processes: int, topics, work: Path, plan) -> _Session:
    scenario = _Scenario(kind=kind, connections=connections, processes=processes, topics=topics, work=work)
    try:
        scenario.start()
        if scenario.session.opened:
            _run_plan(scenario, plan)
    except (RuntimeError, OSError, EOFError) as exc:
        scenario.session.failure = f"{type(exc).__name__}: {exc}"
    finally:
        scenario.stop()
    return scenario.session


def _configure() -> None:
    from benchmarks.bench_timeframes import _configure as configure_bench

    configure_bench()


def run() -> list[Result]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return [Result(_BENCH, "all", 0, float("nan"), "skipped: uvloop is not installed")]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard < CONNECTIONS + 1000:
        reason = f"skipped: the open-file hard limit is {hard}, < {CONNECTIONS + 1000}"
        return [Result(_BENCH, "all", 0, float("nan"), reason)]
    _configure()
    work = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    topics = _topics()
    _layer_keys_delete()
    big = {"connections": CONNECTIONS, "processes": CLIENT_PROCESSES, "topics": topics, "work": work}
    small = {
        "connections": SMALL_CONNECTIONS,
        "processes": SMALL_CLIENT_PROCESSES,
        "topics": topics,
        "work": work,
    }
    load = load_note()
    main = _scenario_run(kind="hub", plan=_main_plan, **big)
    rows = _main_rows(main, load)
    floor = _scenario_run(kind="floor", plan=_main_plan, **big)
    rows += _floor_rows(floor, main, load_note())
    sessions = {}
    for name, kind in (
        ("channels_redis core (baseline)", "core"),
        ("channels_redis pubsub", "pubsub"),
        ("hub", "hub"),
    ):
        sessions[name] = _scenario_run(kind=kind, plan=_small_plan, **small)
        _layer_keys_delete()
        rows += _small_rows(name, sessions[name])
    rows += _ratio_rows(main, sessions["hub"], sessions["channels_redis core (baseline)"])
    if not any(s.failure for s in (main, floor, *sessions.values())):
        shutil.rmtree(work, ignore_errors=True)  # else the failure rows name the logs in it
    return rows


if __name__ == "__main__":  # pragma: no cover
    for result in run():
        print(result)
