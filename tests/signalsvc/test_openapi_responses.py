"""The OpenAPI schema documents the real bodies (SPEC §9): every operation's 2xx (and request body)
is a typed schema, and real calls of every endpoint, successful and failing, answer bodies that
validate against the schema of their operation and status, with no undocumented field.

The calls run once per module against the simulated market (three minutes of ticks through the real
ingest, a chain computed each minute) inside one transaction that is rolled back at the end; each
recorded response is then one test."""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pytest
import redis as redis_lib
from django.conf import settings
from django.db import connection, transaction
from django.test import override_settings

from tests.conftest import DEMO_START

# django_db is also what makes pytest-django create the test database the module-scoped calls run
# in; one xdist worker makes them.
pytestmark = [pytest.mark.django_db, pytest.mark.xdist_group("openapi_responses")]

NIFTY = "NSE@NIFTY@equity_spot"
NO_BARS = "NSE@SCHEMATEST@equity_spot"  # registered, no data at all
UNKNOWN = "NSE@NOPE@equity_spot"
MINUTES = 3
RANGE = {
    "start_time": DEMO_START.isoformat(),
    "end_time": (DEMO_START + dt.timedelta(minutes=MINUTES)).isoformat(),
}
DEAD = "redis://127.0.0.1:1/0"
# The memory in use is above 0 %: the farm is at CRITICAL whatever else it measures.
CRITICAL_AT_ANY_LOAD = dict.fromkeys(settings.BACKPRESSURE_THRESHOLDS, (float("inf"),) * 3) | {
    "memory": (0, 0, 0)
}

# Values known once the market exists, resolved in the calls when they run.
OPTION, FUTURE, FRONT, UNCOMPUTED = "<option>", "<future>", "<front expiry>", "<option without greeks>"
WRITER, READER, ONE_RPM = "<writer key>", "<read-only key>", "<1 rpm key>"


@dataclass(frozen=True)
class Call:
    """One request; ``template`` is the operation's path in the schema, ``args`` fill it in."""

    name: str
    method: str
    template: str
    status: int
    args: dict = field(default_factory=dict)
    data: Any = None
    key: str | None = None  # X-API-Key
    settings: dict = field(default_factory=dict)
    content_type: str | None = None
    repeat: int = 1  # the last of ``repeat`` identical requests is recorded (rate limits)


def get(name, template, status, args=None, query=None, **kw) -> Call:
    return Call(name, "get", "/api/v2" + template, status, args or {}, query, **kw)


def post(name, template, status, body, **kw) -> Call:
    return Call(name, "post", "/api/v2" + template, status, {}, body, **kw)


BAR = {
    "instrument_key": NIFTY,
    "timestamp": (DEMO_START + dt.timedelta(hours=1)).isoformat(),
    "open": 100.0,
    "high": 101.0,
    "low": 99.5,
    "close": 100.5,
    "volume": 10,
    "oi": None,
}
ROW = {"option_type": "call", "underlying_price": 100.0, "strike": 100.0, "time_to_expiry": 0.5}
INDICATOR_ITEMS = [
    {"instrument_key": NIFTY, "indicator": "sma", "timeframe": "1m", "params": {"period": 2}},
    {"instrument_key": NIFTY, "indicator": "macd"},
    {"instrument_key": NIFTY, "indicator": "nope"},
    {"instrument_key": "NSE@NIFTY@bad", "indicator": "sma"},
    {"instrument_key": UNKNOWN, "indicator": "sma"},
    {"instrument_key": NO_BARS, "indicator": "sma"},
    "not an object",
]
LEVEL_ITEMS = [
    {"underlying": "NIFTY", "moneyness_level": "ATM"},
    {"underlying": "NIFTY", "moneyness_level": "OTM25delta", "expiry_date": FRONT, "include": "instruments"},
    {"underlying": "NIFTY", "moneyness_level": "nope"},
    "not an object",
]
SPOT, OPT, NIF = {"key": NIFTY}, {"key": OPTION}, {"underlying": "NIFTY"}
RT, HI = "/signals/realtime", "/signals/historical"
MNY, MNY_H = RT + "/moneyness/{underlying}", HI + "/moneyness/{underlying}"
IND, IND_H = RT + "/indicators/{key}/{indicator}", HI + "/indicators/{key}/{indicator}"

