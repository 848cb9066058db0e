"""Fuzzing of the REST API from its OpenAPI schema (SPEC §14: no input, however malformed, yields a
500): schemathesis generates requests for every operation of ``/api/v2/schema/`` and sends them to
the application in-process (WSGI), and every answer must

- not be a server error,
- have a documented status, content type and headers,
- match the schema of its operation and status, error bodies included.

What is generated, per operation:

- examples: the schema's parameters and bodies get the values that exist in the seeded market
  (``_enrich``), so the valid cases reach the computations rather than stopping at "unknown";
- coverage: schemathesis' deterministic cases around every parameter and body field (missing,
  wrong type, out of enum, boundaries, unexpected fields, undocumented methods, bad content types),
  each against otherwise valid values;
- fuzzing: ``MAX_EXAMPLES`` random cases, valid and invalid, with known keys, underlyings, levels,
  indicators, timeframes and expiries mixed into the valid ones (schemathesis' dictionaries).

``test_malformed_request`` adds what a schema cannot express (JSON that does not parse or nests too
deep, bodies over the size limit, numbers JSON allows and floats do not, dates at the ends of the
calendar, missing, unknown or read-only API keys, NUL bytes and invalid UTF-8), for every operation,
against the seeded database and an empty Redis.

Generation is deterministic (derandomized Hypothesis, no example database), so CI tries the same
cases as a developer. Every request and its answer are recorded (``rest_record``) for
docs/reliability.md (scripts/reliability_table.py).

Stateful (linked) testing is not used: the API's one write (``POST /market/bars``) answers counts,
not an identifier that another operation takes, and every read already runs against a seeded market."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.test import Client

from tests.conftest import DEMO_START
from tests.fuzz.conftest import Savepoint
from tests.fuzz.market import NO_BARS, UNKNOWN, catalogue

pytestmark = [pytest.mark.django_db, pytest.mark.xdist_group("fuzz_rest")]

SCHEMA_URL = "/api/v2/schema/?format=json"
# Random cases per operation, on top of the examples and the coverage cases (about 40 per operation).
MAX_EXAMPLES = 40
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
API_KEY = "X-API-Key"

CAT = catalogue()
TIMES = {
    "start_time": [CAT.start_time, "2026-11-25T10:30:00", "2026-11-25"],
    "end_time": [CAT.end_time, "2026-11-25T10:33:00", "2026-11-26"],
}
OPTION_FIRST = [CAT.option, CAT.far_option, CAT.spot, CAT.uncomputed, CAT.future, UNKNOWN]
UNDERLYINGS = ["NIFTY", "BANKNIFTY", "nifty", "NOPE"]
LEVELS = ["ATM", "OTM25delta", "ITM1", "OTM3", "OTM", "DITM", "ITM10delta", "OTM200"]
INDICATORS = ["sma", "rsi", "macd", "bbands", "sar", "vwap", "supertrend", "cdldoji", "stoch", "nope"]
TIMEFRAMES = ["1m", "5m", "7m", "1h", "1d", "custom_45"]
EXPIRIES = [CAT.front_expiry, CAT.far_expiry, "2020-01-02", "2099-01-01"]

# Parameter name -> values that exist in the seeded market (first: the one that answers 200).
PARAMETERS: dict[str, list] = {
    "key": CAT.instrument_keys,
    "underlying": UNDERLYINGS,
    "level": LEVELS,
    "indicator": INDICATORS,
    **TIMES,
    "timeframe": TIMEFRAMES,
    "expiry_date": EXPIRIES,
    "tenor": ["30d", "7d"],
    "delta": [0.25, 0.05, 0.49],
    "lookback_days": [1, 5],
}
# Where an option, not the index, is the key that answers.
OPTION_KEYED = ("/realtime/greeks/",)
# The alternative to a parameter that has examples (tenor or expiry_date, not both): only in the
# dictionaries, and rarely, so that most cases name one of the two at most.
ALTERNATIVES = {"tenor"}
# What a request is about: known values in most random valid cases, random text in the others.
IDENTITIES = {"key", "underlying", "level", "indicator"}


def _probability(name: str) -> float:
    return 0.25 if name in ALTERNATIVES else 0.75 if name in IDENTITIES else 0.5


BAR = {
    "instrument_key": CAT.spot,
    "timestamp": (DEMO_START + dt.timedelta(hours=1)).isoformat(),
    "open": 100.0,
    "high": 101.0,
    "low": 99.5,
    "close": 100.5,
    "volume": 10,
    "oi": None,
}
CALCULATOR_ROW = {"option_type": "call", "underlying_price": 100.0, "strike": 100.0, "time_to_expiry": 0.5}
BODIES = {
    "/api/v2/market/bars": [BAR, BAR | {"timestamp": "2026-11-25T11:31:00", "instrument_key": CAT.option}],
    "/api/v2/signals/batch/greeks": {
        "instrument_keys": [CAT.option, CAT.spot, CAT.uncomputed, UNKNOWN, "NSE@NIFTY@bad"]
    },
    "/api/v2/signals/batch/indicators": {
        "items": [
            {"instrument_key": CAT.spot, "indicator": "sma", "timeframe": "1m", "params": {"period": 2}},
            {"instrument_key": CAT.spot, "indicator": "macd"},
            {"instrument_key": NO_BARS, "indicator": "rsi", "timeframe": "5m"},
        ]
    },
    "/api/v2/signals/batch/moneyness/greeks": {
        "items": [
            {"underlying": "NIFTY", "moneyness_level": "ATM"},
            {
                "underlying": "NIFTY",
                "moneyness_level": "OTM25delta",
                "expiry_date": CAT.front_expiry,
                "include": "instruments",
            },
            {"underlying": "BANKNIFTY", "moneyness_level": "ITM1"},
        ]
    },
    "/api/v2/signals/greeks/calculate": {
        "model": "black76",
        "rows": [
            CALCULATOR_ROW | {"volatility": 0.2},
            CALCULATOR_ROW | {"option_price": 6.0, "option_type": "PE"},
            CALCULATOR_ROW | {"option_price": 500.0},
            {
                "option_type": "c",
                "underlying_price": 100.0,
                "strike": 90.0,
                "expiry": "2030-06-27",
                "valuation_time": "2030-01-02T10:00:00+05:30",
                "volatility": 0.3,
            },
        ],
    },
}
# Body fields (component, property) -> the valid base of the coverage cases.
BODY_EXAMPLES: dict[tuple[str, str], object] = {
    **{
        ("BarIn", name): BAR[name]
        for name in ("instrument_key", "timestamp", "open", "high", "low", "close", "volume")
    },
    ("BatchIndicatorItem", "instrument_key"): CAT.spot,
    ("BatchIndicatorItem", "indicator"): INDICATORS[0],
    ("BatchIndicatorItem", "timeframe"): TIMEFRAMES[0],
    ("BatchLevelItem", "underlying"): UNDERLYINGS[0],
    ("BatchLevelItem", "moneyness_level"): LEVELS[0],
    ("BatchLevelItem", "expiry_date"): EXPIRIES[0],
    **{("CalculatorRow", name): value for name, value in (CALCULATOR_ROW | {"volatility": 0.2}).items()},
}
# Body fields -> the dictionary (PARAMETERS) whose values the random valid cases mix in.
BODY_DICTIONARIES = {
    "body.[*].instrument_key": "key",
    "body.instrument_keys[*]": "key",
    "body.items[*].instrument_key": "key",
    "body.items[*].indicator": "indicator",
    "body.items[*].timeframe": "timeframe",
    "body.items[*].underlying": "underlying",
    "body.items[*].moneyness_level": "level",
    "body.items[*].expiry_date": "expiry_date",
}


def _enrich(raw: dict) -> dict:
    """The served schema with the seeded market's values as examples: each parameter's first value
    as its schema's ``example`` (the valid base of the coverage cases) and all of them as the
    parameter's ``examples``; a valid body per operation. Annotations only: no constraint changes."""
    raw = copy.deepcopy(raw)
    for path, item in raw["paths"].items():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                values = PARAMETERS.get(parameter["name"])
                if parameter["in"] == "header" or not values or parameter["name"] in ALTERNATIVES:
                    continue
                if parameter["name"] == "key" and any(part in path for part in OPTION_KEYED):
                    values = OPTION_FIRST
                parameter["schema"]["example"] = values[0]
                parameter["examples"] = {f"v{i}": {"value": v} for i, v in enumerate(values)}
            body = BODIES.get(path)
            if body is not None and "requestBody" in operation:
                operation["requestBody"]["content"]["application/json"]["example"] = body
    schemas = raw["components"]["schemas"]
    for (component, prop), value in BODY_EXAMPLES.items():
        schemas[component]["properties"][prop]["example"] = value
    return raw


