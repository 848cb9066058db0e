from django.conf import settings
from django.http import JsonResponse

from signalsvc.api.errors import error_body


class BodySizeLimitMiddleware:
    """Refuse an over-size body with 413 before anything reads it (DRF's parsers stream the body
    and would not apply Django's DATA_UPLOAD_MAX_MEMORY_SIZE)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse(error_body("bad_request", "invalid Content-Length"), status=400)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length > limit:
            return JsonResponse(
                error_body(
                    "payload_too_large", f"request body of {length} bytes exceeds the limit of {limit}"
                ),
                status=413,
            )
        return self.get_response(request)
