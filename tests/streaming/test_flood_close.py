"""A client closed for flooding is forgotten by the server (found by tests/fuzz/test_websocket_fuzz.py).

The consumer closed a flooding socket from a task and went on answering the messages still queued
behind the close; uvicorn refuses a send after ``websocket.close`` (RuntimeError), which ended the
consumer without its ``disconnect``: each flooder stayed in the connection count (and so, at
WEBSOCKET_MAX_CONNECTIONS, shut out real clients with 1013). Here against the real server."""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.security.test_limits import ws_server  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow


def _open_connections(url: str) -> float:
    port = url.split(":")[2].split("/")[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        match = re.search(r"^signal_ws_connections (\S+)$", response.read().decode(), re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_a_flooder_is_closed_with_1008_and_no_longer_counted(ws_server, tmp_path):  # noqa: F811
    with connect(ws_server, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "connection"
        with pytest.raises(ConnectionClosed) as closed:
            # The rate is measured as the pings arrive: the close may come before the last is sent.
            for _ in range(400):
                ws.send('{"type":"ping"}')
            while True:
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    deadline = time.monotonic() + 5
    while _open_connections(ws_server) != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _open_connections(ws_server) == 0
    assert "Exception in ASGI application" not in (tmp_path / "ws.log").read_text()