def _config() -> schemathesis.Config:
    bindings = {name: {"dictionary": name, "probability": _probability(name)} for name in PARAMETERS}
    bindings |= {
        path: {"dictionary": name, "probability": _probability(name)}
        for path, name in BODY_DICTIONARIES.items()
    }
    return schemathesis.Config.from_dict(
        {
            "generation": {
                "deterministic": True,
                "database": "none",
                "max-examples": MAX_EXAMPLES,
                # The API key is test_malformed_request's: a generated one would only ever be unknown.
                "with-security-parameters": False,
            },
            "dictionaries": {name: {"values": values} for name, values in PARAMETERS.items()},
            "parameters": bindings,
        }
    )


def _load_schema():
    """The schema the service serves, fetched through the application itself: the REST server's
    WSGI application, the fast lane of the realtime reads in front of Django's handler."""
    from signalsvc.wsgi import application as app

    response = Client(app).get(SCHEMA_URL)
    assert response.status_code == 200, response.get_data(as_text=True)
    schema = schemathesis.openapi.from_dict(_enrich(json.loads(response.get_data())), config=_config())
    schema.app = app
    return schema


schema = _load_schema()


# -- recording --------------------------------------------------------------------------------------------

_NESTED = re.compile(
    r"^(?:(\w+) -> )?(Array with invalid items|Object with invalid additional property): (.*)$"
)
_FIELD = re.compile(r"^(\w+): (.*)$")
_MISSING = re.compile(r"^Missing `(.+)` at (\w+)$")
_VIOLATION = re.compile(r"^(?:- )?(?:(\w+): )?violates `(\w+)`")


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _coverage_body_class(description: str) -> str:
    """The class of a coverage case's body mutation, e.g. "body.rows[].strike: incorrect type" for
    schemathesis' "rows -> Array with invalid items: strike: Incorrect type"."""
    path, rest = "body", description
    while True:
        nested = _NESTED.match(rest)
        if nested:
            field, kind, rest = nested.groups()
            path += (f".{field}" if field else "") + ("[]" if kind.startswith("Array") else ".*")
            continue
        field = _FIELD.match(rest)
        if field:
            path += f".{field.group(1)}"
            rest = field.group(2)
            continue
        return f"{path}: {_lower_first(rest)}"


