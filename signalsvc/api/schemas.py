"""OpenAPI documentation of the API's shared shapes: the error body (SPEC §9) and the helpers the
apps' ``schemas.py`` modules use.

Every serializer in the ``schemas.py`` modules documents a body and nothing else: the views build
their bodies themselves (orjson, stored JSON bytes) and never pass them through a serializer.
``tests/signalsvc/test_openapi_responses.py`` validates real bodies against these schemas."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers

_ENUMS: dict[str, tuple[tuple[str, ...], type]] = {}


def one_of(name: str, *values: str, **kwargs) -> serializers.CharField:
    """A string that is one of ``values``, documented as the enum component ``name`` (the enums
    drf-spectacular would name after the field collide between unrelated fields called ``status``
    or ``model``)."""
    known = _ENUMS.get(name)
    if known is None:
        field_class = extend_schema_field({"type": "string", "enum": list(values)}, component_name=name)(
            type(f"{name}Field", (serializers.CharField,), {})
        )
        _ENUMS[name] = known = (values, field_class)
    if known[0] != values:
        raise ValueError(f"enum {name} is {known[0]}, not {values}")
    return known[1](**kwargs)


def number(**kwargs) -> serializers.FloatField:
    """A float that is null when it is not finite (``signalsvc.core.numbers.finite_or_none``)."""
    return serializers.FloatField(allow_null=True, **kwargs)


# -- the error body ------------------------------------------------------------------------------------


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string", "enum": ["…"]}]})
class _RowIndexField(serializers.Field):
    pass


class RowErrorsSerializer(serializers.Serializer):
    index = _RowIndexField(
        help_text='Position of the row in the body; "…" stands for the rows past the 50 reported'
    )
    errors = serializers.ListField(child=serializers.CharField())


class IndicatorParameterSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = one_of("IndicatorParameterType", "int", "float")
    default = serializers.FloatField()
    min = number(help_text="Inclusive; null when the indicator library checks it")
    max = number(help_text="Inclusive; null when unbounded or checked by the indicator library")
    description = serializers.CharField()
    alias_of = serializers.CharField(required=False, help_text="The TA-Lib name of the parameter")
    choices = serializers.DictField(
        child=serializers.CharField(), required=False, help_text="Allowed values (as text) -> meaning"
    )


class ErrorDetailsSerializer(serializers.Serializer):
    """What the error carries beyond its message; which keys appear depends on ``code`` (none for
    most codes)."""

    instrument_key = serializers.CharField(required=False, help_text="unknown_instrument")
    unknown_keys = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="unknown_instrument (bars ingest)"
    )
    rows = RowErrorsSerializer(many=True, required=False, help_text="invalid_input: the invalid rows")
    underlying = serializers.CharField(required=False, help_text="unknown_underlying")
    expiry_date = serializers.DateField(required=False, help_text="expiry_expired, unknown_expiry")
    live_expiries = serializers.ListField(
        child=serializers.DateField(), required=False, help_text="expiry_expired, unknown_expiry"
    )
    stored_levels = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="level_not_stored"
    )
    grammar = serializers.CharField(required=False, help_text="invalid_level, invalid_timeframe")
    standard_timeframes = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="invalid_timeframe"
    )
    min_minutes = serializers.IntegerField(required=False, help_text="invalid_timeframe")
    max_minutes = serializers.IntegerField(required=False, help_text="invalid_timeframe")
    indicator = serializers.CharField(required=False, help_text="invalid_indicator")
    valid_indicators = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="invalid_indicator: an unknown name"
    )
    parameters = IndicatorParameterSerializer(
        many=True, required=False, help_text="invalid_indicator: the indicator's parameters"
    )


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable, e.g. invalid_parameter, unknown_instrument")
    message = serializers.CharField(help_text="What was wrong and what is accepted")
    details = ErrorDetailsSerializer()


class ErrorBodySerializer(serializers.Serializer):
    """The one error shape of the API: ``{"error": {"code", "message", "details"}}``."""

    error = ErrorSerializer()


_ERROR_NOTES = {
    400: "Bad input; the message says what is accepted.",
    401: "not_authenticated (no X-API-Key where one is required) or authentication_failed (an invalid, "
    "inactive or expired key); with WWW-Authenticate.",
    403: "permission_denied: the API key may not write market data.",
    404: "Unknown resource.",
    413: "payload_too_large: the body exceeds MAX_REQUEST_BODY_BYTES.",
    415: "unsupported_media_type: the body must be application/json.",
    422: "Well-formed but not servable.",
    429: "rate_limited: over the requests per minute of the key's tier (of the IP when anonymous); "
    "Retry-After says when to retry.",
    503: "database_unavailable or redis_unavailable: a backing store is down; Retry-After: 5.",
}


def error_responses(*statuses: int, notes: dict[int, str] | None = None) -> dict[int, OpenApiResponse]:
    """The error body under each of ``statuses``, described by the general note of the status and
    ``notes`` (the codes this endpoint answers with it)."""
    notes = notes or {}
    return {
        status: OpenApiResponse(
            response=ErrorBodySerializer,
            description=" ".join(text for text in (notes.get(status), _ERROR_NOTES.get(status)) if text),
        )
        for status in statuses
    }


# Statuses every authenticated, rate-limited view can answer besides its own.
COMMON_ERRORS = (401, 429, 503)
# And those of a view that parses a JSON body.
BODY_ERRORS = (400, 413, 415)


def items_batch_errors() -> dict[int, OpenApiResponse]:
    """The errors of a batch endpoint whose body is ``{"items": [...]}`` (signalsvc.api.batch)."""
    return error_responses(
        *BODY_ERRORS,
        *COMMON_ERRORS,
        notes={400: 'invalid_input (not {"items": [...]}), batch_too_large, malformed_request.'},
    )


RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    int,
    OpenApiParameter.HEADER,
    response=[429, 503],
    description="Seconds to wait before retrying",
)
