"""API keys are cached in each process, and a change to them reaches every process within a second
(issue 9): in-process behaviour, then two real web processes."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from signalsvc.accounts.models import ApiKey, Tier
from signalsvc.accounts.services import api_key_revoke
from tests.conftest import free_port, subprocess_env, wait_until_served

ROOT = Path(__file__).resolve().parents[2]
URL = "/api/v2/signals/indicators"  # any authenticated read


@pytest.mark.django_db
def test_a_cached_key_costs_no_query(api, make_api_key, django_assert_num_queries):
    raw = make_api_key(rpm=1000)
    assert api.get(URL, HTTP_X_API_KEY=raw).status_code == 200
    with django_assert_num_queries(0):
        assert api.get(URL, HTTP_X_API_KEY=raw).status_code == 200
    with django_assert_num_queries(1):  # an unknown secret is looked up once, then cached as unknown
        assert api.get(URL, HTTP_X_API_KEY="sk_nope_x").status_code == 401
    with django_assert_num_queries(0):
        assert api.get(URL, HTTP_X_API_KEY="sk_nope_x").status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["revoke", "deactivate_subscription", "delete"])
def test_a_change_applies_to_the_next_request_in_this_process(api, make_api_key, change):
    raw = make_api_key(rpm=1000)
    assert api.get(URL, HTTP_X_API_KEY=raw).status_code == 200
    key = ApiKey.objects.select_related("subscription").get()
    if change == "revoke":
        api_key_revoke(key=key)
    elif change == "deactivate_subscription":
        key.subscription.active = False
        key.subscription.save()
    else:
        key.delete()
    assert api.get(URL, HTTP_X_API_KEY=raw).status_code == 401


@pytest.mark.django_db
def test_an_expired_key_stops_at_once_even_when_cached(api, make_api_key):
    raw = make_api_key(rpm=1000)
    key = ApiKey.objects.get()
    ApiKey.objects.filter(pk=key.pk).update(expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    assert api.get(URL, HTTP_X_API_KEY=raw).status_code == 200  # cached with its expiry
    time.sleep(1.1)
    assert api.get(URL, HTTP_X_API_KEY=raw).status_code == 401


@pytest.mark.django_db
def test_a_tier_change_reaches_the_rate_limit(api, make_api_key):
    raw = make_api_key(rpm=3, tier="small")
    assert [api.get(URL, HTTP_X_API_KEY=raw).status_code for _ in range(4)] == [200, 200, 200, 429]
    tier = Tier.objects.get(name="small")
    tier.requests_per_minute = 10
    tier.save()
    assert api.get(URL, HTTP_X_API_KEY=raw).status_code == 200


def _web(port: int, log) -> subprocess.Popen:
    """The REST server as the topology runs it (scripts/start-web.sh), one worker process."""
    return subprocess.Popen(
        [str(ROOT / "scripts/start-web.sh")],
        cwd=ROOT,
        env=subprocess_env(
            API_ANONYMOUS_READ="false",
            WEB_BIND=f"127.0.0.1:{port}",
            WEB_WORKERS="1",
            PROMETHEUS_MULTIPROC_DIR=str(log.name) + f".metrics-{port}",
        ),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_revoked_key_stops_within_a_second_on_every_process(make_api_key, tmp_path):
    raw = make_api_key(rpm=100_000)
    ports = [free_port(), free_port()]
    log = open(tmp_path / "web.log", "w+")  # noqa: SIM115 - closed in finally
    servers = [_web(port, log) for port in ports]
    urls = [f"http://127.0.0.1:{port}{URL}" for port in ports]
    try:
        for url in urls:
            wait_until_served(url, what="web process", headers={"X-API-Key": raw})
        # Both processes now hold the key in their caches.
        api_key_revoke(key=ApiKey.objects.get())
        revoked = time.monotonic()
        stopped: dict[str, float] = {}
        while len(stopped) < len(urls) and time.monotonic() - revoked < 5:
            for url in urls:
                if (
                    url not in stopped
                    and requests.get(url, headers={"X-API-Key": raw}, timeout=2).status_code == 401
                ):
                    stopped[url] = time.monotonic() - revoked
            time.sleep(0.02)
        assert set(stopped) == set(urls), stopped
        assert max(stopped.values()) <= 1.0, stopped
    finally:
        for server in servers:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(10)
        log.close()