def input_class(case) -> str:
    """A short name of what was wrong with (or right about) a generated request, for the table."""
    meta = case.meta
    phase = meta.phase.name.value
    data = meta.phase.data
    positive = meta.generation.mode == GenerationMode.POSITIVE
    if phase == "examples":
        return "valid: the schema's examples (keys, underlyings, levels and range of the seeded market)"
    if phase == "coverage":
        scenario = data.scenario.value
        if scenario == "unspecified_http_method":
            return "undocumented HTTP method"
        if positive:
            return "valid: boundary values and optional-field combinations"
        description = data.description
        missing = _MISSING.match(description)
        if missing:
            return f"{missing.group(2)} `{missing.group(1)}`: missing"
        location = getattr(data.parameter_location, "value", None)
        parameter = data.parameter
        if location in (None, "body"):
            return _coverage_body_class(description)
        if parameter and description.startswith(f"{parameter}: "):
            description = description[len(parameter) + 2 :]
        where = f"{location} `{parameter}`" if parameter else location
        return f"{where}: {_lower_first(description)}"
    if positive:
        return "valid: random values of the documented types, known keys mixed in"
    violations, locations = set(), set()
    for line in (data.description or "").splitlines():
        match = _VIOLATION.match(line.strip())
        if match:
            location, keyword = match.groups()
            violations.add(keyword)
            locations.add(location or getattr(data.parameter_location, "value", None) or "body")
        elif "Invalid syntax" in line:
            violations.add("not JSON")
            locations.add("body")
    if not violations:  # several mutations of one component, described by schemathesis in prose
        locations = {
            getattr(location, "value", str(location))
            for location, info in meta.components.items()
            if info.mode == GenerationMode.NEGATIVE
        }
        violations = {"several constraints"}
    return f"random invalid {' + '.join(sorted(locations))} ({', '.join(sorted(violations))})"


