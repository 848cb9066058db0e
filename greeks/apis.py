"""Greeks endpoints (SPEC §9): realtime, historical, batch and the stateless calculator."""

from __future__ import annotations

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
from greeks.services import chain_compute
from signalsvc.api.batch import batch_items
from signalsvc.api.errors import ApiError
from signalsvc.api.schemas import BODY_ERRORS, COMMON_ERRORS, RETRY_AFTER, error_responses
from signalsvc.core.keys import OPTIONS, parse_key
from signalsvc.farm.backpressure import backpressure_guard
from signalsvc.instruments.selectors import instrument_ref
from signalsvc.ops.schemas import BACKPRESSURE_503

MONEYNESS_HINT = (
    "greeks are per option; for an underlying use /api/v2/signals/realtime/moneyness/{underlying}/greeks/{level} "
    "or /api/v2/signals/realtime/moneyness/{underlying}/atm-iv"
)


def option_key(key: str) -> str:
    """The canonical key of an option (InvalidKey: 400; UnknownInstrument: 404; another product:
    400 pointing to the moneyness endpoints), from the registry's in-process cache."""
    instrument = instrument_ref(key)
    if instrument.product != OPTIONS:
        raise ApiError(
            status_code=400, code="not_an_option", message=f"{key} is not an option key; {MONEYNESS_HINT}"
        )
    return instrument.key


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
            OpenApiParameter("refresh", bool, description="recompute the chain now (on demand)"),
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
                },
            ),
        },
    )
    def get(self, request, key: str):
        if request.query_params.get("refresh") in ("1", "true", "yes"):
            chain_compute(underlying_key=parse_key(option_key(key)).underlying_key)
        # The stored value is the response body: no parse, no re-encode.
        return HttpResponse(realtime_payload(key), content_type="application/json")


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
        keys = batch_items(request.data, item_shape="key", field="instrument_keys")
        if not all(isinstance(k, str) for k in keys):
            raise ApiError(
                status_code=400, code="invalid_input", message='body must be {"instrument_keys": [key, ...]}'
            )
        results, errors = selectors.greeks_batch(keys=keys, not_an_option_hint=MONEYNESS_HINT)
        # The stored values are the results' JSON: spliced in, never parsed and re-encoded.
        tail = orjson.dumps({"errors": errors, "requested": len(keys), "succeeded": len(results)})
        members = b",".join(orjson.dumps(key) + b":" + value for key, value in results.items())
        body = b"".join((b'{"results":{', members, b"},", tail[1:]))
        return HttpResponse(body, content_type="application/json")


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
