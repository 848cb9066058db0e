"""Timeframe and indicator endpoints (SPEC §9), under ``/api/v2/signals/``.

Historical series keep the original design's shape: ``{instrument_key, start_time, end_time,
timeframe, data_points, time_series[{timestamp, value{…}, metadata{…}}]}``; times are ISO-8601 UTC
with offset; a bucket is listed when its start lies in ``[start_time, end_time)``. Errors are the
API's error JSON: 400 ``invalid_timeframe`` (the message is the grammar), ``invalid_indicator``
(lists what is valid), ``invalid_parameter``/``missing_parameter``/``invalid_range``/
``range_too_large``, ``invalid_instrument_key``; 404 ``unknown_instrument`` and ``no_data``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from functools import lru_cache

import orjson
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from signalsvc.api.batch import batch_items, batch_results, echoed, item_error
from signalsvc.api.errors import ApiError
from signalsvc.api.params import parse_range
from signalsvc.api.response_cache import chain_version_key, response_identity, versioned
from signalsvc.api.schemas import COMMON_ERRORS, RETRY_AFTER, error_responses, items_batch_errors
from signalsvc.core.keys import OPTIONS, SPOT, InvalidKey, parse_key
from signalsvc.instruments.models import Instrument
from signalsvc.instruments.selectors import InstrumentRef, UnknownInstrument, instrument_ref
from signalsvc.marketdata.selectors import bars_range
from timeframes import cache, indicator_latest, indicator_selectors, selectors
from timeframes.core import indicators
from timeframes.core.grammar import STANDARD_TIMEFRAMES, TIMEFRAME_GRAMMAR, InvalidTimeframe, Timeframe
from timeframes.render import series_items
from timeframes.schemas import (
    HISTORICAL_GREEKS,
    SERIES_400,
    AvailableTimeframesSerializer,
    BatchIndicatorsRequestSerializer,
    BatchIndicatorsSerializer,
    HistoricalBarsSerializer,
    HistoricalIndicatorSerializer,
    IndicatorListSerializer,
    RealtimeIndicatorSerializer,
)

DEFAULT_TIMEFRAME = "1m"
# Query parameters that are not indicator parameters.
RESERVED_PARAMS = {"timeframe", "start_time", "end_time", "api_key"}

TIMEFRAME_PARAM = OpenApiParameter(
    "timeframe", str, description=f"{TIMEFRAME_GRAMMAR}. Default {DEFAULT_TIMEFRAME}."
)
RANGE_PARAMS = [
    OpenApiParameter("start_time", str, required=True, description="ISO-8601; naive = Asia/Kolkata"),
    OpenApiParameter(
        "end_time", str, required=True, description="ISO-8601, after start_time, at most 365 days"
    ),
]


# -- input ------------------------------------------------------------------------------------------


# The market calendar covers these years; a time outside them cannot hold a bar.
EARLIEST = dt.datetime(1971, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2199, 1, 1, tzinfo=dt.UTC)


def range_from(query) -> tuple[dt.datetime, dt.datetime]:
    """``start_time``/``end_time`` (``parse_range``: naive = market time, end after start, at most
    API_HISTORICAL_MAX_DAYS), also within the years the market calendar covers."""
    start, end = parse_range(query)
    if start < EARLIEST or end > LATEST:
        raise ApiError(
            status_code=400,
            code="invalid_range",
            message=f"start_time and end_time must lie between {EARLIEST.date()} and {LATEST.date()}",
        )
    return start, end


def timeframe_from(value: object) -> Timeframe:
    """The parsed timeframe, or a 400 ``invalid_timeframe`` naming the grammar."""
    if value is None:
        value = DEFAULT_TIMEFRAME
    try:
        return selectors.timeframe_parse(value)
    except InvalidTimeframe as exc:
        calendar = selectors.market_calendar()
        raise ApiError(
            status_code=400,
            code="invalid_timeframe",
            message=str(exc),
            details={
                "grammar": TIMEFRAME_GRAMMAR,
                "standard_timeframes": list(STANDARD_TIMEFRAMES),
                "min_minutes": 1,
                "max_minutes": calendar.session_minutes,
            },
        ) from None


def invalid_indicator(exc: indicators.InvalidIndicator, name: object) -> ApiError:
    details: dict = {"indicator": name}
    try:
        spec = indicators.get_spec(name)  # type: ignore[arg-type]
    except indicators.InvalidIndicator:
        details["valid_indicators"] = indicators.indicator_names()
    else:
        details["parameters"] = [p.as_dict() for p in spec.parameters]
    return ApiError(status_code=400, code="invalid_indicator", message=str(exc), details=details)


def indicator_params(query) -> dict:
    """Indicator parameters from the query string (every parameter that is not reserved)."""
    params = {}
    for key, values in query.lists():
        if key in RESERVED_PARAMS:
            continue
        if len(values) != 1:
            raise ApiError(
                status_code=400,
                code="invalid_parameter",
                message=f"parameter {key!r} is given {len(values)} times; give it once",
            )
        params[key] = values[0]
    return params


def agg_from(value: str | None) -> str:
    if value in (None, "", "last", "mean"):
        return value or "last"
    raise ApiError(status_code=400, code="invalid_parameter", message=f"agg={value!r}: expected last or mean")


def date_from(name: str, value: str | None) -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ApiError(
            status_code=400,
            code="invalid_parameter",
            message=f"{name}={value!r} is not an ISO date (YYYY-MM-DD)",
        ) from None


def iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def json_body(payload: Mapping, *, series_items: bytes | None = None) -> bytes:
    """``payload`` as JSON, with ``time_series`` spliced in from pre-rendered items (each followed
    by a comma) so a large series is never parsed or re-encoded."""
    head = orjson.dumps(payload)  # a float that is not finite becomes null, never NaN
    if series_items is None:
        return head
    return b"".join((head[:-1], b',"time_series":[', memoryview(series_items)[:-1], b"]}"))


def json_response(payload: Mapping, *, series_items: bytes | None = None) -> HttpResponse:
    return HttpResponse(json_body(payload, series_items=series_items), content_type="application/json")


# -- bars ---------------------------------------------------------------------------------------------


class HistoricalBarsApi(APIView):
    @extend_schema(
        summary="OHLCV bars of any timeframe",
        description=(
            "Buckets anchored at each session open, never crossing a close; labelled by their start. "
            "time_series[{timestamp, value{open, high, low, close, volume, oi}, metadata{bucket_end, bars}}]; "
            "`bars` is the number of 1-minute bars in the bucket, `oi` null when none has one."
        ),
        parameters=[*RANGE_PARAMS, TIMEFRAME_PARAM, RETRY_AFTER],
        responses={
            200: HistoricalBarsSerializer,
            **error_responses(400, 404, *COMMON_ERRORS, notes={400: SERIES_400, 404: "unknown_instrument."}),
        },
    )
    def get(self, request, key: str):
        timeframe = timeframe_from(request.query_params.get("timeframe"))
        start, end = range_from(request.query_params)
        instrument = instrument_ref(key)
        read = cache.bars_read(instrument_id=instrument.id, timeframe=timeframe, start=start, end=end)
        body_key = None
        if read.cache_key is not None:  # a range-level hit: its body is the same every time
            body_key = ("body", *read.cache_key, instrument.key, iso(start), iso(end))
            body = cache.local_ranges.get(body_key)
            if body is not None:
                return HttpResponse(body, content_type="application/json")
        payload = {
            "instrument_key": instrument.key,
            "start_time": iso(start),
            "end_time": iso(end),
            "timeframe": timeframe.label,
            "data_points": read.count,
            "cache": {"source": read.source, "sessions_cached": read.sessions_cached,
                      "sessions_computed": read.sessions_computed},
        }  # fmt: skip
        response = json_response(payload, series_items=read.items_json)
        if body_key is not None:
            cache.local_ranges.put(body_key, response.content, len(response.content))
        return response


# -- greeks ---------------------------------------------------------------------------------------------


def _greek_values(row: Mapping) -> dict:
    return {f: row[f] for f in selectors.GREEK_VALUE_FIELDS}


class HistoricalGreeksApi(APIView):
    @extend_schema(
        summary="IV and Greeks history at any timeframe",
        description=(
            "Option key: that option's series. Underlying (equity_spot) key: the ATM series of, in each session, "
            "the nearest listed expiry not yet expired (or `expiry_date`), read from the ATM IV table: ATM strike = "
            "strike nearest the forward (tie: lower); value = mean of the ATM call and put (iv = mean of their "
            "IVs), `atm_iv` = the IV at the forward (total variance between the bracketing OTM options), with "
            "`call` and `put` each side. Bucket value = last observation (`agg=mean`: mean of the observations)."
        ),
        parameters=[
            *RANGE_PARAMS,
            TIMEFRAME_PARAM,
            OpenApiParameter("agg", str, enum=["last", "mean"], description="default last"),
            OpenApiParameter("expiry_date", str, description="underlying keys only: pin one expiry"),
            RETRY_AFTER,
        ],
        responses={
            200: HISTORICAL_GREEKS,
            **error_responses(
                400,
                404,
                *COMMON_ERRORS,
                notes={
                    400: "not_an_option (a future key; expiry_date with an option key), " + SERIES_400,
                    404: "unknown_instrument.",
                },
            ),
        },
    )
    def get(self, request, key: str):
        return HttpResponse(self.fast_get(request.query_params, key), content_type="application/json")

    @classmethod
    def fast_get(cls, q, key: str) -> bytes:
        """The body (this view's, and the fast lane's: signalsvc/api/fastlane.py)."""
        timeframe = timeframe_from(q.get("timeframe"))
        agg = agg_from(q.get("agg"))
        expiry = date_from("expiry_date", q.get("expiry_date"))
        start, end = range_from(q)
        instrument = instrument_ref(key)
        if instrument.product == OPTIONS and expiry is not None:
            raise ApiError(
                status_code=400,
                code="invalid_parameter",
                message="expiry_date applies to underlying keys only; an option key has its own expiry",
            )
        if instrument.product not in (OPTIONS, SPOT):
            raise ApiError(
                status_code=400,
                code="not_an_option",
                message=f"{instrument.key} has no Greeks: use an option key, or an underlying (equity_spot) key "
                "for its ATM series",
            )
        underlying = (
            parse_key(instrument.key).underlying_key if instrument.product == OPTIONS else instrument.key
        )
        # Written only by the chain computation: cached per chain version (signalsvc.api.response_cache).
        return versioned(
            response_identity(cls, {"key": key}, q),
            version_key=chain_version_key(underlying),
            compute=lambda: cls._series(instrument, timeframe, agg, expiry, start, end),
        )

    @staticmethod
    def _series(instrument: InstrumentRef, timeframe, agg, expiry, start, end):
        base = {
            "instrument_key": instrument.key,
            "start_time": iso(start),
            "end_time": iso(end),
            "timeframe": timeframe.label,
            "agg": agg,
        }
        if instrument.product == OPTIONS:
            rows = selectors.option_series_at(
                instrument_id=instrument.id, timeframe=timeframe, start=start, end=end, agg=agg
            )
            series = [
                {
                    "timestamp": iso(r["bucket_start"]),
                    "value": _greek_values(r),
                    "metadata": {
                        "bucket_end": iso(r["bucket_end"]),
                        "observations": r["observations"],
                        "model": r["model"],
                        "forward": r["forward"],
                        "forward_source": r["forward_source"],
                        "price_source": r["price_source"],
                        "time_to_expiry": r["time_to_expiry"],
                        "source_ts": iso(r["source_ts"]),
                    },
                }
                for r in rows
            ]
            return json_body({**base, "series": "option", "data_points": len(series), "time_series": series})
        rows = selectors.atm_series_at(
            underlying_id=instrument.id, timeframe=timeframe, start=start, end=end, agg=agg, expiry=expiry
        )
        ids = {r[c] for r in rows for c in ("call_instrument_id", "put_instrument_id") if r[c] is not None}
        keys = dict(Instrument.objects.filter(id__in=ids).values_list("id", "key")) if ids else {}
        series = [
            {
                "timestamp": iso(r["bucket_start"]),
                "value": {
                    **_greek_values(r),
                    "atm_iv": r["atm_iv"],
                    "call": {f: r[f"call_{f}"] for f in selectors.ATM_SIDE_FIELDS},
                    "put": {f: r[f"put_{f}"] for f in selectors.ATM_SIDE_FIELDS},
                },
                "metadata": {
                    "bucket_end": iso(r["bucket_end"]),
                    "observations": r["observations"],
                    "expiry": r["expiry"].isoformat() if r["expiry"] else None,
                    "atm_strike": r["atm_strike"],
                    "forward": r["forward"],
                    "model": r["model"],
                    "call_instrument_key": keys.get(r["call_instrument_id"]),
                    "put_instrument_key": keys.get(r["put_instrument_id"]),
                },
            }
            for r in rows
        ]
        return json_body({**base, "series": "atm", "data_points": len(series), "time_series": series})


# -- available timeframes ---------------------------------------------------------------------------------


class AvailableTimeframesApi(APIView):
    @extend_schema(
        summary="Timeframes and the data range of an instrument",
        parameters=[RETRY_AFTER],
        responses={
            200: AvailableTimeframesSerializer,
            **error_responses(
                400,
                404,
                *COMMON_ERRORS,
                notes={400: "invalid_instrument_key.", 404: "unknown_instrument."},
            ),
        },
    )
    def get(self, request, key: str):
        instrument = instrument_ref(key)
        first, last, count = bars_range(instrument_id=instrument.id)
        calendar = selectors.market_calendar()
        used = list(instrument_custom_timeframes(instrument.id).values_list("timeframe", flat=True)[:50])
        return Response(
            {
                "instrument_key": instrument.key,
                "standard_timeframes": list(STANDARD_TIMEFRAMES),
                "custom_timeframes": {
                    "grammar": TIMEFRAME_GRAMMAR,
                    "min_minutes": 1,
                    "max_minutes": calendar.session_minutes,
                    "examples": ["7m", "45m", "2h", "custom_90"],
                    "recently_requested": used,
                },
                "market_calendar": calendar.name,
                "data_range": {
                    "start": iso(first),
                    "end": iso(last + dt.timedelta(minutes=1)) if last else None,
                    "bars": count,
                },
            }
        )


def instrument_custom_timeframes(instrument_id: int):
    from timeframes.models import CustomTimeframe

    return CustomTimeframe.objects.filter(instrument_id=instrument_id).order_by("-request_count")


# -- indicators -----------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _indicator_listing() -> list[dict]:
    return indicators.list_indicators()


class IndicatorListApi(APIView):
    @extend_schema(
        summary="Every indicator with its parameters",
        description="Name, group, parameters (type, default, min, max), inputs, outputs, warm-up class and bars.",
        parameters=[RETRY_AFTER],
        responses={200: IndicatorListSerializer, **error_responses(*COMMON_ERRORS)},
    )
    def get(self, request):
        listing = _indicator_listing()
        return Response({"count": len(listing), "indicators": listing})


def _compute(fn, name: str, **kwargs):
    try:
        return fn(name=name, **kwargs)
    except indicators.InvalidIndicator as exc:
        raise invalid_indicator(exc, name) from None


class HistoricalIndicatorApi(APIView):
    @extend_schema(
        summary="Indicator series over a range",
        description=(
            "Any indicator of GET /indicators with its parameters in the query string (e.g. period=14). "
            "Computed over bars of the timeframe with warm-up history before start_time, so the first value "
            "is exact; `warmup` reports the bars needed and found. NaN (TA-Lib lookback) is null."
        ),
        parameters=[*RANGE_PARAMS, TIMEFRAME_PARAM, RETRY_AFTER],
        responses={
            200: HistoricalIndicatorSerializer,
            **error_responses(
                400,
                404,
                *COMMON_ERRORS,
                notes={
                    400: "invalid_indicator (details: the valid indicators, or the indicator's parameters), "
                    + SERIES_400,
                    404: "unknown_instrument.",
                },
            ),
        },
    )
    def get(self, request, key: str, indicator: str):
        q = request.query_params
        timeframe = timeframe_from(q.get("timeframe"))
        params = indicator_params(q)
        start, end = range_from(q)
        instrument = instrument_ref(key)
        series = _compute(
            indicator_selectors.indicator_series,
            indicator,
            instrument_id=instrument.id,
            params=params,
            timeframe=timeframe,
            start=start,
            end=end,
        )
        payload = {
            "instrument_key": instrument.key,
            "indicator": series.name,
            "params": series.params,
            "outputs": list(series.outputs),
            "start_time": iso(start),
            "end_time": iso(end),
            "timeframe": timeframe.label,
            "warmup": series.warmup_report(),
            "data_points": len(series),
        }
        items, _ = series_items(series.start, series.end, series.outputs)
        return json_response(payload, series_items=items)


def latest_json(instrument: InstrumentRef, indicator: str, params: Mapping, timeframe: Timeframe) -> bytes:
    """The stored latest value (computed once per bar change; timeframes.indicator_latest)."""
    try:
        return _compute(
            indicator_latest.indicator_latest_json,
            indicator,
            instrument=instrument,
            params=params,
            timeframe=timeframe,
        )
    except indicator_selectors.NoData:
        raise ApiError(
            status_code=404, code="no_data", message=f"no 1-minute bars stored for {instrument.key}"
        ) from None


class RealtimeIndicatorApi(APIView):
    @extend_schema(
        summary="Latest value of an indicator",
        description=(
            "On the bucket holding the latest 1-minute bar (it may still be open: metadata.bucket_closed). "
            "Indicator parameters in the query string, as listed by GET /indicators."
        ),
        parameters=[TIMEFRAME_PARAM, RETRY_AFTER],
        responses={
            200: RealtimeIndicatorSerializer,
            **error_responses(
                400,
                404,
                *COMMON_ERRORS,
                notes={
                    400: "invalid_indicator (details: the valid indicators, or the indicator's parameters), "
                    "invalid_timeframe, invalid_parameter, invalid_instrument_key.",
                    404: "unknown_instrument; no_data (no 1-minute bar stored).",
                },
            ),
        },
    )
    def get(self, request, key: str, indicator: str):
        return HttpResponse(
            self.fast_get(request.query_params, key, indicator), content_type="application/json"
        )

    @staticmethod
    def fast_get(q, key: str, indicator: str) -> bytes:
        """The body (this view's, and the fast lane's: signalsvc/api/fastlane.py)."""
        timeframe = timeframe_from(q.get("timeframe"))
        params = indicator_params(q)
        instrument = instrument_ref(key)
        return latest_json(instrument, indicator, params, timeframe)


class BatchIndicatorsApi(APIView):
    read_only_post = True

    @extend_schema(
        summary="Latest values of many indicators",
        description=(
            'Body: {"items": [{"instrument_key", "indicator", "timeframe"?, "params"?}, ...]} (at most '
            "API_V2_BATCH_SIZE). One result per item, in order: {index, status: ok, result} or {index, status: "
            "error, error{code, message, details}}; a bad item never fails the batch."
        ),
        request=BatchIndicatorsRequestSerializer,
        parameters=[RETRY_AFTER],
        responses={
            200: BatchIndicatorsSerializer,
            **items_batch_errors(),
        },
    )
    def post(self, request):
        items = batch_items(request.data, item_shape='{"instrument_key", "indicator", "timeframe", "params"}')
        return Response(batch_results(items, self._one))

    @staticmethod
    def _one(index: int, item: object) -> dict:
        out: dict = {"index": index}
        try:
            if not isinstance(item, dict):
                raise ApiError(status_code=400, code="invalid_input", message="each item must be an object")
            key, name = item.get("instrument_key"), item.get("indicator")
            params = item.get("params", {})
            out.update(
                instrument_key=echoed(key), indicator=echoed(name), timeframe=echoed(item.get("timeframe"))
            )
            unknown = sorted(set(item) - {"instrument_key", "indicator", "timeframe", "params"})
            if unknown:
                raise ApiError(
                    status_code=400, code="invalid_input", message=f"unknown item fields {unknown}"
                )
            if not isinstance(key, str) or not isinstance(name, str):
                raise ApiError(
                    status_code=400,
                    code="invalid_input",
                    message="instrument_key and indicator must be strings",
                )
            if not isinstance(params, dict):
                raise ApiError(status_code=400, code="invalid_input", message="params must be an object")
            if item.get("timeframe") is not None and not isinstance(item.get("timeframe"), str):
                raise ApiError(status_code=400, code="invalid_timeframe", message=f"timeframe must be a string; "
                               f"expected {TIMEFRAME_GRAMMAR}")  # fmt: skip
            timeframe = timeframe_from(item.get("timeframe"))
            instrument = instrument_ref(key)
            out["result"] = orjson.loads(latest_json(instrument, name, params, timeframe))
            out["status"] = "ok"
        except ApiError as exc:
            out.update(item_error(exc))
        except InvalidKey as exc:
            out.update(
                status="error", error={"code": "invalid_instrument_key", "message": str(exc), "details": {}}
            )
        except UnknownInstrument as exc:
            out.update(
                status="error",
                error={
                    "code": "unknown_instrument",
                    "message": str(exc),
                    "details": {"instrument_key": exc.key},
                },
            )
        return out
