"""The WSGI application of the REST server (granian, or gunicorn: scripts/start-web.sh): Django's
handler behind the fast lane of the hottest reads (signalsvc/api/fastlane.py)."""

import datetime as dt
import io
import os
import sys

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from signalsvc.core.processes import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signalsvc.settings")


def local_environ(path: str, *, query: str = "", body: bytes | None = None) -> dict:
    """The WSGI environ of a GET (a POST of ``body``) from this host: the warm-up's, and the tests'
    that call the application directly."""
    environ = {
        "REQUEST_METHOD": "GET" if body is None else "POST",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "HTTP_HOST": "localhost",
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body or b""),
        "wsgi.errors": sys.stderr,
    }
    if body is not None:
        environ.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)))
    return environ


def _warm(app) -> None:
    """Answer one liveness request before the server hands this worker any: the first request of a
    process imports every view through the URLconf (~0.6 s of CPU, seconds when all the workers of a
    fresh server do it at once under load), which clients would otherwise wait for."""
    b"".join(app(local_environ("/api/v2/health/live"), lambda status, headers, exc_info=None: None))
    _load_market_calendar()


def _load_market_calendar() -> None:
    """Build the market calendar's sessions of this year and the last one. Every historical read
    buckets by session, and the NSE calendar imports pandas_market_calendars (and exchange_calendars,
    161 modules) on first use: without this, each worker's first historical request paid ~0.3 s for
    it and the worker's memory stepped up by ~5 MB at some moment of its life instead of at start."""
    from timeframes.selectors import market_calendar  # after Django's set-up

    now = dt.datetime.now(dt.UTC)
    market_calendar().sessions_overlapping(now - dt.timedelta(days=366), now + dt.timedelta(days=7))


application = get_wsgi_application()
if settings.API_FAST_LANE:
    from signalsvc.api.fastlane import FastLane

    application = FastLane(application)

if os.environ.get("WEB_SERVER_WORKER") == "1":  # loaded by a REST server's worker (scripts/start-web.sh)
    _warm(application)
    freeze_startup_objects()  # every view is imported now: what is alive stays for the process's life
