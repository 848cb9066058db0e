import os

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from rest_framework.response import Response
from rest_framework.views import APIView

from signalsvc.ops.health import calendar_status, readiness
from signalsvc.ops.schemas import LiveSerializer, ReadinessSerializer


class _OpenView(APIView):
    authentication_classes = []
    permission_classes = []
    throttle_classes = []


class LiveApi(_OpenView):
    @extend_schema(summary="Liveness: the process answers", responses={200: LiveSerializer})
    def get(self, request):
        return Response({"status": "alive"})


class ReadyApi(_OpenView):
    @extend_schema(
        summary="Readiness: PostgreSQL, Redis and the broker answer",
        responses={
            200: ReadinessSerializer,
            503: OpenApiResponse(ReadinessSerializer, description="Not ready: a check failed (ok false)"),
        },
    )
    def get(self, request):
        report = readiness()
        return Response(
            {
                "status": "ready" if report["ready"] else "not_ready",
                "checks": report["checks"],
                "calendar": calendar_status(),
            },
            status=200 if report["ready"] else 503,
        )


def metrics_view(request):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several worker processes (gunicorn): the sum of every live worker's samples.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
