"""The fast lane (signalsvc/api/fastlane.py) answers exactly as Django would, or lets Django answer.

Each request is sent twice through the real WSGI application, once with the fast lane in front and
once to Django alone, and the two answers are compared: status, every header, body. Which of the
two answered is observed by counting the calls that reach Django."""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse

import orjson
import pytest
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import override_settings

from greeks.services import chain_compute
from signalsvc.accounts.throttling import KEY_PREFIX
from signalsvc.api.fastlane import FastLane
from signalsvc.ops.metrics import api_metrics_flush
from signalsvc.ops.models import ApiMetric
from signalsvc.wsgi import local_environ
from tests.conftest import DEMO_START

pytestmark = pytest.mark.django_db

SIGNALS = "/api/v2/signals"
NIFTY = "NSE@NIFTY@equity_spot"
RANGE = urllib.parse.urlencode(
    {"start_time": DEMO_START.isoformat(), "end_time": (DEMO_START + dt.timedelta(minutes=5)).isoformat()}
)


class Counting:
    """Django's WSGI handler, counting the requests that reach it."""

    def __init__(self):
        self.django = get_wsgi_application()
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        return self.django(environ, start_response)


def call(app, path: str, headers: dict[str, str] | None = None, body: bytes | None = None):
    """(status code, {lower-cased header: value}, body) of a GET, or a POST of ``body``, through
    ``app``."""
    path, _, query = path.partition("?")
    environ = local_environ(urllib.parse.unquote(path), query=query, body=body)
    for name, value in (headers or {}).items():
        if name in ("Content-Type", "Content-Length"):
            environ[name.upper().replace("-", "_")] = value
        else:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"] = int(status.split()[0])
        answer["headers"] = {name.lower(): value for name, value in response_headers}

    body = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], body


@pytest.fixture
def live(demo_market, redis_client):
    chain_compute(underlying_key=NIFTY, client=redis_client)
    return demo_market.truth()


@pytest.fixture
def option(live):
    nearest = min(live["underlyings"]["NIFTY"]["expiries"].values(), key=lambda e: e["t"])
    return min(nearest["options"], key=lambda k: abs(nearest["options"][k]["strike"] - nearest["forward"]))


@pytest.fixture
def lanes():
    # As Django's test client does: the handler's signals would close the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    django = Counting()
    yield FastLane(django), django
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def same_answer(lanes, path, headers, body=None):
    """Both answers, checked equal; and whether the fast lane answered itself."""
    fast, django = lanes
    before = django.calls
    via_lane = call(fast, path, headers, body)
    answered_by_lane = django.calls == before
    direct = call(django, path, headers, body)
    assert via_lane[0] == direct[0], (via_lane, direct)
    assert via_lane[1] == direct[1]
    assert via_lane[2] == direct[2]
    return via_lane, answered_by_lane


