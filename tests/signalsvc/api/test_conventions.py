"""API conventions (SPEC §9): the error JSON, API keys, anonymous access, rate limits, docs."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from django.test import override_settings

from signalsvc.accounts.models import ApiKey
from signalsvc.accounts.throttling import TierRateThrottle
from tests.conftest import subprocess_env

pytestmark = pytest.mark.django_db

SPOT = "NSE@NIFTY@equity_spot"


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_malformed_key_is_400_naming_the_grammar(api):
    response = api.get("/api/v2/market/bars/NSE@NIFTY@bad")
    assert_error(response, 400, "invalid_instrument_key")
    assert "EXCHANGE@SYMBOL@PRODUCT" in response.json()["error"]["message"]


def test_unknown_key_is_404(api):
    assert_error(api.get(f"/api/v2/market/bars/{SPOT}"), 404, "unknown_instrument")


def test_unknown_path_is_json_404(api):
    assert_error(api.get("/api/v2/nothing-here"), 404, "not_found")


@override_settings(API_ANONYMOUS_READ=False)
def test_missing_key_when_anonymous_is_off_is_401(api, make_instruments):
    make_instruments(SPOT)
    response = api.get(f"/api/v2/market/bars/{SPOT}")
    assert_error(response, 401, "not_authenticated")
    assert response.headers["WWW-Authenticate"].startswith("ApiKey")


@override_settings(API_ANONYMOUS_READ=False)
def test_valid_key_reads_when_anonymous_is_off(api, make_instruments, make_api_key):
    make_instruments(SPOT)
    response = api.get(f"/api/v2/market/bars/{SPOT}", HTTP_X_API_KEY=make_api_key())
    assert response.status_code == 200
    assert response.json()["instrument_key"] == SPOT


def test_wrong_key_is_401(api, make_instruments):
    make_instruments(SPOT)
    assert_error(
        api.get(f"/api/v2/market/bars/{SPOT}", HTTP_X_API_KEY="sk_nope_nope"), 401, "authentication_failed"
    )


def test_inactive_key_is_401(api, make_instruments, make_api_key):
    make_instruments(SPOT)
    raw = make_api_key()
    ApiKey.objects.update(active=False)
    assert_error(api.get(f"/api/v2/market/bars/{SPOT}", HTTP_X_API_KEY=raw), 401, "authentication_failed")


def test_key_without_write_access_cannot_post_bars(api, make_api_key):
    raw = make_api_key(can_write=False)
    assert_error(
        api.post("/api/v2/market/bars", [], format="json", HTTP_X_API_KEY=raw), 403, "permission_denied"
    )


def test_over_limit_client_gets_429_with_retry_after(api, make_instruments, make_api_key):
    make_instruments(SPOT)
    raw = make_api_key(rpm=3)
    for _ in range(3):
        assert api.get(f"/api/v2/market/bars/{SPOT}", HTTP_X_API_KEY=raw).status_code == 200
    response = api.get(f"/api/v2/market/bars/{SPOT}", HTTP_X_API_KEY=raw)
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_rate_limit_is_per_key(api, make_instruments, make_api_key):
    make_instruments(SPOT)
    first, second = make_api_key(rpm=1, tier="one"), make_api_key(rpm=1, tier="two")
    assert api.get(f"/api/v2/market/bars/{SPOT}", HTTP_X_API_KEY=first).status_code == 200
    assert api.get(f"/api/v2/market/bars/{SPOT}", HTTP_X_API_KEY=first).status_code == 429
    assert api.get(f"/api/v2/market/bars/{SPOT}", HTTP_X_API_KEY=second).status_code == 200


def test_keys_are_stored_hashed(make_api_key):
    raw = make_api_key()
    stored = ApiKey.objects.get()
    assert raw not in (stored.digest, stored.prefix)
    assert len(stored.digest) == 64
    assert raw.startswith(f"sk_{stored.prefix}_")


def test_openapi_schema_and_docs(api):
    schema = api.get("/api/v2/schema/")
    assert schema.status_code == 200
    assert b"/api/v2/market/bars" in schema.content
    assert api.get("/api/v2/docs/").status_code == 200


def test_prometheus_metrics(api, make_instruments):
    make_instruments(SPOT)
    api.get(f"/api/v2/market/bars/{SPOT}")
    response = api.get("/metrics")
    assert response.status_code == 200
    assert b"signal_http_requests_total" in response.content


def test_method_not_allowed_is_json(api):
    assert_error(api.delete("/api/v2/health/live"), 405, "method_not_allowed")


def test_an_unexpected_exception_still_leaves_as_the_error_json(rf):
    """A 500 is a bug, but even then the client gets the error shape, not an HTML page."""
    from rest_framework.views import APIView

    class Broken(APIView):
        permission_classes = []
        throttle_classes = []

        def get(self, request):
            raise RuntimeError("boom")

    response = Broken.as_view()(rf.get("/x"))
    assert response.status_code == 500
    assert response.data == {
        "error": {"code": "internal_error", "message": "internal error; it has been logged", "details": {}}
    }


def test_an_unavailable_database_is_503_with_retry_after(rf):
    """PostgreSQL down, out of connections, or no pooled connection free in time."""
    from django.db import OperationalError
    from rest_framework.views import APIView

    class NoDatabase(APIView):
        permission_classes = []
        throttle_classes = []

        def get(self, request):
            raise OperationalError("connection failed: sorry, too many clients already")

    response = NoDatabase.as_view()(rf.get("/x"))
    assert response.status_code == 503
    assert response.data["error"]["code"] == "database_unavailable"
    assert response["Retry-After"] == "5"


def test_web_processes_share_a_connection_pool():
    code = (
        "import signalsvc.asgi; from django.conf import settings; d = settings.DATABASES['default']; "
        "print(d['CONN_MAX_AGE'], d['OPTIONS']['pool']['max_size'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["0", "20"]


def test_django_level_404_and_500_handlers_are_json(rf):
    from signalsvc.api.errors import handler404, handler500

    assert handler404(rf.get("/nope")).status_code == 404
    response = handler500(rf.get("/x"))
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"


def _stub_request(key):
    return SimpleNamespace(auth=key, META={"REMOTE_ADDR": "10.0.0.9"})


def test_a_concurrent_burst_from_one_key_never_exceeds_its_tier(make_api_key):
    make_api_key(rpm=20)
    key = ApiKey.objects.select_related("subscription__tier").get()
    request = _stub_request(key)

    def burst(_):
        return sum(TierRateThrottle().allow_request(request, None) for _ in range(10))

    with ThreadPoolExecutor(max_workers=8) as pool:
        allowed = sum(pool.map(burst, range(8)))

    assert allowed == 20  # of 80 requests, from 8 threads at once
    throttle = TierRateThrottle()
    assert not throttle.allow_request(request, None)
    assert 1 <= throttle.wait() <= 60


def test_without_redis_requests_are_let_through(make_api_key, settings, caplog):
    from tests.conftest import free_port

    make_api_key(rpm=1)
    key = ApiKey.objects.select_related("subscription__tier").get()
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    throttle = TierRateThrottle()

    assert all(throttle.allow_request(_stub_request(key), None) for _ in range(3))
    assert throttle.wait() is None
    assert "rate limit not checked" in caplog.text
