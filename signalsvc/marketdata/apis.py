from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from signalsvc.api.errors import ApiError
from signalsvc.api.params import parse_range
from signalsvc.api.schemas import BODY_ERRORS, COMMON_ERRORS, RETRY_AFTER, error_responses
from signalsvc.instruments.selectors import instrument_get, instrument_ids
from signalsvc.marketdata import selectors
from signalsvc.marketdata.schemas import BarInSerializer, BarsWrittenSerializer, StoredBarsSerializer
from signalsvc.marketdata.services import BarIn, bars_upsert
from signalsvc.marketdata.validation import validate_bars


def bar_json(row) -> dict:
    ts, o, h, low, c, volume, oi = row
    return {
        "timestamp": ts.isoformat(),
        "open": o,
        "high": h,
        "low": low,
        "close": c,
        "volume": volume,
        "oi": oi,
    }


class BarsIngestApi(APIView):
    requires_write = True

    @extend_schema(
        summary="Upsert 1-minute bars",
        description=(
            "Body: a JSON list of bars {instrument_key, timestamp (minute start, ISO-8601; naive = "
            "Asia/Kolkata), open, high, low, close, volume?, oi?}. All or nothing: any invalid row "
            "(400) or unknown instrument (404) writes nothing. Re-posting a bar replaces it."
        ),
        request=BarInSerializer(many=True),
        parameters=[RETRY_AFTER],
        responses={
            200: BarsWrittenSerializer,
            **error_responses(
                *BODY_ERRORS,
                403,
                404,
                *COMMON_ERRORS,
                notes={
                    400: "invalid_input (not a non-empty list, or details.rows lists each invalid row; nothing "
                    "was written), malformed_request.",
                    401: "Writing needs an API key with write access.",
                    404: "unknown_instrument: details.unknown_keys; nothing was written.",
                    413: "too_many_rows: more than MARKET_BARS_MAX_ROWS bars.",
                },
            ),
        },
    )
    def post(self, request):
        payload = request.data
        if not isinstance(payload, list):
            raise ApiError(status_code=400, code="invalid_input", message="body must be a JSON list of bars")
        if not payload:
            raise ApiError(status_code=400, code="invalid_input", message="body is an empty list")
        if len(payload) > settings.MARKET_BARS_MAX_ROWS:
            raise ApiError(
                status_code=413,
                code="too_many_rows",
                message=f"at most {settings.MARKET_BARS_MAX_ROWS} bars per request",
            )
        drafts, problems = validate_bars(payload, market_tz=settings.MARKET_TIMEZONE)
        if problems:
            raise ApiError(
                status_code=400,
                code="invalid_input",
                message="some bars are invalid; nothing was written",
                details={"rows": problems},
            )
        ids = instrument_ids(keys={d.key for d in drafts})
        unknown = sorted({d.key for d in drafts} - set(ids))
        if unknown:
            raise ApiError(
                status_code=404,
                code="unknown_instrument",
                message=f"{len(unknown)} unknown instrument key(s); nothing was written",
                details={"unknown_keys": unknown[:50]},
            )
        bars = [BarIn(ids[d.key], d.ts, d.open, d.high, d.low, d.close, d.volume, d.oi) for d in drafts]
        written = bars_upsert(bars=bars)
        return Response({"received": len(bars), "written": written})


class BarsReadApi(APIView):
    @extend_schema(
        summary="1-minute bars as stored",
        parameters=[
            OpenApiParameter(
                "start_time", str, description="ISO-8601; naive = Asia/Kolkata; default end - 1 day"
            ),
            OpenApiParameter("end_time", str, description="ISO-8601; default now"),
            RETRY_AFTER,
        ],
        responses={
            200: StoredBarsSerializer,
            **error_responses(
                400,
                404,
                *COMMON_ERRORS,
                notes={
                    400: "invalid_instrument_key, invalid_parameter, invalid_range, range_too_large.",
                    404: "unknown_instrument.",
                },
            ),
        },
    )
    def get(self, request, key: str):
        instrument = instrument_get(key=key)
        start, end = parse_range(request.query_params, default_days=1)
        rows = selectors.bars_between(instrument_id=instrument.id, start=start, end=end)
        return Response(
            {
                "instrument_key": instrument.key,
                "start_time": start.isoformat(),
                "end_time": end.isoformat(),
                "timeframe": "1m",
                "data_points": len(rows),
                "bars": [bar_json(r) for r in rows],
            }
        )
