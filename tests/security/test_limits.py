"""Request-body and frame-size limits.

Proven elsewhere: a real 10 MB body to POST /market/bars is 413 and writes nothing
(tests/signalsvc/marketdata/test_bars_api.py::test_ten_megabyte_body_is_413); a WebSocket message
over WEBSOCKET_MAX_MESSAGE_BYTES is answered `message_too_large` (tests/streaming/test_protocol.py);
compose starts uvicorn with `--ws-max-size 65536` (tests/deploy/test_deploy_files.py::test_service_command)
and nginx caps bodies at 12m (::test_body_limit_and_gzip_for_json). Here: the body limit on every
endpoint that takes a body, and the frame limit of the real WebSocket server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import free_port, stop_process_group, subprocess_env

ROOT = Path(__file__).resolve().parents[2]
POST_ENDPOINTS = [
    "/api/v2/market/bars",
    "/api/v2/signals/batch/greeks",
    "/api/v2/signals/batch/indicators",
    "/api/v2/signals/batch/moneyness/greeks",
    "/api/v2/signals/greeks/calculate",
]


@pytest.mark.django_db
@pytest.mark.parametrize("path", POST_ENDPOINTS)
def test_a_body_over_the_limit_is_413_before_anything_reads_it(api, settings, path):
    """The declared length decides: the view is never reached, whatever the body holds."""
    response = api.post(
        path,
        data=b"[]",
        content_type="application/json",
        CONTENT_LENGTH=str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1),
    )
    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "payload_too_large",
        "message": f"request body of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1} bytes exceeds the limit "
        f"of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE}",
        "details": {},
    }


@pytest.mark.django_db
@pytest.mark.parametrize("length", ["abc", "1e3", "0x10"])
def test_an_unreadable_content_length_is_400(api, length):
    response = api.post(
        "/api/v2/market/bars", data=b"[]", content_type="application/json", CONTENT_LENGTH=length
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


# --- the WebSocket server's frame limit (scripts/start-ws.sh, as `make run` starts it) ----------

WS_PATH = "/api/v2/signals/subscriptions/websocket"
FRAME_LIMIT = 65536  # scripts/start-ws.sh's WS_MAX_FRAME_BYTES default, compose's --ws-max-size


@pytest.fixture
def ws_server(tmp_path: Path):
    port = free_port()
    env = subprocess_env(
        WS_PORT=str(port), WS_WORKERS_PER_CORE="0.01", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics")
    )
    env.pop("WS_MAX_FRAME_BYTES", None)  # the script's default is what is tested
    log = open(tmp_path / "ws.log", "w+")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        ["scripts/start-ws.sh"],
        cwd=ROOT,
        env=env,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, (
                    "the WebSocket server exited:\n" + (tmp_path / "ws.log").read_text()
                )
                assert time.monotonic() < deadline, "the WebSocket server is not listening within 60 s"
                time.sleep(0.2)
        yield f"ws://127.0.0.1:{port}{WS_PATH}"
    finally:
        stop_process_group(process)
        log.close()


def _greeted(ws) -> None:
    assert json.loads(ws.recv(timeout=10))["type"] == "connection"


@pytest.mark.slow
def test_a_frame_over_the_server_limit_closes_the_socket_with_1009(ws_server):
    with connect(ws_server, open_timeout=10, max_size=None) as ws:
        _greeted(ws)
        ws.send(json.dumps({"type": "ping", "pad": "x" * FRAME_LIMIT}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # a heartbeat may arrive first
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


@pytest.mark.slow
def test_a_message_under_the_frame_limit_but_over_the_app_limit_is_an_error_and_the_socket_stays(ws_server):
    with connect(ws_server, open_timeout=10, max_size=None) as ws:
        _greeted(ws)
        ws.send(json.dumps({"type": "ping", "pad": "x" * 8192}))
        assert json.loads(ws.recv(timeout=10))["code"] == "message_too_large"
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "pong"
