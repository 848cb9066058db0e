from django.conf import settings
from rest_framework import exceptions, permissions


class ApiAccess(permissions.BasePermission):
    """Keyed clients may call everything their key allows; anonymous clients may read when
    API_ANONYMOUS_READ is on. Views that only compute (batch reads, the calculator) set
    ``read_only_post = True``; views that write set ``requires_write = True``."""

    def has_permission(self, request, view) -> bool:
        key = request.auth
        if getattr(view, "requires_write", False) and request.method not in permissions.SAFE_METHODS:
            if key is None:
                raise exceptions.NotAuthenticated(
                    "an API key with write access is required (X-API-Key header)"
                )
            if not key.can_write:
                raise exceptions.PermissionDenied("this API key may not write market data")
            return True
        if key is not None:
            return True
        reading = request.method in permissions.SAFE_METHODS or getattr(view, "read_only_post", False)
        if settings.API_ANONYMOUS_READ and reading:
            return True
        raise exceptions.NotAuthenticated("an API key is required (X-API-Key header)")
