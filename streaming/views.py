from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_safe


@require_safe
def live_page(request):
    """The demo a new user opens first: NIFTY's ATM Greeks, ATM IV and smile, live over the
    WebSocket (static/streaming/live.js), with links to the API docs, admin and Flower."""
    return render(
        request,
        "streaming/live.html",
        {"flower_url": settings.FLOWER_URL, "heartbeat": settings.WEBSOCKET_HEARTBEAT_INTERVAL},
    )
