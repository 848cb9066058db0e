from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from signalsvc.marketdata import apis as market_apis
from signalsvc.ops import apis as ops_apis
from streaming.views import live_page

api_v2 = [
    path("health/live", ops_apis.LiveApi.as_view(), name="health-live"),
    path("health/ready", ops_apis.ReadyApi.as_view(), name="health-ready"),
    path("ops/backpressure", ops_apis.BackpressureApi.as_view(), name="ops-backpressure"),
    path("market/bars", market_apis.BarsIngestApi.as_view(), name="market-bars"),
    path("market/bars/<str:key>", market_apis.BarsReadApi.as_view(), name="market-bars-read"),
    path("signals/", include("greeks.urls")),
    path("signals/", include("timeframes.urls")),
    path("signals/", include("moneyness.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("", live_page, name="live"),
    path("api/v2/", include(api_v2)),
    path("metrics", ops_apis.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
]

handler400 = "signalsvc.api.errors.handler400"
handler403 = "signalsvc.api.errors.handler403"
handler404 = "signalsvc.api.errors.handler404"
handler500 = "signalsvc.api.errors.handler500"
