"""Moneyness endpoints (SPEC §9) under ``/api/v2/signals/``: realtime, historical and batch.

``underlying`` is a symbol (``NIFTY``, exchange NSE) or an index key (``NSE@NIFTY@equity_spot``);
``expiry_date`` is optional everywhere: the nearest live expiry (realtime) or each session's
nearest unexpired expiry (historical). Errors: 400 bad input (the message says what is accepted),
404 unknown underlying / no data yet / unlisted expiry, 422 expired expiry, a level beyond the
chain's strikes or a level whose history is not stored.
"""

from __future__ import annotations

import datetime as dt
import re
from contextlib import contextmanager

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from moneyness import selectors
from moneyness.core.levels import GRAMMAR, InvalidLevel, Level, parse_level
from moneyness.schemas import (
    HISTORICAL_400,
    REALTIME_400,
    REALTIME_404,
    REALTIME_422,
    REALTIME_ATM_IV,
    BatchLevelGreeksSerializer,
    BatchLevelRequestSerializer,
    HistoricalAtmIvSerializer,
    HistoricalLevelGreeksSerializer,
    LevelGreeksSerializer,
    OtmDeltaSerializer,
    SmileSerializer,
    SummarySerializer,
)
from moneyness.services import realtime_version_key
from signalsvc.api.batch import batch_items, batch_results, echoed
from signalsvc.api.errors import ApiError
from signalsvc.api.renderers import json_bytes
from signalsvc.api.response_cache import chain_version_key, response_identity, versioned
from signalsvc.api.schemas import COMMON_ERRORS, RETRY_AFTER, error_responses, items_batch_errors
from signalsvc.core.keys import InvalidKey
from signalsvc.instruments.selectors import UnknownInstrument
from timeframes.apis import (
    RANGE_PARAMS,
    TIMEFRAME_PARAM,
    agg_from,
    date_from,
    iso,
    json_body,
    range_from,
    timeframe_from,
)

UNDERLYING_HELP = "a symbol (NIFTY) or an index key (NSE@NIFTY@equity_spot)"
EXPIRY_PARAM = OpenApiParameter(
    "expiry_date", str, description="YYYY-MM-DD; default: the nearest expiry that has not expired"
)
AGG_PARAM = OpenApiParameter("agg", str, enum=["last", "mean"], description="bucket value; default last")
TENOR = re.compile(r"^(\d{1,3})d$")
MAX_TENOR_DAYS = 365

JSON = "application/json"


@contextmanager
def api_errors():
    """Domain errors of the moneyness reads as the API's error JSON."""
    try:
        yield
    except selectors.NotAnUnderlying as exc:
        raise ApiError(status_code=400, code="not_an_underlying", message=str(exc)) from None
    except InvalidKey as exc:
        raise ApiError(
            status_code=400, code="invalid_underlying", message=f"{exc}; expected {UNDERLYING_HELP}"
        ) from None
    except UnknownInstrument as exc:
        raise ApiError(
            status_code=404,
            code="unknown_underlying",
            message=f"unknown underlying {exc.key}; expected {UNDERLYING_HELP} of a registered index",
            details={"underlying": exc.key},
        ) from None
    except selectors.NoMoneynessData as exc:
        raise ApiError(
            status_code=404,
            code="no_data",
            message=f"{exc}; the chain is computed every minute from live ticks",
        ) from None
    except selectors.ExpiryNotLive as exc:
        live = [d.isoformat() for d in exc.live]
        if exc.expired:
            raise ApiError(
                status_code=422,
                code="expiry_expired",
                message=f"expiry {exc.expiry} has expired; live expiries: {', '.join(live) or 'none'}",
                details={"expiry_date": exc.expiry.isoformat(), "live_expiries": live},
            ) from None
        raise ApiError(
            status_code=404,
            code="unknown_expiry",
            message=f"no listed expiry {exc.expiry}; live expiries: {', '.join(live) or 'none'}",
            details={"expiry_date": exc.expiry.isoformat(), "live_expiries": live},
        ) from None
    except selectors.LevelBeyondChain as exc:
        raise ApiError(status_code=422, code="level_beyond_chain", message=str(exc)) from None


