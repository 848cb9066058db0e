"""Cross-origin browser access to the REST API: only the origins in CORS_ALLOWED_ORIGINS (none by
default), without credentials, and only under /api/v2/. The WebSocket checks its origins itself:
tests/streaming/test_limits.py::test_browser_origins_must_be_this_service and ::test_an_explicit_origin_list.
"""

from __future__ import annotations

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db

ALLOWED = "https://desk.example"
URL = "/api/v2/health/live"


def test_by_default_no_origin_is_allowed(api, settings):
    assert settings.CORS_ALLOWED_ORIGINS == []
    response = api.get(URL, HTTP_ORIGIN=ALLOWED)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


@override_settings(CORS_ALLOWED_ORIGINS=[ALLOWED])
def test_an_allowed_origin_gets_the_header_without_credentials(api):
    response = api.get(URL, HTTP_ORIGIN=ALLOWED)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["Access-Control-Expose-Headers"] == "Retry-After"
    assert "Access-Control-Allow-Credentials" not in response.headers


@override_settings(CORS_ALLOWED_ORIGINS=[ALLOWED])
@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://desk.example", "https://desk.example:8443", "null"]
)
def test_any_other_origin_gets_no_header(api, origin):
    response = api.get(URL, HTTP_ORIGIN=origin)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


@override_settings(CORS_ALLOWED_ORIGINS=[ALLOWED])
def test_a_preflight_from_an_allowed_origin_may_send_the_api_key(api):
    response = api.options(
        "/api/v2/signals/batch/greeks",
        HTTP_ORIGIN=ALLOWED,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, x-api-key",
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    allowed_headers = {h.strip() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "x-api-key"} <= allowed_headers


@override_settings(CORS_ALLOWED_ORIGINS=[ALLOWED])
def test_a_preflight_from_another_origin_is_not_allowed(api):
    response = api.options(
        "/api/v2/signals/batch/greeks",
        HTTP_ORIGIN="https://evil.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="x-api-key",
    )
    assert "Access-Control-Allow-Origin" not in response.headers


@override_settings(CORS_ALLOWED_ORIGINS=[ALLOWED])
def test_the_admin_is_never_shared_across_origins(client):
    response = client.get("/admin/login/", HTTP_ORIGIN=ALLOWED)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


@override_settings(CORS_ALLOWED_ORIGINS=[ALLOWED])
def test_an_over_size_refusal_is_readable_by_the_allowed_origin(api):
    """The body limit answers before the view: the browser still gets to read the 413."""
    response = api.post(
        "/api/v2/market/bars",
        data=b"[]",
        content_type="application/json",
        HTTP_ORIGIN=ALLOWED,
        CONTENT_LENGTH=str(64 * 1024 * 1024),
    )
    assert response.status_code == 413
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
