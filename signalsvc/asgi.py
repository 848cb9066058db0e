import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signalsvc.settings")
# Web processes share a pool of PostgreSQL connections among their request threads (see
# DB_POOL_MAX_SIZE in settings); an explicit setting in the environment wins.
os.environ.setdefault("DB_POOL_MAX_SIZE", "20")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from streaming.routing import websocket_urlpatterns  # noqa: E402

# HTTP here serves whoever runs this app alone (daphne: REST too); in the standard topology REST
# goes to granian (WSGI) and only the WebSocket comes here (docs/decisions.md "Serving"). Origins and
# API keys are checked by the consumer itself (streaming/consumers.py), with error messages.
application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": URLRouter(websocket_urlpatterns)})
