from django.urls import path

from moneyness import apis

R = "realtime/moneyness/<str:underlying>"
H = "historical/moneyness/<str:underlying>"

urlpatterns = [
    path(f"{R}/greeks/<str:level>", apis.RealtimeLevelGreeksApi.as_view(), name="realtime-moneyness-greeks"),
    path(f"{R}/atm-iv", apis.RealtimeAtmIvApi.as_view(), name="realtime-moneyness-atm-iv"),
    path(f"{R}/otm-delta", apis.RealtimeOtmDeltaApi.as_view(), name="realtime-moneyness-otm-delta"),
    path(f"{R}/smile", apis.RealtimeSmileApi.as_view(), name="realtime-moneyness-smile"),
    path(f"{R}/summary", apis.RealtimeSummaryApi.as_view(), name="realtime-moneyness-summary"),
    path(
        f"{H}/greeks/<str:level>", apis.HistoricalLevelGreeksApi.as_view(), name="historical-moneyness-greeks"
    ),
    path(f"{H}/atm-iv/history", apis.HistoricalAtmIvApi.as_view(), name="historical-moneyness-atm-iv"),
    path(f"{H}/atm-iv", apis.HistoricalAtmIvApi.as_view(), name="historical-moneyness-atm-iv-alias"),
    path("batch/moneyness/greeks", apis.BatchLevelGreeksApi.as_view(), name="batch-moneyness-greeks"),
]
