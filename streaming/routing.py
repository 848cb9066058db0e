from django.urls import path

from streaming.consumers import SignalConsumer

websocket_urlpatterns = [
    path("api/v2/signals/subscriptions/websocket", SignalConsumer.as_asgi()),
]