def test_the_hot_reads_are_answered_by_the_lane_as_django_answers_them(lanes, option, make_api_key):
    key = {"X-API-Key": make_api_key(rpm=1_000_000)}
    for path in (
        f"{SIGNALS}/realtime/greeks/{option}",
        f"{SIGNALS}/realtime/moneyness/NIFTY/greeks/ATM",
        f"{SIGNALS}/realtime/moneyness/NIFTY/greeks/OTM2?include=instruments",
        f"{SIGNALS}/realtime/moneyness/NIFTY/atm-iv",
        f"{SIGNALS}/realtime/moneyness/NIFTY/atm-iv?tenor=30d",
        f"{SIGNALS}/realtime/indicators/{NIFTY}/sma?timeframe=1m&period=1",
        # Historical reads: the first computes and stores, the second comes from the cache.
        *[f"{SIGNALS}/historical/greeks/{option}?{RANGE}"] * 2,
        f"{SIGNALS}/historical/greeks/{NIFTY}?{RANGE}&timeframe=5m",
        *[f"{SIGNALS}/historical/moneyness/NIFTY/atm-iv/history?{RANGE}"] * 2,
        f"{SIGNALS}/historical/moneyness/NIFTY/atm-iv?{RANGE}",
        f"{SIGNALS}/historical/moneyness/NIFTY/greeks/ATM?{RANGE}",
    ):
        (status, headers, _), by_lane = same_answer(lanes, path, key)
        assert (status, by_lane) == (200, True), path
        assert headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        # Errors of the views themselves: the lane's body raises, Django answers.
        (f"{SIGNALS}/realtime/greeks/NSE@NIFTY@equity_options@2099-01-01@call@1", {}, 404),
        (f"{SIGNALS}/realtime/greeks/not-a-key", {}, 400),
        (f"{SIGNALS}/realtime/greeks/{NIFTY}", {}, 400),
        (f"{SIGNALS}/realtime/moneyness/NIFTY/greeks/XYZ", {}, 400),
        (f"{SIGNALS}/realtime/moneyness/NOPE/atm-iv", {}, 404),
        (f"{SIGNALS}/realtime/moneyness/NIFTY/atm-iv?tenor=30d&expiry_date=2026-12-31", {}, 400),
        (f"{SIGNALS}/realtime/indicators/{NIFTY}/nope?timeframe=5m", {}, 400),
        (f"{SIGNALS}/historical/greeks/{NIFTY}?start_time=yesterday", {}, 400),
        (f"{SIGNALS}/historical/moneyness/NIFTY/greeks/OTM7?{RANGE}", {}, 422),
        (f"{SIGNALS}/historical/moneyness/NIFTY/atm-iv/history?{RANGE}&tenor=7d", {}, 422),
        # What the lane leaves to Django's stack: content negotiation, CORS, a wrong key, no key.
        (f"{SIGNALS}/realtime/moneyness/NIFTY/atm-iv", {"Accept": "text/html"}, 406),
        (f"{SIGNALS}/realtime/moneyness/NIFTY/atm-iv", {"Origin": "https://elsewhere.example"}, 200),
        (f"{SIGNALS}/realtime/moneyness/NIFTY/atm-iv", {"X-API-Key": "sk_nope_nope"}, 401),
        (f"{SIGNALS}/realtime/moneyness/NIFTY/atm-iv", {"X-API-Key": ""}, 200),
    ],
)
def test_everything_else_is_answered_by_django(lanes, live, make_api_key, settings, path, headers, status):
    settings.API_ANONYMOUS_READ = True
    headers = {"X-API-Key": make_api_key(rpm=1_000_000), **headers}
    (got, _, _), by_lane = same_answer(lanes, path, headers)
    assert (got, by_lane) == (status, False)


BATCH = f"{SIGNALS}/batch/greeks"


def test_the_greeks_batch_is_answered_by_the_lane_as_django_answers_it(lanes, live, option, make_api_key):
    key = {"X-API-Key": make_api_key(rpm=1_000_000)}
    nearest = min(live["underlyings"]["NIFTY"]["expiries"].values(), key=lambda e: e["t"])
    keys = list(nearest["options"])[:100]
    for body in (
        {"instrument_keys": keys},
        # Per-key errors are part of a success: malformed, unknown, not an option, no data.
        {"instrument_keys": [option, "nope", NIFTY, "NSE@NIFTY@equity_options@2099-01-01@call@1", option]},
    ):
        (status, _, answer), by_lane = same_answer(lanes, BATCH, key, orjson.dumps(body))
        assert (status, by_lane) == (200, True)
        assert orjson.loads(answer)["requested"] == len(body["instrument_keys"])


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b'{"instrument_keys": [', {}, 400),  # malformed JSON: Django reads the same bytes
        (b"[]", {}, 400),
        (b'{"instrument_keys": []}', {}, 400),
        (b'{"instrument_keys": [1, 2]}', {}, 400),
        (b'{"instrument_keys": ["a"]}', {"Content-Type": "text/plain"}, 415),
        (b'{"instrument_keys": ["a"]}', {"Content-Length": str(11 * 1024 * 1024)}, 413),
        (b'{"instrument_keys": ["a"]}', {"X-API-Key": "sk_nope_nope"}, 401),
    ],
)
def test_a_batch_the_lane_cannot_answer_is_answered_by_django(
    lanes, live, make_api_key, body, headers, status
):
    headers = {"X-API-Key": make_api_key(rpm=1_000_000), **headers}
    (got, _, _), by_lane = same_answer(lanes, BATCH, headers, body)
    assert (got, by_lane) == (status, False)


