from django.urls import path

from timeframes import apis

urlpatterns = [
    path("historical/bars/<str:key>", apis.HistoricalBarsApi.as_view(), name="historical-bars"),
    path("historical/greeks/<str:key>", apis.HistoricalGreeksApi.as_view(), name="historical-greeks"),
    path(
        "historical/available-timeframes/<str:key>",
        apis.AvailableTimeframesApi.as_view(),
        name="available-timeframes",
    ),
    path(
        "available-timeframes/<str:key>",
        apis.AvailableTimeframesApi.as_view(),
        name="available-timeframes-alias",
    ),
    path(
        "historical/indicators/<str:key>/<str:indicator>",
        apis.HistoricalIndicatorApi.as_view(),
        name="historical-indicators",
    ),
    path(
        "realtime/indicators/<str:key>/<str:indicator>",
        apis.RealtimeIndicatorApi.as_view(),
        name="realtime-indicators",
    ),
    path("indicators", apis.IndicatorListApi.as_view(), name="indicators"),
    path("batch/indicators", apis.BatchIndicatorsApi.as_view(), name="batch-indicators"),
]
