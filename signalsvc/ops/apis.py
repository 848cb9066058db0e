import os

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from rest_framework.response import Response
from rest_framework.views import APIView

from signalsvc.api.schemas import error_responses
from signalsvc.farm.backpressure import backpressure_status
from signalsvc.farm.metrics import farm_registry
from signalsvc.ops.health import calendar_status, readiness
from signalsvc.ops.schemas import BackpressureSerializer, LiveSerializer, ReadinessSerializer


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


class BackpressureApi(_OpenView):
    @extend_schema(
        summary="Backpressure of the worker farm: the level, the signals that set it, queue depths",
        responses={
            200: BackpressureSerializer,
            **error_responses(
                503, notes={503: "The broker's Redis cannot be read: the farm cannot be measured."}
            ),
        },
    )
    def get(self, request):
        return Response(backpressure_status())


def metrics_view(request):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several worker processes (granian, or gunicorn): the sum of every live worker's samples.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    # The farm's gauges (queues, backpressure, shard owners) are read from Redis at scrape time, the
    # same in either mode: their own registry, appended.
    body = generate_latest(registry) + generate_latest(farm_registry())
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
