"""Greeks endpoints (SPEC §9): realtime, historical, batch and the stateless calculator."""

from __future__ import annotations

import time

import orjson
from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from greeks import calculator, selectors
from greeks.schemas import (
    BatchGreeksRequestSerializer,
    BatchGreeksSerializer,
    CalculatorRequestSerializer,
    CalculatorSerializer,
    RealtimeGreeksSerializer,
)
from greeks.services import chain_compute, redis_client
from signalsvc.api.batch import batch_items
from signalsvc.api.errors import ApiError
from signalsvc.api.fastlane import NotOnFastLane
from signalsvc.api.schemas import BODY_ERRORS, COMMON_ERRORS, RETRY_AFTER, error_responses
from signalsvc.core.keys import OPTIONS, parse_key
from signalsvc.farm import live
from signalsvc.farm.backpressure import backpressure_guard
from signalsvc.farm.ownership import workers_read
from signalsvc.farm.queues import broker_client
from signalsvc.instruments.selectors import instrument_ref
from signalsvc.ops.schemas import BACKPRESSURE_503

MONEYNESS_HINT = (
    "greeks are per option; for an underlying use /api/v2/signals/realtime/moneyness/{underlying}/greeks/{level} "
    "or /api/v2/signals/realtime/moneyness/{underlying}/atm-iv"
)


REFRESH = ("1", "true", "yes")


def option_key(key: str) -> str:
    """The canonical key of an option (InvalidKey: 400; UnknownInstrument: 404; another product:
    400 pointing to the moneyness endpoints), from the registry's in-process cache."""
    instrument = instrument_ref(key)
    if instrument.product != OPTIONS:
        raise ApiError(
            status_code=400, code="not_an_option", message=f"{key} is not an option key; {MONEYNESS_HINT}"
        )
    return instrument.key


def request_arrival(request) -> float:
    """When the request reached the service: nginx's ``X-Request-Start: t=<epoch seconds>``, never
    later than now; now without the header (a direct connection)."""
    now = time.time()
    header = request.META.get("HTTP_X_REQUEST_START", "")
    try:
        return min(now, float(header.removeprefix("t=")))
    except ValueError:
        return now


def chain_refresh(underlying_key: str, *, requested_at: float) -> None:
    """``?refresh=true``: join the computation of the chain that is queued or running, or request
    one, and return when it has finished (one computation however many callers). On the farm
    when a worker is alive; otherwise this process computes, once for all concurrent callers.
    503 at CRITICAL backpressure, and when no computation finished in GREEKS_REFRESH_TIMEOUT."""
    backpressure_guard()
    try:
        live.chain_refresh(
            redis_client(),
            underlying_key,
            compute=lambda: chain_compute(underlying_key=underlying_key).timings,
            farm_alive=bool(workers_read(broker_client(), ttl=settings.FARM_WORKER_TTL_SECONDS)),
            timeout=settings.GREEKS_REFRESH_TIMEOUT,
            requested_at=requested_at,
        )
    except live.RefreshTimeout as exc:
        raise ApiError(
            status_code=503,
            code="refresh_timeout",
            message=f"{exc}; the stored values are still served without refresh",
            headers={"Retry-After": "1"},
        ) from None


def realtime_payload(key: str) -> bytes:
    """The latest values of one option key as stored (already JSON), or an ApiError."""
    canonical = option_key(key)
    latest = selectors.greeks_latest_raw(key=canonical)
    if latest is None:
        raise ApiError(
            status_code=404,
            code="no_data",
            message=f"no greeks computed yet for {key}; {selectors.NO_DATA_HINT}",
        )
    return latest


class RealtimeGreeksApi(APIView):
    @extend_schema(
        summary="Latest IV and Greeks of an option",
        parameters=[
            OpenApiParameter(
                "refresh",
                bool,
                description="wait for a fresh computation of the chain: joins the one queued or running, or "
                "requests one (concurrent refreshes share one computation)",
            ),
            RETRY_AFTER,
        ],
        responses={
            200: RealtimeGreeksSerializer,
            **error_responses(
                400,
                404,
                *COMMON_ERRORS,
                notes={
                    400: "invalid_instrument_key; not_an_option (an underlying or future key: see the moneyness "
                    "endpoints).",
                    404: "unknown_instrument; no_data (not computed yet).",
                    503: "With refresh: "
                    + BACKPRESSURE_503
                    + " refresh_timeout: no computation finished within "
                    "GREEKS_REFRESH_TIMEOUT (Retry-After: 1).",
                },
            ),
        },
    )
    def get(self, request, key: str):
        if request.query_params.get("refresh") in REFRESH:
            chain_refresh(parse_key(option_key(key)).underlying_key, requested_at=request_arrival(request))
        # The stored value is the response body: no parse, no re-encode.
        return HttpResponse(realtime_payload(key), content_type="application/json")

    @staticmethod
    def fast_get(query, key: str) -> bytes:
        """The body without a refresh (signalsvc/api/fastlane.py); a refresh waits in the view."""
        if query.get("refresh") in REFRESH:
            raise NotOnFastLane("refresh")
        return realtime_payload(key)


class BatchGreeksApi(APIView):
    read_only_post = True

    @extend_schema(
        summary="Latest IV and Greeks of many options",
        description='Body: {"instrument_keys": [...]} (at most API_V2_BATCH_SIZE). Per-key errors are reported '
        "in `errors` without failing the batch. One instrument query and one Redis read for the whole batch.",
        request=BatchGreeksRequestSerializer,
        parameters=[RETRY_AFTER],
        responses={
            200: BatchGreeksSerializer,
            **error_responses(
                *BODY_ERRORS,
                *COMMON_ERRORS,
                notes={
                    400: 'invalid_input (not {"instrument_keys": [key, ...]}), batch_too_large, malformed_request.'
                },
            ),
        },
    )
    def post(self, request):
        return HttpResponse(self.fast_post(request.data), content_type="application/json")

    @staticmethod
    def fast_post(data) -> bytes:
        """The body (this view's, and the fast lane's: signalsvc/api/fastlane.py)."""
        keys = batch_items(data, item_shape="key", field="instrument_keys")
        if not all(isinstance(k, str) for k in keys):
            raise ApiError(
                status_code=400, code="invalid_input", message='body must be {"instrument_keys": [key, ...]}'
            )
        results, errors = selectors.greeks_batch(keys=keys, not_an_option_hint=MONEYNESS_HINT)
        # The stored values are the results' JSON: spliced in, never parsed and re-encoded.
        tail = orjson.dumps({"errors": errors, "requested": len(keys), "succeeded": len(results)})
        members = b",".join(orjson.dumps(key) + b":" + value for key, value in results.items())
        return b"".join((b'{"results":{', members, b"},", tail[1:]))


class CalculatorApi(APIView):
    read_only_post = True

    @extend_schema(
        summary="Stateless Greeks / IV calculator",
        description=calculator.__doc__,
        request=CalculatorRequestSerializer,
        parameters=[RETRY_AFTER],
        responses={
            200: CalculatorSerializer,
            **error_responses(
                *BODY_ERRORS,
                *COMMON_ERRORS,
                notes={
                    400: "invalid_input (details.rows lists each invalid row), too_many_rows, malformed_request.",
                    503: BACKPRESSURE_503,
                },
            ),
        },
    )
    def post(self, request):
        backpressure_guard()
        return Response(calculator.calculate(request.data, max_rows=settings.GREEKS_CALCULATOR_MAX_ROWS))
