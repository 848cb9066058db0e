"""Production settings (DJANGO_ENV=production), each read in a fresh process as a deployment starts:
required values, DEBUG off, HTTPS only with secure cookies and HSTS, and `manage.py check --deploy`
clean. The request/response checks go through the real middleware stack with Django's test client.

Also proven elsewhere: an empty DJANGO_SECRET_KEY stops start-up
(tests/signalsvc/test_ops.py::test_production_refuses_to_start_without_its_required_settings), and
compose refuses to start without DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS, POSTGRES_PASSWORD and
FLOWER_BASIC_AUTH (tests/deploy/test_deploy_files.py::test_missing_production_secret_stops_compose).
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.security.production import PUBLIC_HOST, python_in_production, run_production


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_SECRET_KEY": None}, "DJANGO_SECRET_KEY must be set when DJANGO_ENV=production"),
        ({"DJANGO_ALLOWED_HOSTS": None}, "DJANGO_ALLOWED_HOSTS must be set when DJANGO_ENV=production"),
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG must be off when DJANGO_ENV=production"),
    ],
    ids=["no-secret-key", "no-allowed-hosts", "debug-on"],
)
def test_production_refuses_to_start(env: dict[str, str | None], message: str) -> None:
    result = run_production([sys.executable, "-c", "import django; django.setup()"], **env)
    assert result.returncode != 0
    assert f"django.core.exceptions.ImproperlyConfigured: {message}" in result.stderr


SETTINGS_PROBE = """
import json
import django
django.setup()
from django.conf import settings
names = ["DEBUG", "ALLOWED_HOSTS", "SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_SECURE",
         "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER", "SECURE_HSTS_SECONDS",
         "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_CONTENT_TYPE_NOSNIFF", "X_FRAME_OPTIONS",
         "CORS_ALLOWED_ORIGINS", "CORS_ALLOW_CREDENTIALS", "API_ANONYMOUS_READ"]
print(json.dumps({name: getattr(settings, name) for name in names}))
"""


def test_production_settings_are_locked_down() -> None:
    assert python_in_production(SETTINGS_PROBE, DJANGO_ALLOWED_HOSTS=PUBLIC_HOST) == {
        "DEBUG": False,
        "ALLOWED_HOSTS": [PUBLIC_HOST],
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SECURE_HSTS_SECONDS": 365 * 86400,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "X_FRAME_OPTIONS": "DENY",
        "CORS_ALLOWED_ORIGINS": [],
        "CORS_ALLOW_CREDENTIALS": False,
        "API_ANONYMOUS_READ": False,
    }


def test_the_demo_serves_plain_http(settings) -> None:
    """Outside production nothing redirects to HTTPS or marks cookies secure: `make run` is plain HTTP
    on localhost."""
    assert (settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS) == (False, 0)
    assert (settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE) == (False, False)
    assert settings.SECURE_PROXY_SSL_HEADER is None


def test_check_deploy_is_clean() -> None:
    """No warning at all (--fail-level WARNING); the one silenced check is HSTS preload, whose reason
    is written beside SILENCED_SYSTEM_CHECKS in signalsvc/settings/base.py."""
    result = run_production(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_ALLOWED_HOSTS=PUBLIC_HOST,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "System check identified no issues (1 silenced).\n"


# The same requests as a client behind the TLS-terminating proxy (X-Forwarded-Proto: https) or as a
# container probe (plain HTTP, straight to the replica). The probe logs in to the admin as a superuser
# it creates and deletes again.
TRAFFIC_PROBE = """
import json
import django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client

# As nginx passes them on: the public Host, and the TLS-terminating proxy's X-Forwarded-Proto.
HTTPS = {"X-Forwarded-Proto": "https", "Host": "signal.example.com"}
# CSRF checked as for a browser: the login posts the token with the page's own HTTPS origin.
client = Client(enforce_csrf_checks=True)
BROWSER = {**HTTPS, "Origin": "https://signal.example.com", "Referer": "https://signal.example.com/admin/login/"}

def seen(response):
    return {
        "status": response.status_code,
        "location": response.headers.get("Location"),
        "hsts": response.headers.get("Strict-Transport-Security"),
        "cookies": {name: {"secure": bool(m["secure"]), "httponly": bool(m["httponly"])}
                    for name, m in response.cookies.items()},
    }

out = {
    "health_live_http": seen(client.get("/api/v2/health/live")),
    "metrics_http": seen(client.get("/metrics")),
    "docs_http": seen(client.get("/api/v2/docs/")),
    "admin_http": seen(client.get("/admin/")),
    "admin_https": seen(client.get("/admin/", headers=HTTPS)),
    "login_page_https": seen(client.get("/admin/login/", headers=HTTPS)),
}
user = get_user_model().objects.create_superuser("security-probe", password="probe-password-8c1f")
try:
    out["login_https"] = seen(client.post(
        "/admin/login/",
        {"username": "security-probe", "password": "probe-password-8c1f", "next": "/admin/",
         "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
        headers=BROWSER,
    ))
    out["admin_logged_in_https"] = seen(client.get("/admin/", headers=HTTPS))
finally:
    client.logout()
    user.delete()
print(json.dumps(out))
"""
HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture(scope="module")
def traffic(django_db_setup) -> dict[str, Any]:
    return python_in_production(TRAFFIC_PROBE)


@pytest.mark.parametrize("path", ["health_live_http", "metrics_http"])
def test_probes_and_prometheus_are_answered_over_plain_http(traffic: dict[str, Any], path: str) -> None:
    assert (traffic[path]["status"], traffic[path]["location"]) == (200, None)


@pytest.mark.parametrize(
    ("path", "location"),
    [("docs_http", "https://testserver/api/v2/docs/"), ("admin_http", "https://testserver/admin/")],
)
def test_everything_else_is_redirected_to_https(traffic: dict[str, Any], path: str, location: str) -> None:
    assert (traffic[path]["status"], traffic[path]["location"]) == (301, location)


def test_the_admin_sends_an_anonymous_visitor_to_its_login_with_hsts(traffic: dict[str, Any]) -> None:
    assert traffic["admin_https"] == {
        "status": 302,
        "location": "/admin/login/?next=/admin/",
        "hsts": HSTS,
        "cookies": {},
    }


def test_the_csrf_cookie_is_secure(traffic: dict[str, Any]) -> None:
    page = traffic["login_page_https"]
    assert (page["status"], page["hsts"]) == (200, HSTS)
    assert page["cookies"]["csrftoken"]["secure"] is True


def test_the_session_cookie_is_secure_and_http_only(traffic: dict[str, Any]) -> None:
    """The login behind the proxy passes the CSRF origin check: production takes the scheme from
    X-Forwarded-Proto (compose's gunicorn does not trust nginx's, so without
    SECURE_PROXY_SSL_HEADER Django saw http and refused the browser's https origin with 403)."""
    login = traffic["login_https"]
    assert (login["status"], login["location"]) == (302, "/admin/")
    assert login["cookies"]["sessionid"] == {"secure": True, "httponly": True}
    assert traffic["admin_logged_in_https"]["status"] == 200