def level_from(text: str) -> Level:
    try:
        return parse_level(text)
    except InvalidLevel as exc:
        raise ApiError(
            status_code=400, code="invalid_level", message=str(exc), details={"grammar": GRAMMAR}
        ) from None


def expiry_from(query) -> dt.date | None:
    return date_from("expiry_date", query.get("expiry_date"))


def delta_from(value: str | None) -> float:
    message = (
        "delta must be a number strictly between 0 and 0.5 (|delta| of the OTM option, e.g. 0.05 or 0.25)"
    )
    if value in (None, ""):
        raise ApiError(status_code=400, code="missing_parameter", message=message)
    try:
        delta = float(value)
    except ValueError:
        raise ApiError(
            status_code=400, code="invalid_parameter", message=f"delta={value!r}: {message}"
        ) from None
    if not 0 < delta < 0.5:
        raise ApiError(status_code=400, code="invalid_parameter", message=f"delta={value!r}: {message}")
    return delta


def option_type_from(value: str | None) -> bool:
    """True for call. Required: the OTM side of a delta depends on it."""
    if value in ("call", "put"):
        return value == "call"
    raise ApiError(
        status_code=400,
        code="missing_parameter" if value in (None, "") else "invalid_parameter",
        message=f"option_type={value!r}: expected call or put"
        if value
        else "option_type is required: call or put",
    )