def test_a_refused_request_gets_django_s_429_and_is_counted_once(lanes, option, make_api_key, redis_client):
    fast, django = lanes
    key = {"X-API-Key": make_api_key(rpm=2)}
    path = f"{SIGNALS}/realtime/greeks/{option}"
    assert [call(fast, path, key)[0] for _ in range(3)] == [200, 200, 429]
    assert django.calls == 1  # the refusal only
    status, headers, _ = call(fast, path, key)
    assert status == 429 and int(headers["retry-after"]) >= 1
    (ident,) = redis_client.keys(KEY_PREFIX + "*")
    assert redis_client.llen(ident) == 2


def test_a_request_counted_by_the_lane_and_answered_by_django_is_counted_once(
    lanes, live, make_api_key, redis_client
):
    fast, django = lanes
    key = {"X-API-Key": make_api_key(rpm=3)}
    missing = f"{SIGNALS}/realtime/greeks/NSE@NIFTY@equity_options@2099-01-01@call@1"
    assert [call(fast, missing, key)[0] for _ in range(4)] == [404, 404, 404, 429]
    assert django.calls == 4
    (ident,) = redis_client.keys(KEY_PREFIX + "*")
    assert redis_client.llen(ident) == 3


def test_the_lane_records_its_requests_as_the_middleware_does(lanes, option, make_api_key):
    fast, django = lanes
    raw = make_api_key(rpm=1_000_000)
    path = f"{SIGNALS}/realtime/greeks/{option}"
    # Aggregates are per minute: both requests in one minute, so that they make one row.
    into_minute = time.time() % 60
    if into_minute > 57:
        time.sleep(60.1 - into_minute)
    for app in (fast, django):
        assert call(app, path, {"X-API-Key": raw})[0] == 200
    api_metrics_flush(now=dt.datetime.now(dt.UTC), include_current=True)
    row = ApiMetric.objects.get()
    assert (row.endpoint, row.method, row.count, row.errors, row.api_key) == (
        "api/v2/signals/realtime/greeks/<str:key>",
        "GET",
        2,
        0,
        raw.split("_")[1],
    )


def test_production_security_headers_and_the_https_redirect(lanes, option, make_api_key):
    # Set before the handler is built: the security middleware reads them when it is made.
    with override_settings(
        SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
        SECURE_HSTS_SECONDS=31536000,
        SECURE_HSTS_INCLUDE_SUBDOMAINS=True,
        SECURE_SSL_REDIRECT=True,
    ):
        django = Counting()
        _production_answers((FastLane(django), django), option, make_api_key)


def _production_answers(lanes, option, make_api_key):
    key = {"X-API-Key": make_api_key(rpm=1_000_000)}
    path = f"{SIGNALS}/realtime/greeks/{option}"
    (status, headers, _), by_lane = same_answer(lanes, path, {**key, "X-Forwarded-Proto": "https"})
    assert (status, by_lane) == (200, True)
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    (status, headers, _), by_lane = same_answer(lanes, path, key)
    assert (status, by_lane) == (301, False)
    assert headers["location"].startswith("https://")


def test_off_by_setting(option, make_api_key, settings):
    import importlib

    import signalsvc.wsgi

    settings.API_FAST_LANE = False
    try:
        assert not isinstance(importlib.reload(signalsvc.wsgi).application, FastLane)
    finally:
        settings.API_FAST_LANE = True
        assert isinstance(importlib.reload(signalsvc.wsgi).application, FastLane)
