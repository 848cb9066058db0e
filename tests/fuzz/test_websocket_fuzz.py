"""A WebSocket fuzzer against the real server (SPEC §10, §14; issue 12 item 1).

``scripts/start-ws.sh`` runs uvicorn with its production limits (the ``ws_server`` fixture of
tests/security/test_limits.py). While the simulator's chain is published every few hundred
milliseconds and a *witness* client follows the seed subscription, fuzz clients send: random text,
invalid UTF-8, random JSON values, every protocol field mutated, binary frames, frames at and past
both size limits, floods of pings and of subscribe/unsubscribe, and half-open sockets.

What must hold: every bad text message gets an ``error`` with its code and the socket stays open;
only the documented cases close it (a frame past ``--ws-max-size``: 1009; invalid UTF-8 in a text
frame: 1007; a flood past the rate limit: 1008); the server stays up; the witness keeps receiving
updates with an increasing ``seq`` during and after the fuzzing; the connection gauge and the
tracking rows go back to the witness alone.

Inputs come from a seeded ``random.Random``: the same cases on every run. Each case and its answer
is written to ``.run/reliability/websocket.json``, which scripts/reliability_table.py renders in
docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import random
import re
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis as redis_lib
from django.conf import settings
from django.db import connection as db_connection
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from greeks.services import chain_compute
from signalsvc.instruments.models import Instrument
from signalsvc.marketdata.stream import ticks_ingest
from streaming.models import WebSocketSubscription
from streaming.protocol import ProtocolError, parse_message, subscription_from
from tests.conftest import DEMO_START
from tests.security.test_limits import FRAME_LIMIT, ws_server  # noqa: F401 - a fixture
from tests.streaming.conftest import NIFTY, SEED_SUBSCRIBE, live  # noqa: F401 - a fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RECORD_PATH = Path(settings.BASE_DIR) / ".run" / "reliability" / "websocket.json"
SEED = 20261206
APP_LIMIT = settings.WEBSOCKET_MAX_MESSAGE_BYTES  # the server runs with the defaults
PUBLISH_EVERY = 0.3  # seconds between chain publications
MIN_UPDATES_DURING = 4  # the witness's updates while the fuzz clients are at work
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
PING = {"type": "ping"}


@dataclass
class Case:
    input_class: str
    payload: str | bytes
    frame: str = "text"  # text | binary | text-raw (bytes sent in a text frame, unchecked) | tcp
    # "error <code>", "error" (any code), "pong", "close <code>"; "served": other clients are
    expect: str = "error"

    def example(self) -> str:
        text = self.payload if isinstance(self.payload, str) else repr(self.payload)[2:-1]
        return text[:200]

    def size(self) -> int:
        return len(self.payload.encode() if isinstance(self.payload, str) else self.payload)


@dataclass
class Outcome:
    case: Case
    answer: str  # "error <code>", "pong", "close <code>", "subscription", ...
    open_after: bool


@dataclass
class Witness:
    seqs: list[tuple[float, int]] = field(default_factory=list)
    others: list[dict] = field(default_factory=list)


# --- the inputs ---------------------------------------------------------------------------------


def _random_text(rng: random.Random) -> list[Case]:
    alphabets = {
        "random text: printable ASCII": [chr(c) for c in range(32, 127)],
        "random text: control characters": [chr(c) for c in range(0, 32)] + ["\x7f"],
        "random text: any code point": None,
        "random text: JSON punctuation": list('{}[]":,\\ 0123456789.eE-+tfnul'),
    }
    cases = []
    for name, alphabet in alphabets.items():
        for _ in range(12):
            n = rng.choice([1, 2, 5, 30, 300, 3000])
            if alphabet is None:
                chars = [chr(rng.choice([rng.randrange(0x80, 0xD800), rng.randrange(0xE000, 0x110000)]))
                         for _ in range(n)]  # fmt: skip
                text = "".join(chars)
                while len(text.encode()) > APP_LIMIT:
                    text = text[: len(text) // 2]
            else:
                text = "".join(rng.choice(alphabet) for _ in range(n))
            cases.append(Case(name, text))
    return cases


def _malformed_json(rng: random.Random) -> list[Case]:
    cases = []
    valid = json.dumps(SEED_SUBSCRIBE)
    for cut in sorted(rng.sample(range(1, len(valid)), 8)):
        cases.append(Case("truncated JSON of a valid message", valid[:cut], expect="error invalid_json"))
    cases += [
        Case("JSON with trailing garbage", valid + "}", expect="error invalid_json"),
        Case("two JSON messages in one frame", valid + valid, expect="error invalid_json"),
        Case("empty frame", "", expect="error invalid_json"),
        Case("arrays nested 2,000 deep", "[" * 2000 + "]" * 2000, expect="error invalid_json"),
        # orjson parses up to 1,024 levels: this one is an object without a type.
        Case("objects nested 600 deep", '{"a":' * 600 + "1" + "}" * 600, expect="error unknown_type"),
        Case("NaN and Infinity", '{"type":"ping","x":NaN,"y":Infinity}', expect="error invalid_json"),
        Case(
            "an integer past 64 bits (read as a float)", '{"type":"ping","x":' + "9" * 40 + "}", expect="pong"
        ),
        Case("a lone surrogate escape", '{"type":"\\ud800"}', expect="error"),
        Case("duplicate keys", '{"type":"dance","type":"nope"}', expect="error unknown_type"),
        Case("a BOM before the JSON", "\ufeff" + json.dumps(PING), expect="error invalid_json"),
    ]
    return cases


def _invalid_utf8(rng: random.Random) -> list[Case]:
    payloads = [b"\xff", b"\xc3\x28", b'{"type":"ping","x":"\xed\xa0\x80"}', b"\xf8\x88\x80\x80\x80",
                bytes(rng.randrange(0x80, 0x100) for _ in range(64))]  # fmt: skip
    return [Case("invalid UTF-8 in a text frame", p, frame="text-raw", expect=f"close {CLOSE_INVALID_DATA}")
            for p in payloads]  # fmt: skip


def _json_value(rng: random.Random, depth: int = 0):
    kinds = ["int", "float", "str", "bool", "null", "bigstr"] + (["list", "dict"] * 2 if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**63 - 1, rng.randrange(-(10**9), 10**9)])
    if kind == "float":
        return rng.choice([0.5, -1e308, 1e-308, 3.14159, rng.uniform(-1e6, 1e6)])
    if kind == "str":
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_@ ") for _ in range(rng.randrange(0, 12)))
    if kind == "bigstr":
        return "y" * rng.choice([500, 1500])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    keys = ["type", "channel", "instrument_key", "params", "subscription_key", "x", ""]
    return {rng.choice(keys): _json_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))}


def _random_json(rng: random.Random) -> list[Case]:
    cases = []
    while len(cases) < 40:
        value = _json_value(rng)
        text = json.dumps(value)
        if len(text.encode()) > APP_LIMIT:
            continue
        cases.append(Case("random JSON value", text, expect=_oracle(value)))
    return [c for c in cases if c.expect != "valid"]


BAD_VALUES = [0, -1, 1.5, True, [], ["NIFTY"], {}, {"a": 1}, "", "nope", "\u0000", "y" * 3000,
              "NSE@NOPE@equity_spot", "garbage@@@", "../../etc/passwd", "NSE@NIFTY@equity_options@x"]  # fmt: skip


def _bases() -> dict[str, dict]:
    option = (
        Instrument.objects.filter(product="equity_options", key__contains="NIFTY").order_by("key").first()
    )
    assert option is not None, "the demo market has options"
    return {
        "greeks": {"type": "subscribe", "channel": "greeks", "instrument_key": option.key},
        "moneyness": {"type": "subscribe", "channel": "moneyness", "instrument_key": "moneyness_greeks",
                      "params": {"underlying": "NIFTY", "moneyness_level": "ATM"}},
        "atm_iv": {"type": "subscribe", "channel": "atm_iv", "params": {"underlying": NIFTY}},
        "indicators": {"type": "subscribe", "channel": "indicators", "instrument_key": NIFTY,
                       "params": {"indicator": "ema", "timeframe": "1m", "period": 3}},
        "bars": {"type": "subscribe", "channel": "bars", "instrument_key": NIFTY, "params": {"timeframe": "1m"}},
        "unsubscribe": {"type": "unsubscribe", "channel": "atm_iv", "params": {"underlying": NIFTY}},
    }  # fmt: skip


def _oracle(message) -> str:
    """The answer the protocol module gives this message in-process: ``error <code>``, or
    ``valid`` (such messages are not sent: they are not bad input)."""
    text = json.dumps(message)
    if len(text) > APP_LIMIT:
        return "error message_too_large"
    try:
        parsed = parse_message(text)
        if parsed["type"] in ("subscribe", "unsubscribe"):
            subscription_from(parsed)
    except ProtocolError as exc:
        return f"error {exc.code}"
    if parsed["type"] == "unsubscribe":
        return "error not_subscribed"  # fuzz connections subscribe to nothing
    return "valid"


def _mutations(rng: random.Random) -> list[Case]:
    cases = []
    for name, base in _bases().items():
        paths = [(k,) for k in base] + [("params", k) for k in base.get("params", {})]
        for path in paths:
            for value in [*BAD_VALUES, "<deleted>"]:
                message = json.loads(json.dumps(base))
                target = message if len(path) == 1 else message["params"]
                if value == "<deleted>":
                    del target[path[-1]]
                else:
                    target[path[-1]] = value
                expect = _oracle(message)
                if expect != "valid":
                    cases.append(
                        Case(f"{name}: {'.'.join(path)} mutated", json.dumps(message), expect=expect)
                    )
    # Extra unknown members, and extra params, on every base message: ignored or refused, never a crash.
    for name, base in _bases().items():
        message = {**base, "params": {**base.get("params", {}), "zzz": [1, {"a": None}]}, "extra": {"n": 1}}
        expect = _oracle(message)
        if expect != "valid":
            cases.append(Case(f"{name}: unknown members", json.dumps(message), expect=expect))
    rng.shuffle(cases)
    return cases


def _ping_of(size: int, char: str = "x") -> str:
    head = '{"type":"ping","pad":"'
    n = (size - len(head.encode()) - 2) // len(char.encode())
    return head + char * n + '"}'


def _sizes() -> list[Case]:
    return [
        Case("text frame at the app limit (4,096 bytes)", _ping_of(APP_LIMIT), expect="pong"),
        Case("text frame 1 byte past the app limit", _ping_of(APP_LIMIT + 1), expect="error message_too_large"),
        Case("multi-byte text past the app limit in bytes, under it in characters",
             _ping_of(2 * APP_LIMIT - 1000, "é"), expect="error message_too_large"),
        Case("text frame at the server frame limit (65,536 bytes)", _ping_of(FRAME_LIMIT),
             expect="error message_too_large"),
        Case("text frame 1 byte past the server frame limit", _ping_of(FRAME_LIMIT + 1),
             expect=f"close {CLOSE_TOO_BIG}"),
        Case("text frame of 1 MB", _ping_of(2**20), expect=f"close {CLOSE_TOO_BIG}"),
        Case("binary frame past the server frame limit", b"\x00" * (FRAME_LIMIT + 1), frame="binary",
             expect=f"close {CLOSE_TOO_BIG}"),
    ]  # fmt: skip


def _binary(rng: random.Random) -> list[Case]:
    payloads = [b"", b"\x00\x01", json.dumps(PING).encode(), bytes(rng.randrange(256) for _ in range(1000))]
    return [Case("binary frame", p, frame="binary", expect="error binary_not_supported") for p in payloads]


# --- the clients --------------------------------------------------------------------------------


def _answer(message: dict) -> str:
    return f"error {message['code']}" if message["type"] == "error" else message["type"]


async def _next(ws) -> dict:
    """The next message that is not a heartbeat."""
    while True:
        message = json.loads(await ws.recv())
        if message["type"] != "heartbeat":
            return message


async def _send(ws, case: Case) -> None:
    if case.frame == "binary":
        await ws.send(case.payload)
    elif case.frame == "text-raw":
        await ws.send(case.payload, text=True)  # websockets does not check what it is told is text
    else:
        await ws.send(case.payload)


async def _close_code(ws) -> int | None:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None


async def _one_by_one(url: str, cases: list[Case]) -> list[Outcome]:
    """Each case and its answer, a fresh connection whenever one closes or nears the rate limit."""
    outcomes: list[Outcome] = []
    pending = list(cases)
    while pending:
        async with connect(url, open_timeout=10, max_size=None) as ws:
            hello = await _next(ws)
            assert hello["type"] == "connection", hello
            budget = int(hello["limits"]["messages_per_second"] * 0.7)  # the rest for the final ping
            batch: list[Case] = []
            closed = False
            while pending and len(batch) < budget:
                case = pending.pop(0)
                batch.append(case)
                await _send(ws, case)
                try:
                    reply = await asyncio.wait_for(_next(ws), 10)
                except ConnectionClosed as exc:
                    code = exc.rcvd.code if exc.rcvd is not None else None
                    outcomes.append(Outcome(case, f"close {code}", open_after=False))
                    closed = True
                    break
                outcomes.append(Outcome(case, _answer(reply), open_after=True))
            if not closed:
                await ws.send(json.dumps(PING))
                pong = await asyncio.wait_for(_next(ws), 10)
                assert pong["type"] == "pong", (batch[-1], pong)
    return outcomes


async def _flood(url: str, input_class: str, messages: list[str]) -> tuple[Outcome, str]:
    """Send everything without reading; then read until the server closes the socket."""
    async with connect(url, open_timeout=10, max_size=None) as ws:
        await _next(ws)
        for text in messages:
            try:
                await ws.send(text)
            except ConnectionClosed:
                break
        seen: dict[str, int] = {}
        try:
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                seen[_answer(message)] = seen.get(_answer(message), 0) + 1
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
    case = Case(input_class, messages[0], expect=f"close {CLOSE_POLICY}")
    summary = ", ".join(f"{k} ×{n}" for k, n in sorted(seen.items()))
    return Outcome(case, f"close {code}", open_after=False), summary


def _handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        (f"GET /api/v2/signals/subscriptions/websocket?client_id=halfopen HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
         "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    )  # fmt: skip
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response[:200]
    return sock


def _half_open(port: int) -> list[tuple[Case, socket.socket]]:
    """Sockets that stop half way: they stay open until the end of the fuzzing."""
    silent = _handshake(port)  # then nothing, not even reading the greeting
    half_frame = _handshake(port)
    # A masked text frame announcing 100 bytes, of which 10 are sent.
    half_frame.sendall(bytes([0x81, 0x80 | 100]) + os.urandom(4) + b'{"type":"p')
    half_request = socket.create_connection(("127.0.0.1", port), timeout=5)
    half_request.sendall(b"GET /api/v2/signals/subscriptions/websocket HTTP/1.1\r\nHost: 127.0")
    return [
        (Case("half-open: handshake, then silence", "(raw TCP)", frame="tcp", expect="served"), silent),
        (Case("half-open: half a frame, then silence", "(raw TCP) 0x81 0xe4 + 14 of 104 bytes", frame="tcp", expect="served"),
         half_frame),
        (Case("half-open: half an HTTP upgrade request, then silence", "(raw TCP) GET … Host: 127.0", frame="tcp",
              expect="served"), half_request),
    ]  # fmt: skip


async def _witness(url: str, witness: Witness, stop: asyncio.Event) -> None:
    async with connect(url.replace("client_id=fuzz", "client_id=witness"), open_timeout=10) as ws:
        await _next(ws)
        await ws.send(json.dumps(SEED_SUBSCRIBE))
        while not stop.is_set():
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                continue
            if message["type"] == "data":
                witness.seqs.append((time.monotonic(), message["seq"]))
            else:
                witness.others.append(message)


def _publisher(market, stop: threading.Event, published: list[float], failures: list[BaseException]) -> None:
    """The simulator's next seconds, ingested and computed, every PUBLISH_EVERY seconds."""
    client = redis_lib.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    second = 12
    try:
        while not stop.wait(PUBLISH_EVERY):
            ticks = []
            for s in range(second, second + 3):
                ticks += market.step(DEMO_START + dt.timedelta(seconds=s))
            second += 3
            ticks_ingest(client, ticks, consumer_name="fuzz")
            chain_compute(underlying_key=NIFTY, client=client)
            published.append(time.monotonic())
    except BaseException as exc:
        failures.append(exc)
    finally:
        client.close()
        db_connection.close()