def _jsonable(value):
    if isinstance(value, NotSet) or value is None:
        return None
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _error(content: bytes) -> dict:
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return {"error_code": None, "error_message": None}
    return {"error_code": error.get("code"), "error_message": error.get("message")}


def record(entries: list, case, response) -> None:
    meta = case.meta
    entries.append(
        {
            "operation": case.operation.label,
            "class": input_class(case),
            "source": f"schemathesis {meta.phase.name.value} ({meta.generation.mode.value})",
            "description": getattr(meta.phase.data, "description", None),
            "request": {
                "method": case.method.upper(),
                "path": case.formatted_path,
                "query": _jsonable(case.query),
                "headers": {k: v for k, v in (case.headers or {}).items()},
                "body": _jsonable(case.body),
            },
            "status": response.status_code,
            **_error(response.content),
        }
    )


# -- the generated cases ----------------------------------------------------------------------------------


@schema.parametrize()
@pytest.mark.usefixtures("market_in_redis")  # not an argument: Hypothesis refuses function-scoped ones
def test_operation(case, api_keys, rest_record):
    # Every generated case carries a valid key, so that it reaches the view; the keys themselves
    # (none, unknown, malformed, read-only) are test_malformed_request's.
    with Savepoint():
        response = case.call(headers={API_KEY: api_keys["writer"]})
    record(rest_record, case, response)
    case.validate_response(response, checks=CHECKS)


# -- what a schema cannot express ---------------------------------------------------------------------------


RAW = schema.raw_schema
BATCH_ITEMS = {
    "/api/v2/signals/batch/greeks": ("instrument_keys", CAT.option),
    "/api/v2/signals/batch/indicators": ("items", {"instrument_key": CAT.spot, "indicator": "sma"}),
    "/api/v2/signals/batch/moneyness/greeks": ("items", {"underlying": "NIFTY", "moneyness_level": "ATM"}),
}
DEEP = 100_000


@dataclass(frozen=True)
class Malformed:
    """One hand-made request: ``template`` is the operation's path in the schema, ``path`` the URL
    path sent (percent-encoded as given), ``body`` raw bytes."""

    cls: str
    method: str
    template: str
    path: str
    query: str = ""
    body: bytes | None = None
    content_type: str | None = "application/json"
    key: str = "writer"  # writer, reader, none, or an unknown key sent as is

    @property
    def id(self) -> str:
        return f"{self.method} {self.template} | {self.cls}"


def _valid_args(template: str, operation: dict) -> tuple[dict, dict]:
    """Path arguments and required query parameters that the seeded market answers."""
    args, query = {}, {}
    for parameter in operation.get("parameters", []):
        example = parameter.get("schema", {}).get("example")
        if parameter["in"] == "path":
            args[parameter["name"]] = example
        elif parameter["in"] == "query" and parameter.get("required"):
            query[parameter["name"]] = example
    return args, query


