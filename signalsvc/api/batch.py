"""The batch endpoints' shared shape: ``{"items": [...]}`` in (at most ``API_V2_BATCH_SIZE``), one
result per item out, in order: ``{index, status: ok, result}`` or ``{index, status: error,
error{code, message, details}}``. A bad item never fails the batch."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings

from signalsvc.api.errors import ApiError


def batch_items(body: object, *, item_shape: str, field: str = "items") -> list:
    """The list under ``field`` of a batch body, or a 400 naming the expected shape (``item_shape``)."""
    items = body.get(field) if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiError(
            status_code=400, code="invalid_input", message=f'body must be {{"{field}": [{item_shape}, ...]}}'
        )
    if len(items) > settings.API_V2_BATCH_SIZE:
        raise ApiError(
            status_code=400,
            code="batch_too_large",
            message=f"at most {settings.API_V2_BATCH_SIZE} {field} per batch, got {len(items)}",
        )
    return items


def batch_results(items: list, one: Callable[[int, object], dict]) -> dict:
    """``one(index, item)`` for every item, and the counts."""
    results = [one(i, item) for i, item in enumerate(items)]
    succeeded = sum(r["status"] == "ok" for r in results)
    return {
        "requested": len(items),
        "succeeded": succeeded,
        "failed": len(items) - succeeded,
        "results": results,
    }


def echoed(value: object) -> str | None:
    """An item's field as its result echoes it: the value when it is a string, else null (the
    results' schemas type the echoed fields as strings; an item may hold anything)."""
    return value if isinstance(value, str) else None


def item_error(exc: ApiError) -> dict:
    return {
        "status": "error",
        "error": {"code": exc.error_code, "message": exc.message, "details": exc.details or {}},
    }
