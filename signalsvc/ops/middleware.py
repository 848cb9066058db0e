import datetime as dt
import time

from signalsvc.ops.metrics import LATENCY, REQUESTS, api_request_record

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
        seconds = time.perf_counter() - started
        match = getattr(request, "resolver_match", None)
        endpoint = match.route if match is not None else "unmatched"
        REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        LATENCY.labels(endpoint).observe(seconds)
        auth = getattr(request, "auth", None)
        api_key = getattr(auth, "prefix", None) or "anonymous"
        api_request_record(
            api_key=api_key,
            endpoint=endpoint,
            method=request.method,
            status=response.status_code,
            seconds=seconds,
            now=dt.datetime.now(dt.UTC),
        )
        return response
