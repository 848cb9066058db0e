from django.urls import path

from greeks import apis

urlpatterns = [
    path("realtime/greeks/<str:key>", apis.RealtimeGreeksApi.as_view(), name="realtime-greeks"),
    path("batch/greeks", apis.BatchGreeksApi.as_view(), name="batch-greeks"),
    path("greeks/calculate", apis.CalculatorApi.as_view(), name="greeks-calculate"),
]