CALLS = [
    # ops
    get("live", "/health/live", 200),
    get("ready", "/health/ready", 200),
    get("ready, broker down", "/health/ready", 503, settings={"CELERY_BROKER_URL": DEAD}),
    get("backpressure", "/ops/backpressure", 200),
    get("backpressure, broker down", "/ops/backpressure", 503, settings={"CELERY_BROKER_URL": DEAD}),
    # market data
    post("bars ingest", "/market/bars", 200, [BAR], key=WRITER),
    post("bars ingest, invalid rows", "/market/bars", 400, [{"open": -1}, BAR], key=WRITER),
    post(
        "bars ingest, malformed JSON", "/market/bars", 400, "[", key=WRITER, content_type="application/json"
    ),
    post("bars ingest, no key", "/market/bars", 401, [BAR]),
    post("bars ingest, read-only key", "/market/bars", 403, [BAR], key=READER),
    post(
        "bars ingest, unknown instrument",
        "/market/bars",
        404,
        [BAR | {"instrument_key": UNKNOWN}],
        key=WRITER,
    ),
    post(
        "bars ingest, too many",
        "/market/bars",
        413,
        [BAR] * 2,
        key=WRITER,
        settings={"MARKET_BARS_MAX_ROWS": 1},
    ),
    post(
        "bars ingest, body too large",
        "/market/bars",
        413,
        [BAR] * 20,
        key=WRITER,
        settings={"DATA_UPLOAD_MAX_MEMORY_SIZE": 1000},
    ),
    post("bars ingest, not JSON", "/market/bars", 415, "x", key=WRITER, content_type="text/plain"),
    get("bars read", "/market/bars/{key}", 200, SPOT, RANGE),
    get("bars read, malformed key", "/market/bars/{key}", 400, {"key": "NSE@NIFTY@bad"}),
    get("bars read, unknown", "/market/bars/{key}", 404, {"key": UNKNOWN}),
    get("bars read, wrong API key", "/market/bars/{key}", 401, SPOT, key="sk_nope_nope"),
    get("bars read, rate limited", "/market/bars/{key}", 429, SPOT, key=ONE_RPM, repeat=2),
    # greeks
    get("realtime greeks", RT + "/greeks/{key}", 200, OPT),
    get("realtime greeks, refreshed", RT + "/greeks/{key}", 200, OPT, {"refresh": "true"}),
    get("realtime greeks, an underlying", RT + "/greeks/{key}", 400, SPOT),
    get("realtime greeks, not computed", RT + "/greeks/{key}", 404, {"key": UNCOMPUTED}),
    get("realtime greeks, Redis down", RT + "/greeks/{key}", 503, OPT, settings={"REDIS_URL": DEAD}),
    post(
        "batch greeks",
        "/signals/batch/greeks",
        200,
        {
            "instrument_keys": [
                OPTION,
                NIFTY,
                "NSE@NIFTY@bad",
                UNCOMPUTED,
                "NSE@NOPE@equity_options@2030-01-31@call@100",
            ]
        },
    ),
    post("batch greeks, empty", "/signals/batch/greeks", 400, {"instrument_keys": []}),
    post("batch greeks, too many", "/signals/batch/greeks", 400, {"instrument_keys": [OPTION] * 101}),
    post(
        "calculator",
        "/signals/greeks/calculate",
        200,
        {
            "model": "black76",
            "rows": [ROW | {"volatility": 0.2}, ROW | {"option_price": 6.0}, ROW | {"option_price": 500.0}],
        },
    ),
    post("calculator, invalid rows", "/signals/greeks/calculate", 400, {"rows": [ROW, {"strike": -1}]}),
    post(
        "calculator, CRITICAL backpressure",
        "/signals/greeks/calculate",
        503,
        {"rows": [ROW | {"volatility": 0.2}]},
        settings={"BACKPRESSURE_THRESHOLDS": CRITICAL_AT_ANY_LOAD},
    ),
    # timeframes
    get("historical bars", HI + "/bars/{key}", 200, SPOT, RANGE),
    get("historical bars, 5m", HI + "/bars/{key}", 200, SPOT, RANGE | {"timeframe": "5m"}),
    get("historical bars, bad timeframe", HI + "/bars/{key}", 400, SPOT, RANGE | {"timeframe": "7x"}),
    get("historical bars, no range", HI + "/bars/{key}", 400, SPOT),
    get("historical greeks, option", HI + "/greeks/{key}", 200, OPT, RANGE),
    get("historical greeks, underlying", HI + "/greeks/{key}", 200, SPOT, RANGE | {"agg": "mean"}),
    get("historical greeks, future", HI + "/greeks/{key}", 400, {"key": FUTURE}, RANGE),
    get("historical greeks, unknown", HI + "/greeks/{key}", 404, {"key": UNKNOWN}, RANGE),
    get("available timeframes", HI + "/available-timeframes/{key}", 200, SPOT),
    get("available timeframes, no bars", HI + "/available-timeframes/{key}", 200, {"key": NO_BARS}),
    get("available timeframes, unknown", HI + "/available-timeframes/{key}", 404, {"key": UNKNOWN}),
    get("available timeframes alias", "/signals/available-timeframes/{key}", 200, SPOT),
    get("available timeframes alias, malformed", "/signals/available-timeframes/{key}", 400, {"key": "bad"}),
    get("indicator list", "/signals/indicators", 200),
    get("indicator list, wrong API key", "/signals/indicators", 401, key="sk_nope_nope"),
    get("historical indicator", IND_H, 200, SPOT | {"indicator": "sma"}, RANGE | {"period": "2"}),
    get("historical indicator, macd", IND_H, 200, SPOT | {"indicator": "macd"}, RANGE),
    get("historical indicator, unknown", IND_H, 400, SPOT | {"indicator": "nope"}, RANGE),
    get(
        "historical indicator, bad parameter",
        IND_H,
        400,
        SPOT | {"indicator": "sma"},
        RANGE | {"period": "x"},
    ),
    get("realtime indicator", IND, 200, SPOT | {"indicator": "rsi"}, {"period": "2", "timeframe": "5m"}),
    get("realtime indicator, no bars", IND, 404, {"key": NO_BARS, "indicator": "sma"}),
    get("realtime indicator, bad timeframe", IND, 400, SPOT | {"indicator": "sma"}, {"timeframe": "0m"}),
    post("batch indicators", "/signals/batch/indicators", 200, {"items": INDICATOR_ITEMS}),
    post("batch indicators, no items", "/signals/batch/indicators", 400, {"items": 1}),
    # moneyness, realtime
    get("level greeks", MNY + "/greeks/{level}", 200, NIF | {"level": "ATM"}),
    get(
        "level greeks, members",
        MNY + "/greeks/{level}",
        200,
        NIF | {"level": "OTM25delta"},
        {"include": "instruments"},
    ),
    get("level greeks, bad level", MNY + "/greeks/{level}", 400, NIF | {"level": "ATM9"}),
    get("level greeks, beyond the chain", MNY + "/greeks/{level}", 422, NIF | {"level": "OTM200"}),
    get(
        "level greeks, unknown underlying",
        MNY + "/greeks/{level}",
        404,
        {"underlying": "NOPE", "level": "ATM"},
    ),
    get("atm iv", MNY + "/atm-iv", 200, NIF),
    get("atm iv, tenor", MNY + "/atm-iv", 200, NIF, {"tenor": "30d"}),
    get("atm iv, expired expiry", MNY + "/atm-iv", 422, NIF, {"expiry_date": "2020-01-02"}),
    get("atm iv, unlisted expiry", MNY + "/atm-iv", 404, NIF, {"expiry_date": "2099-01-01"}),
    get("otm delta", MNY + "/otm-delta", 200, NIF, {"delta": "0.25", "option_type": "put"}),
    get("otm delta, call", MNY + "/otm-delta", 200, NIF, {"delta": "0.49", "option_type": "call"}),
    get("otm delta, no delta", MNY + "/otm-delta", 400, NIF, {"option_type": "put"}),
    get("smile", MNY + "/smile", 200, NIF),
    get("smile, an option key", MNY + "/smile", 400, {"underlying": OPTION}),
    get("summary", MNY + "/summary", 200, NIF),
    get("summary, bad lookback", MNY + "/summary", 400, NIF, {"lookback_days": "0"}),
    get("summary, no chain", MNY + "/summary", 404, {"underlying": "BANKNIFTY"}),
    # moneyness, historical
    get("historical level", MNY_H + "/greeks/{level}", 200, NIF | {"level": "OTM25delta"}, RANGE),
    get("historical level, not stored", MNY_H + "/greeks/{level}", 422, NIF | {"level": "OTM7"}, RANGE),
    get(
        "historical level, unknown",
        MNY_H + "/greeks/{level}",
        404,
        {"underlying": "NOPE", "level": "ATM"},
        RANGE,
    ),
    get("historical atm iv", MNY_H + "/atm-iv", 200, NIF, RANGE),
    get("historical atm iv, tenor", MNY_H + "/atm-iv", 200, NIF, RANGE | {"tenor": "30d"}),
    get(
        "historical atm iv, empty",
        MNY_H + "/atm-iv",
        200,
        NIF,
        {"start_time": "2026-11-20", "end_time": "2026-11-21"},
    ),
    get("historical atm iv, tenor not stored", MNY_H + "/atm-iv", 422, NIF, RANGE | {"tenor": "7d"}),
    get("atm iv history", MNY_H + "/atm-iv/history", 200, NIF, RANGE | {"timeframe": "5m"}),
    get(
        "atm iv history, range too large",
        MNY_H + "/atm-iv/history",
        400,
        NIF,
        {"start_time": "2020-01-01", "end_time": "2022-01-01"},
    ),
    post("batch level greeks", "/signals/batch/moneyness/greeks", 200, {"items": LEVEL_ITEMS}),
    post("batch level greeks, no items", "/signals/batch/moneyness/greeks", 400, {}),
]