def _malformed() -> list[Malformed]:
    from django.conf import settings

    cases: list[Malformed] = []
    for template, item in RAW["paths"].items():
        for method, operation in item.items():
            method = method.upper()
            args, query = _valid_args(template, operation)
            path = template.format(**{k: quote(str(v), safe="@") for k, v in args.items()})
            qs = urlencode(query)
            secured = bool(operation.get("security"))

            def case(cls, *, path=path, query=qs, template=template, method=method, **kw):
                cases.append(Malformed(cls, method, template, path, query, **kw))

            if secured:
                case("no API key", key="none", body=_body(template))
                case("unknown API key", key="sk_00000000_unknown", body=_body(template))
                case("malformed API key (not the issued shape)", key="x" * 300, body=_body(template))
            if method == "POST":
                case("body: JSON that does not parse", body=b'{"items": [')
                case("body: empty", body=b"")
                case(f"body: JSON nested {DEEP} levels deep", body=b"[" * DEEP + b"]" * DEEP)
                case("body: NaN and Infinity literals", body=b'{"rows": [NaN], "items": [Infinity]}')
                case("body: not UTF-8", body=b'{"items": ["\xff\xfe"]}')
                size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
                case("body: over MAX_REQUEST_BODY_BYTES", body=b" " * size)
                case(
                    "body: JSON with a text/plain content type",
                    body=_body(template),
                    content_type="text/plain",
                )
                case("body: a JSON scalar", body=b"1")
            if template in BATCH_ITEMS:
                field, one = BATCH_ITEMS[template]
                n = settings.API_V2_BATCH_SIZE + 1
                case(f"body: {n} items (API_V2_BATCH_SIZE + 1)", body=json.dumps({field: [one] * n}).encode())
            for name, value in args.items():
                where = f"path `{name}`"
                for cls, bad in (
                    ("10 000 characters", "A" * 10_000),
                    ("a NUL byte", "NSE@NI%00FTY@equity_spot"),
                    ("invalid UTF-8 (%FF)", "%FF%FE"),
                    ("only spaces", "%20%20"),
                ):
                    case(f"{where}: {cls}", path=path.replace(quote(str(value), safe="@"), bad, 1))
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "query":
                    continue
                name = parameter["name"]
                for cls, bad in (
                    ("a NUL byte", "%00"),
                    ("invalid UTF-8 (%FF)", "%FF"),
                    ("a digit that is not ASCII (²)", "%C2%B2"),
                    ("10 000 characters", "9" * 10_000),
                ):
                    others = urlencode({k: v for k, v in query.items() if k != name})
                    case(f"query `{name}`: {cls}", query="&".join(filter(None, [f"{name}={bad}", others])))
            names = {p["name"] for p in operation.get("parameters", [])}
            if {"start_time", "end_time"} <= names:
                rest = {k: v for k, v in query.items() if k not in ("start_time", "end_time")}
                for cls, start, end in (
                    ("query: start_time after end_time", CAT.end_time, CAT.start_time),
                    ("query: a range over API_HISTORICAL_MAX_DAYS", "2020-01-01", "2022-01-01"),
                    ("query: times at the ends of the calendar", "0001-01-01", "9999-12-31T23:59:59"),
                ):
                    case(cls, query=urlencode(rest | {"start_time": start, "end_time": end}))
    return cases


def _body(template: str) -> bytes | None:
    body = BODIES.get(template)
    return None if body is None else json.dumps(body).encode()


