"""The one error shape of the API (SPEC §9): ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging

import redis
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from signalsvc.core.keys import InvalidKey
from signalsvc.instruments.selectors import UnknownInstrument

log = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error a service or view raises with an explicit status, code and details."""

    def __init__(self, *, status_code: int, code: str, message: str, details=None, headers=None):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.message = message
        self.details = details
        self.headers = headers or {}  # e.g. Retry-After with a 503


def error_body(code: str, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details if details is not None else {}}}


_DRF_CODES = {
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


def exception_handler(exc, context):
    """DRF exception handler: every error, known or not, leaves as the error JSON."""
    headers = {}
    if isinstance(exc, ApiError):
        return Response(
            error_body(exc.error_code, exc.message, exc.details), status=exc.status_code, headers=exc.headers
        )
    if isinstance(exc, InvalidKey):
        return Response(error_body("invalid_instrument_key", str(exc)), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, UnknownInstrument):
        return Response(
            error_body("unknown_instrument", str(exc), {"instrument_key": exc.key}),
            status=status.HTTP_404_NOT_FOUND,
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("payload_too_large", "request body exceeds the size limit"),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            error_body("invalid_input", "the request is invalid; see details", exc.detail),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, exceptions.APIException):
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(max(1, int(exc.wait + 0.999)))
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            request = context.get("request")
            view = context.get("view")
            if request is not None and view is not None:
                header = view.get_authenticate_header(request)
                if header:
                    headers["WWW-Authenticate"] = header
        code = _DRF_CODES.get(type(exc), exc.default_code)
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return Response(error_body(code, str(message)), status=exc.status_code, headers=headers)
    if isinstance(exc, OperationalError):
        # PostgreSQL unreachable, out of connections, or the pool had none free in time: the
        # request may succeed in a moment, and readiness reports the database.
        log.warning("database unavailable in %s: %s", context.get("view"), exc)
        return Response(
            error_body("database_unavailable", "the database is unavailable; retry shortly"),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, redis.RedisError):
        # The latest values live in Redis: while it is unreachable they cannot be served, and
        # readiness reports it; the processes reconnect by themselves.
        log.warning("redis unavailable in %s: %s", context.get("view"), exc)
        return Response(
            error_body("redis_unavailable", "the latest-values store is unavailable; retry shortly"),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    log.exception("unhandled error in %s", context.get("view"))
    return Response(
        error_body("internal_error", "internal error; it has been logged"),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def handler404(request, exception=None):
    return JsonResponse(error_body("not_found", f"no such resource: {request.path}"), status=404)


def handler500(request):
    return JsonResponse(error_body("internal_error", "internal error; it has been logged"), status=500)


def handler400(request, exception=None):
    return JsonResponse(error_body("bad_request", "bad request"), status=400)


def handler403(request, exception=None):
    return JsonResponse(error_body("permission_denied", "forbidden"), status=403)
