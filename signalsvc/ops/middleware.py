import time

from signalsvc.ops.metrics import request_record

_NOT_RECORDED = ("/metrics", "/api/v2/health/", "/static/", "/admin/")


class RequestMetricsMiddleware:
    """Counts every API request into Prometheus and the per-minute API aggregates."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        if request.path.startswith(_NOT_RECORDED):
            return response
        match = getattr(request, "resolver_match", None)
        auth = getattr(request, "auth", None)
        request_record(
            method=request.method,
            endpoint=match.route if match is not None else "unmatched",
            status=response.status_code,
            seconds=time.perf_counter() - started,
            api_key=getattr(auth, "prefix", None) or "anonymous",
        )
        return response
