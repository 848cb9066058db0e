"""InstrumentServiceClient against a real HTTP server on loopback (no mocks of the transport).

Each test scripts the server with a responder: a function from the request to a Reply.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from signalsvc.core.keys import InstrumentSpec, InvalidKey
from signalsvc.instruments.client import (
    InstrumentServiceClient,
    InstrumentServiceError,
    InstrumentServiceUnavailable,
    InvalidInstrumentRecord,
    parse_instrument_record,
)

OPTION_KEY = "NSE@NIFTY@equity_options@2025-07-10@call@21500"
FUTURE_KEY = "NSE@NIFTY@equity_futures@2025-07-31"
SPOT_KEY = "NSE@NIFTY@equity_spot"


def option_record(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "key": OPTION_KEY,
        "exchange": "NSE",
        "symbol": "NIFTY",
        "product": "equity_options",
        "expiry": "2025-07-10",
        "option_type": "call",
        "strike": 21500,
        "lot_size": 75,
        "tick_size": 0.05,
        "active": True,
    }
    record.update(overrides)
    return record


def future_record(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "key": FUTURE_KEY,
        "exchange": "NSE",
        "symbol": "NIFTY",
        "product": "equity_futures",
        "expiry": "2025-07-31",
        "option_type": None,
        "strike": None,
        "lot_size": 75,
        "tick_size": "0.10",
        "active": True,
    }
    record.update(overrides)
    return record


def spot_record(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "key": SPOT_KEY,
        "exchange": "NSE",
        "symbol": "NIFTY",
        "product": "equity_spot",
        "expiry": None,
        "option_type": None,
        "strike": None,
        "lot_size": 1,
        "tick_size": 0.05,
        "active": True,
    }
    record.update(overrides)
    return record


# --------------------------------------------------------------------------------------------
# Scriptable loopback server
# --------------------------------------------------------------------------------------------


@dataclass
class Request:
    path: str  # percent-decoded path
    raw_path: str
    query: dict[str, list[str]]
    method: str


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | object = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering

    @classmethod
    def json(cls, payload: object, status: int = 200, **kwargs: object) -> Reply:
        return cls(
            status=status,
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            **kwargs,
        )  # type: ignore[arg-type]


Responder = Callable[[Request], Reply]


class ScriptedServer:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.responder: Responder = lambda request: Reply(status=500, body=b"no responder scripted")
        self.release = threading.Event()  # set at teardown to cut short any delayed reply
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                request = Request(unquote(parts.path), parts.path, parse_qs(parts.query), "GET")
                with server._lock:
                    server.requests.append(request)
                reply = server.responder(request)
                if reply.delay:
                    server.release.wait(reply.delay)
                body = reply.body if isinstance(reply.body, bytes) else str(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def hits(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests honours HTTP(S)_PROXY from the environment; loopback must never go through one.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    srv.start()
    yield srv
    srv.stop()


def make_client(server: ScriptedServer, **kwargs: object) -> InstrumentServiceClient:
    options: dict[str, object] = {"timeout": (1.0, 1.0), "retries": 2, "backoff": 0.01}
    options.update(kwargs)
    return InstrumentServiceClient(f"{server.url}/api/", **options)  # type: ignore[arg-type]


def sequence(*replies: Reply) -> Responder:
    """Answer with the replies in order, then keep repeating the last one."""
    remaining = list(replies)
    lock = threading.Lock()

    def respond(request: Request) -> Reply:
        with lock:
            return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return respond


# --------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------


def test_list_instruments_parses_every_field(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply.json([option_record(), future_record(), spot_record()])
    with make_client(server) as client:
        instruments = client.list_instruments()

    assert instruments == [
        InstrumentSpec(
            key=OPTION_KEY,
            exchange="NSE",
            symbol="NIFTY",
            product="equity_options",
            expiry=dt.date(2025, 7, 10),
            option_type="call",
            strike=Decimal("21500"),
            lot_size=75,
            tick_size=Decimal("0.05"),
            active=True,
        ),
        InstrumentSpec(
            key=FUTURE_KEY,
            exchange="NSE",
            symbol="NIFTY",
            product="equity_futures",
            expiry=dt.date(2025, 7, 31),
            lot_size=75,
            tick_size=Decimal("0.10"),
        ),
        InstrumentSpec(key=SPOT_KEY, exchange="NSE", symbol="NIFTY", product="equity_spot", lot_size=1),
    ]
    assert [r.path for r in server.requests] == ["/api/instruments"]
    assert server.requests[0].query == {}


def test_list_instruments_sends_the_filters(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply.json([option_record()])
    with make_client(server) as client:
        client.list_instruments(exchange="NSE", symbol="NIFTY")

    assert server.requests[0].query == {"exchange": ["NSE"], "symbol": ["NIFTY"]}


def test_list_instruments_follows_next_links(server: ScriptedServer) -> None:
    pages = {
        "1": {"results": [option_record()], "next": f"{server.url}/api/instruments?symbol=NIFTY&page=2"},
        # A relative link is resolved against the page that carries it.
        "2": {"results": [future_record()], "next": "instruments?symbol=NIFTY&page=3"},
        "3": {"results": [spot_record()], "next": None},
    }
    server.responder = lambda request: Reply.json(pages[request.query.get("page", ["1"])[0]])

    with make_client(server) as client:
        listing = client.fetch_instruments(symbol="NIFTY")

    assert [spec.key for spec in listing.instruments] == [OPTION_KEY, FUTURE_KEY, SPOT_KEY]
    assert listing.pages == 3
    assert listing.skipped == ()
    assert [r.query for r in server.requests] == [
        {"symbol": ["NIFTY"]},
        {"symbol": ["NIFTY"], "page": ["2"]},
        {"symbol": ["NIFTY"], "page": ["3"]},
    ]


def test_duplicate_keys_across_pages_keep_the_last_record(server: ScriptedServer) -> None:
    pages = {
        "1": {"results": [option_record(lot_size=50), spot_record()], "next": "instruments?page=2"},
        "2": {"results": [option_record(lot_size=75)], "next": None},
    }
    server.responder = lambda request: Reply.json(pages[request.query.get("page", ["1"])[0]])

    with make_client(server) as client:
        listing = client.fetch_instruments()

    assert [(spec.key, spec.lot_size) for spec in listing.instruments] == [(OPTION_KEY, 75), (SPOT_KEY, 1)]
    assert listing.duplicates == 1


def test_next_link_to_another_host_is_refused(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply.json(
        {"results": [option_record()], "next": "http://elsewhere.invalid/instruments?page=2"}
    )
    with (
        make_client(server) as client,
        pytest.raises(InstrumentServiceError, match="leaves the instrument service"),
    ):
        client.list_instruments()
    assert server.hits == 1


def test_next_link_loop_is_an_error(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply.json(
        {"results": [option_record()], "next": "instruments?page=1"}
    )
    with make_client(server) as client, pytest.raises(InstrumentServiceError, match="loops"):
        client.list_instruments()
    assert server.hits == 2


def test_invalid_records_are_skipped_counted_and_logged(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    records = [
        option_record(),
        "not an object",
        {"exchange": "NSE"},  # no key
        option_record(key="NSE@NIFTY@options@2025-07-10@call@21500"),  # unknown product
        option_record(strike=22000),  # contradicts the key
        option_record(lot_size=0),
        option_record(lot_size=True),
        option_record(tick_size="abc"),
        option_record(active="yes"),
        option_record(expiry="10/07/2025"),
        future_record(),
    ]
    server.responder = lambda request: Reply.json(records)

    with (
        make_client(server) as client,
        caplog.at_level(logging.WARNING, logger="signalsvc.instruments.client"),
    ):
        listing = client.fetch_instruments()

    assert [spec.key for spec in listing.instruments] == [OPTION_KEY, FUTURE_KEY]
    assert [s.position for s in listing.skipped] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert [s.key for s in listing.skipped][:3] == [None, None, "NSE@NIFTY@options@2025-07-10@call@21500"]
    assert "unknown product 'options'" in listing.skipped[2].reason
    assert "strike 22000 contradicts the key" in listing.skipped[3].reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 9 invalid of 11 records" in warnings[0].getMessage()


def test_list_instruments_returns_only_the_valid_records(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply.json([option_record(lot_size=-1), spot_record()])
    with make_client(server) as client:
        assert [spec.key for spec in client.list_instruments()] == [SPOT_KEY]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b"", "not JSON"),
        (b'{"instruments": []}', "expected a JSON list"),
        (b'"a string"', "expected a JSON list"),
        (b'{"results": {"key": "x"}, "next": null}', "expected a JSON list"),
        (b'{"results": [], "next": 42}', "'next' is 42"),
    ],
)
def test_unusable_listing_body_is_an_error(server: ScriptedServer, body: bytes, message: str) -> None:
    server.responder = lambda request: Reply(status=200, body=body)
    with make_client(server) as client, pytest.raises(InstrumentServiceError, match=message) as caught:
        client.list_instruments()
    assert not isinstance(caught.value, InstrumentServiceUnavailable)


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_error_status_on_listing_is_an_error_without_retry(
    server: ScriptedServer, status: int
) -> None:
    server.responder = lambda request: Reply.json({"detail": "no"}, status=status)
    with (
        make_client(server) as client,
        pytest.raises(InstrumentServiceError, match=f"HTTP {status}") as caught,
    ):
        client.list_instruments()
    assert not isinstance(caught.value, InstrumentServiceUnavailable)
    assert server.hits == 1


# --------------------------------------------------------------------------------------------
# Single instrument
# --------------------------------------------------------------------------------------------


def test_get_instrument_returns_the_spec(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply.json(option_record(strike="21500.0"))
    with make_client(server) as client:
        spec = client.get_instrument("NSE@NIFTY@equity_options@2025-07-10@call@21500.0")

    assert spec == parse_instrument_record(option_record())
    assert server.requests[0].raw_path == f"/api/instruments/{OPTION_KEY}"


def test_get_instrument_unknown_is_none(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply.json({"detail": "not found"}, status=404)
    with make_client(server) as client:
        assert client.get_instrument(SPOT_KEY) is None
    assert server.hits == 1


def test_get_instrument_malformed_key_raises_before_any_request(server: ScriptedServer) -> None:
    with make_client(server) as client, pytest.raises(InvalidKey, match="expected EXCHANGE@SYMBOL@PRODUCT"):
        client.get_instrument("NIFTY")
    assert server.hits == 0


def test_get_instrument_invalid_record_is_an_error(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply.json(option_record(lot_size=None))
    with make_client(server) as client, pytest.raises(InvalidInstrumentRecord, match="lot_size None"):
        client.get_instrument(OPTION_KEY)


def test_get_instrument_answer_for_another_key_is_an_error(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply.json(spot_record())
    with (
        make_client(server) as client,
        pytest.raises(InstrumentServiceError, match="answered NSE@NIFTY@equity_spot"),
    ):
        client.get_instrument(OPTION_KEY)


# --------------------------------------------------------------------------------------------
# Retries and timeouts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
def test_transient_statuses_are_retried_until_success(server: ScriptedServer, status: int) -> None:
    server.responder = sequence(Reply(status=status), Reply(status=status), Reply.json([spot_record()]))
    with make_client(server, retries=3) as client:
        assert [spec.key for spec in client.list_instruments()] == [SPOT_KEY]
    assert server.hits == 3


def test_retries_are_bounded_then_unavailable(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply(status=503, body=b"down")
    with (
        make_client(server, retries=2) as client,
        pytest.raises(InstrumentServiceUnavailable, match="HTTP 503"),
    ):
        client.list_instruments()
    assert server.hits == 3  # the first attempt and two retries


def test_too_many_requests_honours_retry_after(server: ScriptedServer) -> None:
    server.responder = sequence(Reply(status=429, headers={"Retry-After": "1"}), Reply.json([spot_record()]))
    with make_client(server) as client:
        started = time.monotonic()
        assert [spec.key for spec in client.list_instruments()] == [SPOT_KEY]
        elapsed = time.monotonic() - started
    assert server.hits == 2
    assert 0.9 <= elapsed < 3.0


def test_server_error_500_is_not_retried(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply(status=500, body=b"boom")
    with make_client(server) as client, pytest.raises(InstrumentServiceUnavailable, match="HTTP 500"):
        client.list_instruments()
    assert server.hits == 1


def test_read_timeout_is_unavailable_and_bounded(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply.json([spot_record()], delay=5.0)
    with make_client(server, timeout=(1.0, 0.3)) as client:
        started = time.monotonic()
        with pytest.raises(InstrumentServiceUnavailable, match="timed out"):
            client.list_instruments()
        elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert server.hits == 1  # read timeouts are not retried


def test_connection_refused_is_unavailable_after_retries() -> None:
    # A port that was just free: nothing listens on it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = InstrumentServiceClient(f"http://127.0.0.1:{port}", timeout=(0.5, 0.5), retries=2, backoff=0.01)
    started = time.monotonic()
    with client, pytest.raises(InstrumentServiceUnavailable, match="connection failed"):
        client.get_instrument(SPOT_KEY)
    assert time.monotonic() - started < 2.0


def test_concurrent_calls_are_not_serialised(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply.json(spot_record(), delay=0.5)
    client = make_client(server)
    results: list[InstrumentSpec | None] = []

    def call() -> None:
        results.append(client.get_instrument(SPOT_KEY))

    threads = [threading.Thread(target=call) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    client.close()

    assert [spec.key if spec else None for spec in results] == [SPOT_KEY] * 4
    assert elapsed < 1.5  # four 0.5 s calls in parallel, not 2 s in a row


# --------------------------------------------------------------------------------------------
# Circuit breaker
# --------------------------------------------------------------------------------------------


def test_circuit_opens_after_fail_max_and_fails_fast(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply(status=503)
    client = make_client(server, retries=0, breaker_fail_max=3, breaker_reset_timeout=60)

    for _ in range(3):
        with pytest.raises(InstrumentServiceUnavailable, match="HTTP 503"):
            client.list_instruments()
    assert server.hits == 3
    assert client.breaker_state == "open"

    started = time.monotonic()
    with pytest.raises(InstrumentServiceUnavailable, match="circuit is open"):
        client.list_instruments()
    with pytest.raises(InstrumentServiceUnavailable, match="circuit is open"):
        client.get_instrument(SPOT_KEY)
    assert time.monotonic() - started < 0.1
    assert server.hits == 3  # nothing reached the server while open
    client.close()


def test_timeouts_count_towards_opening_the_circuit(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply.json([], delay=2.0)
    client = make_client(server, timeout=(1.0, 0.1), breaker_fail_max=2, breaker_reset_timeout=60)
    for _ in range(2):
        with pytest.raises(InstrumentServiceUnavailable, match="timed out"):
            client.list_instruments()
    with pytest.raises(InstrumentServiceUnavailable, match="circuit is open"):
        client.list_instruments()
    assert server.hits == 2
    client.close()


def test_half_open_trial_success_closes_the_circuit(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply(status=503)
    client = make_client(server, retries=0, breaker_fail_max=2, breaker_reset_timeout=0.2)
    for _ in range(2):
        with pytest.raises(InstrumentServiceUnavailable):
            client.list_instruments()
    assert client.breaker_state == "open"

    server.responder = lambda request: Reply.json([spot_record()])
    time.sleep(0.3)
    assert [spec.key for spec in client.list_instruments()] == [SPOT_KEY]
    assert client.breaker_state == "closed"
    assert [spec.key for spec in client.list_instruments()] == [SPOT_KEY]
    assert server.hits == 4
    client.close()


def test_half_open_trial_failure_reopens_the_circuit(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply(status=503)
    client = make_client(server, retries=0, breaker_fail_max=2, breaker_reset_timeout=0.2)
    for _ in range(2):
        with pytest.raises(InstrumentServiceUnavailable):
            client.list_instruments()

    time.sleep(0.3)
    with pytest.raises(InstrumentServiceUnavailable, match="HTTP 503"):
        client.list_instruments()  # the trial reaches the server and fails
    assert server.hits == 3
    assert client.breaker_state == "open"
    with pytest.raises(InstrumentServiceUnavailable, match="circuit is open"):
        client.list_instruments()
    assert server.hits == 3
    client.close()


def test_bad_answers_do_not_open_the_circuit(server: ScriptedServer) -> None:
    server.responder = lambda request: Reply(status=200, body=b"not json")
    client = make_client(server, breaker_fail_max=1)
    for _ in range(3):
        with pytest.raises(InstrumentServiceError, match="not JSON"):
            client.list_instruments()
    assert server.hits == 3
    assert client.breaker_state == "closed"
    client.close()


def test_a_success_resets_the_failure_count(server: ScriptedServer) -> None:
    server.responder = sequence(Reply(status=503), Reply.json([]), Reply(status=503), Reply(status=503))
    client = make_client(server, retries=0, breaker_fail_max=2)
    with pytest.raises(InstrumentServiceUnavailable):
        client.list_instruments()
    assert client.list_instruments() == []
    with pytest.raises(InstrumentServiceUnavailable, match="HTTP 503"):
        client.list_instruments()
    assert client.breaker_state == "closed"
    client.close()


# --------------------------------------------------------------------------------------------
# Record validation (pure)
# --------------------------------------------------------------------------------------------


def test_record_restating_fields_may_be_omitted() -> None:
    spec = parse_instrument_record({"key": OPTION_KEY, "lot_size": "75", "tick_size": "0.05"})
    assert spec == parse_instrument_record(option_record())


def test_non_option_placeholders_are_accepted() -> None:
    spec = parse_instrument_record(future_record(option_type="", strike=0))
    assert (spec.option_type, spec.strike) == (None, None)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (option_record(exchange="BSE"), "exchange 'BSE' contradicts the key"),
        (option_record(option_type="put"), "option_type 'put' contradicts the key"),
        (option_record(expiry="2025-07-11"), "expiry '2025-07-11' contradicts the key"),
        (option_record(expiry=None), "expiry None contradicts the key"),
        (spot_record(expiry="2025-07-11"), "expiry '2025-07-11' contradicts the key"),
        (option_record(strike="x"), "strike 'x' is not a number"),
        (option_record(strike=float("nan")), "strike nan is not a number"),
        (option_record(tick_size=0), "tick_size 0 is not a positive number"),
        ({k: v for k, v in option_record().items() if k != "tick_size"}, "missing tick_size"),
        ({k: v for k, v in option_record().items() if k != "lot_size"}, "missing lot_size"),
        (option_record(lot_size=1.5), "lot_size 1.5 is not a positive integer"),
        (option_record(key=None), "missing or non-string 'key'"),
        ([OPTION_KEY], "record is a JSON list"),
    ],
)
def test_invalid_record_messages(record: object, message: str) -> None:
    with pytest.raises(InvalidInstrumentRecord, match=message.replace("(", r"\(")):
        parse_instrument_record(record)


def test_base_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="must be http"):
        InstrumentServiceClient("instruments:8080")
