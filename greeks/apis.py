"""Greeks endpoints (SPEC §9): realtime, historical, batch and the stateless calculator."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from greeks import calculator, selectors
from greeks.services import chain_compute
from signalsvc.api.errors import ApiError
from signalsvc.instruments.selectors import instrument_get

MONEYNESS_HINT = (
    "greeks are per option; for an underlying use /api/v2/signals/realtime/moneyness/{underlying}/greeks/{level} "
    "or /api/v2/signals/realtime/moneyness/{underlying}/atm-iv"
)


def option_instrument(key: str):
    instrument = instrument_get(key=key)
    if instrument.product != "equity_options":
        raise ApiError(
            status_code=400, code="not_an_option", message=f"{key} is not an option key; {MONEYNESS_HINT}"
        )
    return instrument


def realtime_payload(key: str) -> dict:
    """The latest values of one option key, or an ApiError."""
    option_instrument(key)
    latest = selectors.greeks_latest_many(keys=[key]).get(key)
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
        parameters=[OpenApiParameter("refresh", bool, description="recompute the chain now (on demand)")],
        responses={200: dict},
    )
    def get(self, request, key: str):
        if request.query_params.get("refresh") in ("1", "true", "yes"):
            instrument = option_instrument(key)
            chain_compute(underlying_key=instrument.parsed.underlying_key)
        return Response(realtime_payload(key))


class BatchGreeksApi(APIView):
    read_only_post = True

    @extend_schema(
        summary="Latest IV and Greeks of many options",
        description='Body: {"instrument_keys": [...]} (at most API_V2_BATCH_SIZE). Per-key errors are reported '
        "in `errors` without failing the batch. One instrument query and one Redis read for the whole batch.",
        request=dict,
        responses={200: dict},
    )
    def post(self, request):
        keys = request.data.get("instrument_keys") if isinstance(request.data, dict) else None
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            raise ApiError(
                status_code=400, code="invalid_input", message='body must be {"instrument_keys": [key, ...]}'
            )
        if len(keys) > settings.API_V2_BATCH_SIZE:
            raise ApiError(
                status_code=400,
                code="batch_too_large",
                message=f"at most {settings.API_V2_BATCH_SIZE} keys per batch",
            )
        results, errors = selectors.greeks_batch(keys=keys, not_an_option_hint=MONEYNESS_HINT)
        return Response(
            {"results": results, "errors": errors, "requested": len(keys), "succeeded": len(results)}
        )


class CalculatorApi(APIView):
    read_only_post = True

    @extend_schema(
        summary="Stateless Greeks / IV calculator",
        description=calculator.__doc__,
        request=dict,
        responses={200: dict},
    )
    def post(self, request):
        return Response(calculator.calculate(request.data, max_rows=settings.GREEKS_CALCULATOR_MAX_ROWS))