def tenor_from(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    match = TENOR.match(value)
    if match is None or not 1 <= int(match.group(1)) <= MAX_TENOR_DAYS:
        raise ApiError(
            status_code=400,
            code="invalid_parameter",
            message=f"tenor={value!r}: expected Nd with N calendar days from 1 to {MAX_TENOR_DAYS}, e.g. 30d",
        )
    return int(match.group(1))


# -- realtime ----------------------------------------------------------------------------------------------


class RealtimeLevelGreeksApi(APIView):
    @extend_schema(
        summary="Aggregated Greeks of a moneyness level (latest chain)",
        description=(
            f"Levels: {GRAMMAR}. Means over the level's options with a value, for all, calls and puts; `count` = "
            "options with an IV (a level without priced options: count 0 and nulls). Computed from the latest "
            "chain snapshot of the expiry in one read; `include=instruments` lists the member options."
        ),
        parameters=[EXPIRY_PARAM, OpenApiParameter("include", str, enum=["instruments"]), RETRY_AFTER],
        responses={
            200: LevelGreeksSerializer,
            **error_responses(
                400,
                404,
                422,
                *COMMON_ERRORS,
                notes={
                    400: "invalid_level (details.grammar), " + REALTIME_400,
                    404: REALTIME_404,
                    422: "level_beyond_chain (a strike-step level past the listed strikes), " + REALTIME_422,
                },
            ),
        },
    )
    def get(self, request, underlying: str, level: str):
        return HttpResponse(self.fast_get(request.query_params, underlying, level), content_type=JSON)

    @classmethod
    def fast_get(cls, q, underlying: str, level: str) -> bytes:
        """The body (this view's, and the fast lane's: signalsvc/api/fastlane.py), computed once per
        snapshot (cached under its version)."""
        parsed = level_from(level)
        expiry = expiry_from(q)
        include = q.get("include")
        if include not in (None, "", "instruments"):
            raise ApiError(
                status_code=400,
                code="invalid_parameter",
                message=f"include={include!r}: expected instruments",
            )
        with api_errors():
            ref = selectors.underlying_get(underlying)

        def compute() -> bytes:
            with api_errors():
                return json_bytes(
                    selectors.level_greeks_realtime(
                        underlying=ref,
                        level=parsed,
                        expiry=expiry,
                        include_instruments=include == "instruments",
                    )
                )

        return versioned(
            response_identity(cls, {"underlying": underlying, "level": level}, q),
            version_key=realtime_version_key(ref.key),
            compute=compute,
        )


class RealtimeAtmIvApi(APIView):
    @extend_schema(
        summary="ATM implied volatility (latest chain), or a constant-maturity value",
        description=(
            "IV at the forward, linear in total variance between the OTM options bracketing it; call and put IV and "
            "skew (put - call) at the ATM strike. `tenor=30d`: constant maturity, linear in total variance between "
            "the expiries bracketing the tenor (null with a status when only one side exists)."
        ),
        parameters=[EXPIRY_PARAM, OpenApiParameter("tenor", str, description="Nd, e.g. 30d"), RETRY_AFTER],
        responses={
            200: REALTIME_ATM_IV,
            **error_responses(
                400,
                404,
                422,
                *COMMON_ERRORS,
                notes={400: REALTIME_400, 404: REALTIME_404, 422: REALTIME_422},
            ),
        },
    )
    def get(self, request, underlying: str):
        return HttpResponse(self.fast_get(request.query_params, underlying), content_type=JSON)

    @classmethod
    def fast_get(cls, q, underlying: str) -> bytes:
        """The body (this view's, and the fast lane's: signalsvc/api/fastlane.py), computed once per
        snapshot (cached under its version)."""
        tenor = tenor_from(q.get("tenor"))
        expiry = expiry_from(q)
        if tenor is not None and expiry is not None:
            raise ApiError(
                status_code=400, code="invalid_parameter", message="give tenor or expiry_date, not both"
            )
        with api_errors():
            ref = selectors.underlying_get(underlying)

        def compute() -> bytes:
            with api_errors():
                if tenor is not None:
                    return json_bytes(selectors.atm_iv_tenor_realtime(underlying=ref, tenor_days=tenor))
                return json_bytes(selectors.atm_iv_realtime(underlying=ref, expiry=expiry))

        return versioned(
            response_identity(cls, {"underlying": underlying}, q),
            version_key=realtime_version_key(ref.key),
            compute=compute,
        )


class RealtimeOtmDeltaApi(APIView):
    @extend_schema(
        summary="The OTM option nearest a delta, and the strike and IV at exactly that delta",
        parameters=[
            OpenApiParameter("delta", float, required=True, description="|delta|, 0 < delta < 0.5"),
            OpenApiParameter("option_type", str, required=True, enum=["call", "put"]),
            EXPIRY_PARAM,
            RETRY_AFTER,
        ],
        responses={
            200: OtmDeltaSerializer,
            **error_responses(
                400,
                404,
                422,
                *COMMON_ERRORS,
                notes={400: REALTIME_400, 404: REALTIME_404, 422: REALTIME_422},
            ),
        },
    )
    def get(self, request, underlying: str):
        q = request.query_params
        delta = delta_from(q.get("delta"))
        call = option_type_from(q.get("option_type"))
        expiry = expiry_from(q)
        with api_errors():
            ref = selectors.underlying_get(underlying)
            return Response(
                selectors.otm_delta_realtime(underlying=ref, delta=delta, call=call, expiry=expiry)
            )


class RealtimeSmileApi(APIView):
    @extend_schema(
        summary="The smile: OTM IV and delta of every listed strike, and the fitted SVI slice",
        description=(
            "Points: the out-of-the-money option of each strike (put below the forward, call at or above), with IV, "
            "delta and the fitted IV. Fit: raw SVI in total variance against log-moneyness, vega-weighted, "
            "constrained against static arbitrage, re-fitted every minute (params, RMS and max error in vol)."
        ),
        parameters=[EXPIRY_PARAM, RETRY_AFTER],
        responses={
            200: SmileSerializer,
            **error_responses(
                400,
                404,
                422,
                *COMMON_ERRORS,
                notes={400: REALTIME_400, 404: REALTIME_404, 422: REALTIME_422},
            ),
        },
    )
    def get(self, request, underlying: str):
        expiry = expiry_from(request.query_params)
        with api_errors():
            ref = selectors.underlying_get(underlying)
            return Response(selectors.smile_realtime(underlying=ref, expiry=expiry))


class RealtimeSummaryApi(APIView):
    @extend_schema(
        summary="Put-call ratios, max pain, IV rank and the moneyness distribution of an expiry",
        description=(
            "Put-call ratio by open interest (latest ticks) and by volume (the session's 1-minute bars); max pain "
            "over the listed strikes; IV rank and percentile of the constant-maturity ATM IV over its stored "
            "per-minute history (`lookback_days`, default 365; the history's length is stated); options, OI and "
            "volume across DITM, ITM, ATM, OTM, DOTM for calls and puts."
        ),
        parameters=[
            EXPIRY_PARAM,
            OpenApiParameter("lookback_days", int, description="1..3650, default 365"),
            RETRY_AFTER,
        ],
        responses={
            200: SummarySerializer,
            **error_responses(
                400,
                404,
                422,
                *COMMON_ERRORS,
                notes={400: REALTIME_400, 404: REALTIME_404, 422: REALTIME_422},
            ),
        },
    )
    def get(self, request, underlying: str):
        q = request.query_params
        expiry = expiry_from(q)
        lookback = q.get("lookback_days") or "365"
        # ASCII digits, and few: int() refuses more than 4300 digits and str.isdigit() admits "²".
        if (
            not (lookback.isascii() and lookback.isdigit() and len(lookback) <= 4)
            or not 1 <= int(lookback) <= 3650
        ):
            raise ApiError(
                status_code=400,
                code="invalid_parameter",
                message=f"lookback_days={lookback!r}: expected 1..3650",
            )
        with api_errors():
            ref = selectors.underlying_get(underlying)
            return Response(
                selectors.summary_realtime(underlying=ref, expiry=expiry, lookback_days=int(lookback))
            )


# -- historical --------------------------------------------------------------------------------------------


def _series_base(ref: selectors.Underlying, start, end, timeframe, agg) -> dict:
    return {
        "instrument_key": ref.key,
        "underlying": ref.symbol,
        "start_time": iso(start),
        "end_time": iso(end),
        "timeframe": timeframe.label,
        "agg": agg,
    }


def _bucket_point(row: dict, values: tuple[str, ...], meta: tuple[str, ...]) -> dict:
    """One bucket as the original design's series item (dates and times are rendered by orjson)."""
    return {
        "timestamp": iso(row["bucket_start"]),
        "value": {name: row[name] for name in values},
        "metadata": {"bucket_end": iso(row["bucket_end"]), "observations": row["observations"]}
        | {name: row[name] for name in meta},
    }


class HistoricalLevelGreeksApi(APIView):
    @extend_schema(
        summary="Aggregated Greeks of a stored moneyness level over time, at any timeframe",
        description=(
            "Levels stored every minute: MONEYNESS_STORED_LEVELS (others are realtime only: 422). Each session's "
            "nearest unexpired expiry, or `expiry_date`. value{all,calls,puts}{delta,gamma,theta,vega,rho,iv,count}."
        ),
        parameters=[*RANGE_PARAMS, TIMEFRAME_PARAM, AGG_PARAM, EXPIRY_PARAM, RETRY_AFTER],
        responses={
            200: HistoricalLevelGreeksSerializer,
            **error_responses(
                400,
                404,
                422,
                *COMMON_ERRORS,
                notes={
                    400: "invalid_level (details.grammar), " + HISTORICAL_400,
                    404: "unknown_underlying.",
                    422: "level_not_stored (details.stored_levels: the levels with a history).",
                },
            ),
        },
    )
    def get(self, request, underlying: str, level: str):
        return HttpResponse(self.fast_get(request.query_params, underlying, level), content_type=JSON)

    @classmethod
    def fast_get(cls, q, underlying: str, level: str) -> bytes:
        """The body (this view's, and the fast lane's: signalsvc/api/fastlane.py)."""
        parsed = level_from(level)
        timeframe = timeframe_from(q.get("timeframe"))
        agg = agg_from(q.get("agg"))
        expiry = expiry_from(q)
        start, end = range_from(q)
        if parsed.name not in settings.MONEYNESS_STORED_LEVELS:
            raise ApiError(
                status_code=422,
                code="level_not_stored",
                message=f"{parsed.name} has no stored history (realtime only); stored levels: "
                + ", ".join(settings.MONEYNESS_STORED_LEVELS),
                details={"stored_levels": list(settings.MONEYNESS_STORED_LEVELS)},
            )
        with api_errors():
            ref = selectors.underlying_get(underlying)

        def compute():
            rows = selectors.level_series_at(
                underlying=ref,
                level=parsed.name,
                timeframe=timeframe,
                start=start,
                end=end,
                agg=agg,
                expiry=expiry,
            )
            series = []
            for row in rows:
                point = _bucket_point(row, (), selectors.LEVEL_META)
                point["value"] = {
                    group: {f: row[f"{group}_{f}"] for f in ("delta", "gamma", "theta", "vega", "rho", "iv")}
                    | {"count": row[f"{group}_count"]}
                    for group in ("all", "calls", "puts")
                }
                series.append(point)
            base = _series_base(ref, start, end, timeframe, agg) | {"moneyness_level": parsed.name}
            return json_body(base | {"data_points": len(series), "time_series": series})

        # Written only by the chain computation: cached per chain version (signalsvc.api.response_cache).
        return versioned(
            response_identity(cls, {"underlying": underlying, "level": level}, q),
            version_key=chain_version_key(ref.key),
            compute=compute,
        )


class HistoricalAtmIvApi(APIView):
    @extend_schema(
        summary="ATM IV history at any timeframe, with statistics",
        description=(
            "Each session's nearest unexpired expiry (or `expiry_date`), or the constant-maturity value with "
            "`tenor=30d`. statistics{mean,std,min,max,current,change,change_pct} over the returned `iv` values."
        ),
        parameters=[
            *RANGE_PARAMS,
            TIMEFRAME_PARAM,
            AGG_PARAM,
            EXPIRY_PARAM,
            OpenApiParameter("tenor", str),
            RETRY_AFTER,
        ],
        responses={
            200: HistoricalAtmIvSerializer,
            **error_responses(
                400,
                404,
                422,
                *COMMON_ERRORS,
                notes={
                    400: HISTORICAL_400,
                    404: "unknown_underlying.",
                    422: "tenor_not_stored (only MONEYNESS_CM_TENOR_DAYS is stored).",
                },
            ),
        },
    )
    def get(self, request, underlying: str):
        return HttpResponse(self.fast_get(request.query_params, underlying), content_type=JSON)

    @classmethod
    def fast_get(cls, q, underlying: str) -> bytes:
        """The body (this view's, and the fast lane's: signalsvc/api/fastlane.py)."""
        timeframe = timeframe_from(q.get("timeframe"))
        agg = agg_from(q.get("agg"))
        expiry = expiry_from(q)
        tenor = tenor_from(q.get("tenor"))
        start, end = range_from(q)
        if tenor is not None and expiry is not None:
            raise ApiError(
                status_code=400, code="invalid_parameter", message="give tenor or expiry_date, not both"
            )
        if tenor is not None and tenor != settings.MONEYNESS_CM_TENOR_DAYS:
            raise ApiError(
                status_code=422,
                code="tenor_not_stored",
                message=f"only the {settings.MONEYNESS_CM_TENOR_DAYS}d constant maturity is stored; "
                "other tenors are realtime only",
            )
        with api_errors():
            ref = selectors.underlying_get(underlying)

        def compute():
            base = _series_base(ref, start, end, timeframe, agg) | {"moneyness": "ATM"}
            if tenor is not None:
                rows = selectors.constant_maturity_series_at(
                    underlying=ref, tenor_days=tenor, timeframe=timeframe, start=start, end=end, agg=agg
                )
                series = [_bucket_point(r, selectors.CM_VALUES, selectors.CM_META) for r in rows]
                base["tenor"] = f"{tenor}d"
            else:
                rows = selectors.atm_iv_series_at(
                    underlying=ref, timeframe=timeframe, start=start, end=end, agg=agg, expiry=expiry
                )
                series = [_bucket_point(r, selectors.ATM_IV_VALUES, selectors.ATM_IV_META) for r in rows]
            statistics = selectors.series_statistics([p["value"]["iv"] for p in series])
            return json_body(
                base | {"data_points": len(series), "statistics": statistics, "time_series": series}
            )

        # Written only by the chain computation: cached per chain version (signalsvc.api.response_cache).
        return versioned(
            response_identity(cls, {"underlying": underlying}, q),
            version_key=chain_version_key(ref.key),
            compute=compute,
        )


# -- batch -------------------------------------------------------------------------------------------------

BATCH_FIELDS = {"underlying", "moneyness_level", "expiry_date", "include"}


class BatchLevelGreeksApi(APIView):
    read_only_post = True

    @extend_schema(
        summary="Aggregated Greeks of many (underlying, level, expiry) at once",
        description=(
            'Body: {"items": [{"underlying", "moneyness_level", "expiry_date"?}, ...]} (at most API_V2_BATCH_SIZE). '
            "One result per item, in order: {index, status: ok, result} or {index, status: error, error{code, "
            "message, details}}; a bad item never fails the batch."
        ),
        request=BatchLevelRequestSerializer,
        parameters=[RETRY_AFTER],
        responses={
            200: BatchLevelGreeksSerializer,
            **items_batch_errors(),
        },
    )
    def post(self, request):
        items = batch_items(
            request.data, item_shape='{"underlying", "moneyness_level", "expiry_date"?, "include"?}'
        )
        return Response(batch_results(items, self._one))

    @staticmethod
    def _one(index: int, item: object) -> dict:
        out: dict = {"index": index}
        try:
            if not isinstance(item, dict):
                raise ApiError(status_code=400, code="invalid_input", message="each item must be an object")
            out.update(
                underlying=echoed(item.get("underlying")), moneyness_level=echoed(item.get("moneyness_level"))
            )
            unknown = sorted(set(item) - BATCH_FIELDS)
            if unknown:
                raise ApiError(
                    status_code=400, code="invalid_input", message=f"unknown item fields {unknown}"
                )
            underlying, level, expiry = (
                item.get("underlying"),
                item.get("moneyness_level"),
                item.get("expiry_date"),
            )
            if not isinstance(underlying, str) or not isinstance(level, str):
                raise ApiError(
                    status_code=400,
                    code="invalid_input",
                    message="underlying and moneyness_level must be strings",
                )
            if expiry is not None and not isinstance(expiry, str):
                raise ApiError(
                    status_code=400, code="invalid_parameter", message="expiry_date must be YYYY-MM-DD"
                )
            include = item.get("include")
            if include not in (None, "instruments"):
                raise ApiError(
                    status_code=400, code="invalid_parameter", message="include: expected instruments"
                )
            parsed = level_from(level)
            expiry_date = date_from("expiry_date", expiry)
            with api_errors():
                ref = selectors.underlying_get(underlying)
                out["result"] = selectors.level_greeks_realtime(
                    underlying=ref,
                    level=parsed,
                    expiry=expiry_date,
                    include_instruments=include == "instruments",
                )
            out["status"] = "ok"
        except ApiError as exc:
            out.update(
                status="error",
                error={"code": exc.error_code, "message": exc.message, "details": exc.details or {}},
            )
        return out