def _bar_cases() -> list[Malformed]:
    """Bars that the schema admits and the storage may not: the ends of the calendar and of floats."""
    template = "/api/v2/market/bars"

    def bars(cls: str, **fields) -> Malformed:
        return Malformed(cls, "POST", template, template, body=json.dumps([BAR | fields]).encode())

    return [
        bars("body: a bar in year 1", timestamp="0001-01-01T00:00:00+00:00"),
        bars("body: a naive bar at 0001-01-01 (before datetime.min in UTC)", timestamp="0001-01-01T00:00:00"),
        bars("body: a bar in year 9999", timestamp="9999-12-31T23:59:00+00:00"),
        bars("body: a bar at 1970-01-01", timestamp="1970-01-01T00:00:00+00:00"),
        bars("body: prices near the float maximum", open=1e308, high=1.7e308, low=1e308, close=1e308),
        bars("body: a volume of 10^30", volume=10**30),
        bars("body: a timestamp with seconds (not a minute start)", timestamp="2026-11-25T06:00:30+00:00"),
        Malformed(
            "body: a number beyond the float range (1e999)",
            "POST",
            template,
            template,
            body=json.dumps([BAR]).replace('"open": 100.0', '"open": 1e999').encode(),
        ),
        Malformed(
            "read-only API key", "POST", template, template, body=json.dumps([BAR]).encode(), key="reader"
        ),
    ]


def _calculator_cases() -> list[Malformed]:
    template = "/api/v2/signals/greeks/calculate"

    def rows(cls: str, *rows: dict, model: str = "black_scholes") -> Malformed:
        return Malformed(
            cls, "POST", template, template, body=json.dumps({"model": model, "rows": rows}).encode()
        )

    return [
        rows(
            "body: prices near the float maximum",
            CALCULATOR_ROW | {"underlying_price": 1e308, "volatility": 0.2},
        ),
        rows(
            "body: time to expiry of 1e-300 years",
            CALCULATOR_ROW | {"time_to_expiry": 1e-300, "volatility": 0.2},
        ),
        rows("body: a volatility of 1e6", CALCULATOR_ROW | {"volatility": 1e6}),
        rows("body: a rate of 1e6", CALCULATOR_ROW | {"volatility": 0.2, "rate": 1e6}),
        rows("body: an option price below intrinsic", CALCULATOR_ROW | {"strike": 50.0, "option_price": 1.0}),
        rows(
            "body: an expiry in year 9999", {**CALCULATOR_ROW, "time_to_expiry": None, "expiry": "9999-12-31"}
        ),
        Malformed(
            "body: a number beyond the float range (1e999)",
            "POST",
            template,
            template,
            body=b'{"rows": [{"option_type": "call", "underlying_price": 1e999, "strike": 100, '
            b'"time_to_expiry": 0.5, "volatility": 0.2}]}',
        ),
    ]


MALFORMED = _malformed() + _bar_cases() + _calculator_cases()


@pytest.mark.parametrize("bad", MALFORMED, ids=[m.id for m in MALFORMED])
def test_malformed_request(bad, api_keys, rest_record):
    headers = {}
    if bad.key in api_keys:
        headers[API_KEY] = api_keys[bad.key]
    elif bad.key != "none":
        headers[API_KEY] = bad.key
    if bad.content_type and bad.body is not None:
        headers["Content-Type"] = bad.content_type
    with Savepoint():
        response = Client(schema.app).open(
            bad.path, method=bad.method, query_string=bad.query, headers=headers, data=bad.body
        )
    arguments = dict.fromkeys(re.findall(r"{(\w+)}", bad.template), "x")  # only to report a failure
    case = schema[bad.template][bad.method].Case(path_parameters=arguments)
    rest_record.append(
        {
            "operation": f"{bad.method} {bad.template}",
            "class": bad.cls,
            "source": "hand-made",
            "request": {
                "method": bad.method,
                "path": bad.path,
                "query": bad.query,
                "headers": {
                    API_KEY: {"writer": "(valid, write access)", "reader": "(valid, read-only)"}.get(
                        bad.key, "(none)" if bad.key == "none" else bad.key
                    ),
                    **({"Content-Type": bad.content_type} if bad.body is not None else {}),
                },
                "body": None if bad.body is None else bad.body[:200].decode("utf-8", "backslashreplace"),
                "body_bytes": None if bad.body is None else len(bad.body),
            },
            "status": response.status_code,
            **_error(response.get_data()),
        }
    )
    case.validate_response(response, checks=CHECKS)
