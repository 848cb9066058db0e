import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.test import override_settings

from signalsvc.ops.metrics import api_metrics_flush
from signalsvc.ops.models import ApiMetric
from tests.conftest import free_port, stop_process_group, subprocess_env, wait_until_served

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def test_live(api):
    assert api.get("/api/v2/health/live").json() == {"status": "alive"}


def test_ready_when_every_dependency_answers(api):
    body = api.get("/api/v2/health/ready").json()
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "postgres": True,
        "redis": True,
        "broker": True,
    }


def test_not_ready_when_the_broker_is_down(api):
    with override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0"):
        response = api.get("/api/v2/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False


def test_not_ready_when_redis_is_down(api):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = api.get("/api/v2/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False


def test_requests_are_aggregated_per_key_endpoint_and_minute(api, make_instruments, make_api_key):
    make_instruments("NSE@NIFTY@equity_spot")
    raw = make_api_key()
    for _ in range(3):
        api.get("/api/v2/market/bars/NSE@NIFTY@equity_spot", HTTP_X_API_KEY=raw)
    api.get("/api/v2/market/bars/NSE@NIFTY@nope", HTTP_X_API_KEY=raw)
    api_metrics_flush(now=dt.datetime.now(dt.UTC), include_current=True)
    row = ApiMetric.objects.get(endpoint="api/v2/market/bars/<str:key>")
    assert (row.count, row.errors, row.method, row.api_key) == (4, 1, "GET", raw.split("_")[1])
    assert row.latency_p50_ms > 0
    assert row.latency_p95_ms >= row.latency_p50_ms


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_rest_worker_writes_its_counts_out_on_sigterm(make_instruments, make_api_key, tmp_path):
    """The REST server's workers (granian forks them) write their buffered aggregates when they stop:
    with the periodic write an hour away, only the exit path can have written these."""
    make_instruments("NSE@NIFTY@equity_spot")
    raw = make_api_key()
    port = free_port()
    log = open(tmp_path / "web.log", "w+")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(
        [str(ROOT / "scripts/start-web.sh")],
        cwd=ROOT,
        env=subprocess_env(
            WEB_BIND=f"127.0.0.1:{port}",
            WEB_WORKERS="1",
            API_METRICS_FLUSH_SECONDS="3600",
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        ),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api/v2/market/bars/NSE@NIFTY@equity_spot"
    try:
        wait_until_served(url, what="the REST server", headers={"X-API-Key": raw}, process=server)
        for _ in range(4):
            assert requests.get(url, headers={"X-API-Key": raw}, timeout=5).status_code == 200
    finally:
        stop_process_group(server, timeout=30)
        log.seek(0)
        output = log.read()
        log.close()
    assert server.returncode == 0, output[-3000:]
    api_metrics_flush(now=dt.datetime.now(dt.UTC), include_current=True)
    row = ApiMetric.objects.get(endpoint="api/v2/market/bars/<str:key>")
    assert row.count == 5, output[-3000:]


def test_production_refuses_to_start_without_its_required_settings():
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=subprocess_env(
            DJANGO_ENV="production", DJANGO_SECRET_KEY="", DJANGO_SETTINGS_MODULE="signalsvc.settings"
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DJANGO_ENV=production" in result.stderr


def test_readiness_reports_how_far_the_calendar_holidays_are_known(api, settings):
    from signalsvc.core.calendar import get_calendar
    from signalsvc.ops.health import calendar_status

    settings.MARKET_CALENDAR = "NSE"
    library_horizon = get_calendar("NSE").holidays_known_until
    body = api.get("/api/v2/health/ready").json()
    assert body["calendar"]["holidays_known_until"] == library_horizon.isoformat()

    near = calendar_status(today=library_horizon - dt.timedelta(days=10))
    far = calendar_status(today=library_horizon - dt.timedelta(days=100))
    assert "MARKET_EXTRA_HOLIDAYS" in near["warning"] and "warning" not in far
    assert f"signal_calendar_holidays_known_days {float(100)}" in api.get("/metrics").content.decode()

    settings.MARKET_EXTRA_HOLIDAYS = [dt.date(library_horizon.year + 1, 1, 26)]
    listed = calendar_status(today=library_horizon - dt.timedelta(days=10))
    assert listed["holidays_known_until"] == f"{library_horizon.year + 1}-12-31" and "warning" not in listed
    assert listed["extra_holidays"] == 1


def test_a_malformed_extra_holiday_stops_start_up():
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=subprocess_env(
            MARKET_EXTRA_HOLIDAYS="2027-01-26,26/03/2027", DJANGO_SETTINGS_MODULE="signalsvc.settings"
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "MARKET_EXTRA_HOLIDAYS must be comma-separated YYYY-MM-DD dates" in result.stderr
