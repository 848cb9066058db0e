import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signalsvc.settings")
# Web processes share a pool of PostgreSQL connections among their request threads (see
# DB_POOL_MAX_SIZE in settings); an explicit setting in the environment wins.
os.environ.setdefault("DB_POOL_MAX_SIZE", "20")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

# WebSocket routes arrive with streaming/ (SPEC §10).
application = ProtocolTypeRouter({"http": django_asgi_app})
