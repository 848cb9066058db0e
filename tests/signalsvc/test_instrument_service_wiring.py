"""INSTRUMENT_SERVICE_URL wiring: unknown keys are looked up remotely; sync pulls the master."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest
from django.core.management import call_command
from django.test import override_settings

from signalsvc.instruments.models import Instrument

pytestmark = pytest.mark.django_db

OPTION = {
    "key": "NSE@NIFTY@equity_options@2026-12-29@call@24000",
    "exchange": "NSE",
    "symbol": "NIFTY",
    "product": "equity_options",
    "expiry": "2026-12-29",
    "option_type": "call",
    "strike": "24000",
    "lot_size": 75,
    "tick_size": "0.05",
    "active": True,
}
SPOT = {"key": "NSE@NIFTY@equity_spot", "exchange": "NSE", "symbol": "NIFTY", "product": "equity_spot",
        "expiry": None, "option_type": None, "strike": None, "lot_size": 1, "tick_size": "0.05", "active": True}  # fmt: skip


@pytest.fixture
def service():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = unquote(urlsplit(self.path).path)
            if path == "/instruments":
                self.reply(200, [OPTION, SPOT])
            elif path == f"/instruments/{OPTION['key']}":
                self.reply(200, OPTION)
            else:
                self.reply(404, {"detail": "not found"})

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_unknown_key_is_fetched_from_the_instrument_service(api, service):
    with override_settings(INSTRUMENT_SERVICE_URL=service):
        response = api.get(f"/api/v2/market/bars/{OPTION['key']}")
        missing = api.get("/api/v2/market/bars/NSE@NIFTY@equity_options@2026-12-29@put@1")
    assert response.status_code == 200
    assert Instrument.objects.get(key=OPTION["key"]).lot_size == 75
    assert missing.status_code == 404


def test_sync_instruments_pulls_the_master(service):
    with override_settings(INSTRUMENT_SERVICE_URL=service):
        call_command("sync_instruments")
    assert set(Instrument.objects.values_list("key", flat=True)) == {OPTION["key"], SPOT["key"]}


def test_unreachable_service_means_404_not_500(api):
    with override_settings(INSTRUMENT_SERVICE_URL="http://127.0.0.1:1", INSTRUMENT_SERVICE_TIMEOUT=0.5):
        response = api.get(f"/api/v2/market/bars/{OPTION['key']}")
    assert response.status_code == 404