# -- the market and the calls ------------------------------------------------------------------------------


def _market() -> dict[str, str]:
    """Three minutes of the simulated market through the real ingest, the NIFTY chain computed each
    minute; the values of the placeholders."""
    from greeks.services import chain_compute
    from signalsvc.accounts.services import api_key_create, subscription_get_or_create
    from signalsvc.core.keys import FUTURES, OPTIONS, InstrumentSpec
    from signalsvc.instruments.models import Instrument
    from signalsvc.instruments.services import instruments_upsert
    from signalsvc.marketdata.stream import ticks_ingest
    from signalsvc.simulator.market import DemoMarket

    client = redis_lib.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    market = DemoMarket(start=DEMO_START, seed=11)
    instruments_upsert(specs=[*market.instruments(), InstrumentSpec.from_key(NO_BARS)])
    for minute in range(MINUTES):
        ticks = []
        for second in range(0, 12, 2):
            ticks += market.step(DEMO_START + dt.timedelta(minutes=minute, seconds=second))
        ticks_ingest(client, ticks, consumer_name="openapi")
        chain_compute(underlying_key=NIFTY, client=client)
    client.close()

    nifty = Instrument.objects.filter(symbol="NIFTY")
    calls = nifty.filter(product=OPTIONS, option_type="call").order_by("expiry", "strike")
    front = calls.first().expiry
    listed = list(calls.filter(expiry=front).values_list("key", flat=True))
    keys = {}
    for name, rpm, can_write in ((WRITER, 10_000, True), (READER, 10_000, False), (ONE_RPM, 1, False)):
        tier = f"openapi-{rpm}-{can_write}"
        subscription = subscription_get_or_create(name=tier, tier_name=tier, requests_per_minute=rpm)
        keys[name] = api_key_create(subscription=subscription, name=name, can_write=can_write)[1]
    return {
        OPTION: listed[len(listed) // 2],
        FUTURE: nifty.filter(product=FUTURES).order_by("expiry").first().key,
        FRONT: front.isoformat(),
        UNCOMPUTED: Instrument.objects.filter(symbol="BANKNIFTY", product=OPTIONS)
        .order_by("key")
        .first()
        .key,
        **keys,
    }


def _resolve(value, values: dict[str, str]):
    if isinstance(value, str):
        return values.get(value, value)
    if isinstance(value, list):
        return [_resolve(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, values) for k, v in value.items()}
    return value


def _request(client, call: Call, values: dict[str, str]):
    path = call.template.format(**_resolve(call.args, values))
    data = _resolve(call.data, values)
    headers = {"HTTP_X_API_KEY": _resolve(call.key, values)} if call.key else {}
    if call.method == "get":
        return client.get(path, data or {}, **headers)
    if call.content_type is not None:
        return client.post(path, data, content_type=call.content_type, **headers)
    return client.post(path, data, format="json", **headers)


def _forget_process_state() -> None:
    from moneyness import selectors as moneyness_selectors
    from moneyness import services as moneyness_services
    from signalsvc.accounts.selectors import api_key_cache_clear
    from signalsvc.db.partitions import partitions_forget_cache
    from signalsvc.instruments.selectors import instrument_ids_clear_cache
    from timeframes import cache as timeframes_cache
    from timeframes import selectors as timeframes_selectors

    redis_lib.Redis.from_url(settings.REDIS_URL).flushdb()
    instrument_ids_clear_cache()
    api_key_cache_clear()
    partitions_forget_cache()
    timeframes_selectors.watermarks_forget()
    timeframes_cache.local_ranges.clear()
    moneyness_selectors._cache.clear()
    moneyness_services._fits.clear()


@dataclass(frozen=True)
class Recorded:
    status: int
    body: Any


@pytest.fixture(scope="module")
def recorded(django_db_setup, django_db_blocker) -> dict[str, Recorded]:
    """Every call's response, made once for the module."""
    from rest_framework.test import APIClient

    out = {}
    with django_db_blocker.unblock():
        assert connection.settings_dict["NAME"].startswith("test_"), "not on a test database"
        _forget_process_state()
        try:
            with transaction.atomic():
                values = _market()
                client = APIClient()
                for call in CALLS:
                    with override_settings(**call.settings):
                        for _ in range(call.repeat):
                            response = _request(client, call, values)
                    out[call.name] = Recorded(response.status_code, json.loads(response.content))
                transaction.set_rollback(True)
        finally:
            _forget_process_state()
    return out


# -- the schema as JSON Schema -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi() -> dict:
    from rest_framework.test import APIClient

    response = APIClient().get("/api/v2/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def _json_schema(node, *, strict: bool):
    """OpenAPI 3.0 schema -> JSON Schema: ``nullable`` as a null alternative; with ``strict`` every
    object that lists its properties admits no other (the bodies use exactly the documented names)."""
    if isinstance(node, list):
        return [_json_schema(item, strict=strict) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _json_schema(value, strict=strict) for key, value in node.items()}
    if strict and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if out.pop("nullable", False):
        return {"anyOf": [out, {"type": "null"}]}
    return out


FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _aware_datetime(value) -> bool:
    """SPEC §9: responses carry offsets."""
    return not isinstance(value, str) or dt.datetime.fromisoformat(value).tzinfo is not None


@FORMATS.checks("date", raises=ValueError)
def _date(value) -> bool:
    if isinstance(value, str):
        dt.date.fromisoformat(value)
        return len(value) == 10  # YYYY-MM-DD, not a datetime
    return True


@pytest.fixture(scope="module")
def components(openapi) -> dict:
    return {"schemas": _json_schema(openapi["components"]["schemas"], strict=True)}


def _operations(openapi) -> dict[tuple[str, str], dict]:
    return {
        (path, method): operation
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }


def _free_form(schema, schemas: dict, seen: set[str], where: str) -> list[str]:
    """The places in ``schema`` that validate (almost) nothing: an object without properties and
    without a typed value schema, or a schema without a type."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        seen.add(name)
        return _free_form(schemas[name], schemas, seen, name)
    problems = []
    for combinator in ("allOf", "oneOf", "anyOf"):
        for part in schema.get(combinator, []):
            problems += _free_form(part, schemas, seen, where)
    if any(combinator in schema for combinator in ("allOf", "oneOf", "anyOf")):
        return problems
    kind = schema.get("type")
    if kind is None:
        return [f"{where}: no type"]
    if kind == "object":
        properties = schema.get("properties") or {}
        values = schema.get("additionalProperties")
        typed_values = isinstance(values, dict) and bool(
            {"type", "$ref", "allOf", "oneOf", "anyOf"} & values.keys()
        )
        if not properties and not typed_values:
            return [f"{where}: an object without properties"]
        for name, prop in properties.items():
            problems += _free_form(prop, schemas, seen, f"{where}.{name}")
        if typed_values:
            problems += _free_form(values, schemas, seen, f"{where}.*")
    if kind == "array":
        problems += _free_form(schema.get("items", {}), schemas, seen, f"{where}[]")
    return problems


# -- the tests ------------------------------------------------------------------------------------------------


def test_every_2xx_and_request_body_is_typed(openapi):
    schemas = openapi["components"]["schemas"]
    problems = []
    for (path, method), operation in _operations(openapi).items():
        bodies = {
            f"{method.upper()} {path} {status}": response.get("content", {}).get("application/json", {})
            for status, response in operation["responses"].items()
            if status.startswith("2")
        }
        if "requestBody" in operation:
            bodies[f"{method.upper()} {path} request"] = operation["requestBody"]["content"][
                "application/json"
            ]
        assert bodies, f"{method.upper()} {path} documents no 2xx"
        for where, content in bodies.items():
            if "schema" not in content:
                problems.append(f"{where}: no JSON schema")
                continue
            problems += _free_form(content["schema"], schemas, set(), where)
    assert problems == []


def test_every_operation_is_called(openapi):
    operations = set(_operations(openapi))
    succeeded = {(c.template, c.method) for c in CALLS if 200 <= c.status < 300}
    failed = {(c.template, c.method) for c in CALLS if c.status >= 400}
    assert succeeded == operations
    assert operations - failed == {("/api/v2/health/live", "get")}  # it cannot fail


def test_the_error_statuses_are_documented(openapi):
    """Each documented error status carries the error body, and the shared ones are everywhere."""
    for (path, method), operation in _operations(openapi).items():
        if path.startswith(("/api/v2/health/", "/api/v2/ops/")):  # open: no key, no rate limit
            continue
        responses = operation["responses"]
        assert {"401", "429", "503"} <= set(responses), (method, path)
        if method == "post":
            assert {"400", "413", "415"} <= set(responses), (method, path)
        for status, response in responses.items():
            if status >= "400":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)


@pytest.mark.parametrize("call", CALLS, ids=[c.name for c in CALLS])
def test_the_body_validates_against_its_operation(call, recorded, openapi, components):
    got = recorded[call.name]
    assert got.status == call.status, got.body
    responses = openapi["paths"][call.template][call.method]["responses"]
    assert str(got.status) in responses, f"status {got.status} is not documented"
    schema = _json_schema(responses[str(got.status)]["content"]["application/json"]["schema"], strict=True)
    validator = jsonschema.Draft202012Validator(
        {**copy.deepcopy(schema), "components": components}, format_checker=FORMATS
    )
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(got.body)]
    assert errors == []