def _gauge(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def _settles(probe, expected, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(probe)
        if value == expected or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


def _record(outcomes: list[Outcome], floods: dict[str, str], others: dict) -> None:
    entries = [
        {
            "class": o.case.input_class,
            "frame": o.case.frame,
            "example": o.case.example(),
            "bytes": o.case.size(),
            "expected": o.case.expect,
            "answer": o.answer,
            "open_after": o.open_after,
            "replies": floods.get(o.case.input_class),
        }
        for o in outcomes
    ]
    RECORD_PATH.parent.mkdir(parents=True, exist_ok=True)
    tmp = RECORD_PATH.with_suffix(".tmp")
    tmp.write_text(json.dumps({"seed": SEED, **others, "entries": entries}, indent=0, ensure_ascii=True))
    tmp.replace(RECORD_PATH)


# --- the test -----------------------------------------------------------------------------------


def test_fuzz_clients_get_errors_or_the_right_close_and_never_disturb_the_others(live, ws_server):  # noqa: F811
    rng = random.Random(SEED)
    url = ws_server + "?client_id=fuzz"
    port = int(ws_server.split(":")[2].split("/")[0])
    one_by_one = (_random_text(rng) + _malformed_json(rng) + _invalid_utf8(rng) + _random_json(rng)
                  + _mutations(rng) + _binary(rng) + _sizes())  # fmt: skip
    extra_rounds = [_random_text(rng) + _random_json(rng) for _ in range(20)]
    subscribe_flood = [
        json.dumps(SEED_SUBSCRIBE),
        json.dumps({**SEED_SUBSCRIBE, "type": "unsubscribe"}),
    ] * 300
    ping_flood = [json.dumps(PING)] * 600

    def rows() -> int:
        try:
            return WebSocketSubscription.objects.count()
        finally:
            db_connection.close()  # a thread of asyncio's executor: nothing left open for the teardown

    stop_publishing, published, failures = threading.Event(), [], []
    publisher = threading.Thread(target=_publisher, args=(live, stop_publishing, published, failures))

    async def scenario():
        witness, stop = Witness(), asyncio.Event()
        watching = asyncio.create_task(_witness(url, witness, stop))
        publisher.start()
        while not witness.seqs:  # subscribed, and its snapshot is in
            await asyncio.sleep(0.05)
        baseline = await _settles(lambda: _gauge(port, "signal_ws_connections"), 1.0)
        fuzz_started = time.monotonic()
        half_open = await asyncio.to_thread(_half_open, port)
        outcomes = await _one_by_one(url, one_by_one)
        floods = {}
        for name, messages in (("flood: subscribe/unsubscribe past the rate limit", subscribe_flood),
                               ("flood: pings past the rate limit", ping_flood)):  # fmt: skip
            outcome, floods[name] = await _flood(url, name, messages)
            outcomes.append(outcome)
        # The fuzzing lasts at least MIN_UPDATES_DURING publications: more rounds of random input,
        # checked like the rest but not recorded (how many depends on the machine's speed).
        extra_outcomes = []
        for extra in itertools.cycle(extra_rounds):
            heard = sum(t > fuzz_started for t, _ in witness.seqs)
            if heard >= MIN_UPDATES_DURING or time.monotonic() - fuzz_started > 20:
                break
            extra_outcomes += await _one_by_one(url, extra)
        # With the half-open sockets still there, a new client is served as usual.
        async with connect(url, open_timeout=10) as ws:
            await _next(ws)
            await ws.send(json.dumps(PING))
            served = (await _next(ws))["type"] == "pong"
        outcomes += [
            Outcome(case, "served" if served else "not served", open_after=True) for case, _ in half_open
        ]
        for _, sock in half_open:
            sock.close()
        fuzz_ended = time.monotonic()
        connections = await _settles(lambda: _gauge(port, "signal_ws_connections"), baseline)
        tracked = await _settles(rows, 1)
        deadline = time.monotonic() + 10  # the witness hears updates after the fuzzing too
        while sum(t > fuzz_ended for t, _ in witness.seqs) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        await watching
        return (
            witness,
            outcomes,
            extra_outcomes,
            floods,
            baseline,
            connections,
            tracked,
            fuzz_started,
            fuzz_ended,
        )

    try:
        witness, outcomes, extra, floods, baseline, connections, tracked, started, ended = asyncio.run(
            scenario()
        )
    finally:
        stop_publishing.set()
        publisher.join(30)
    seqs = [seq for _, seq in witness.seqs]
    _record(outcomes, floods, {
        "witness": {
            "updates_during": sum(started < t < ended for t, _ in witness.seqs),
            "updates_after": sum(t > ended for t, _ in witness.seqs),
            "seq": [seqs[0], seqs[-1]] if seqs else None,
            "strictly_increasing": seqs == sorted(set(seqs)),
        },
        "connections": {"before": baseline, "after": connections},
        "tracked_rows_after": tracked,
    })  # fmt: skip

    assert not failures, failures
    # The expected answer; for random input (expected "error"), an `error` with a code (not the
    # rate limit's: the fuzz clients stay under it).
    wrong = [
        (o.case.input_class, o.case.example()[:80], o.case.expect, o.answer)
        for o in outcomes + extra
        if not (
            o.answer == o.case.expect
            or (
                o.case.expect == "error"
                and o.answer.startswith("error ")
                and o.answer != "error rate_limited"
            )
        )
    ]
    assert wrong == [], wrong
    assert len(outcomes) > 300
    for name, summary in floods.items():
        assert "error rate_limited" in summary, (name, summary)
    assert seqs == sorted(set(seqs)), seqs  # strictly increasing
    assert sum(started < t < ended for t, _ in witness.seqs) >= MIN_UPDATES_DURING, (
        witness.seqs,
        started,
        ended,
    )
    assert sum(t > ended for t, _ in witness.seqs) >= 2, (witness.seqs, ended)
    assert not [m for m in witness.others if m["type"] == "error"], witness.others
    assert baseline == 1.0  # the witness
    assert connections == baseline
    assert tracked == 1  # the witness's subscription row
