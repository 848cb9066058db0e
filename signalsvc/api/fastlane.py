"""The fast lane of the hottest reads (issue 9): realtime Greeks, moneyness and indicators and the
Greeks batch answered without Django's middleware stack and DRF's request cycle, by the same
functions their views call.

Measured on the 2-core machine through nginx and granian, the full stack spent ~0.7 ms of CPU on a
realtime Greeks request whose own work (a cached key lookup, the rate limit's Lua call and one
HGET) is a small part of that; the fast lane serves the same bytes for ~0.26 ms (docs/decisions.md
"Serving").

It takes only the plain success path and hands everything else to Django untouched, so errors keep
their one shape and status by construction:

* the route: a GET of a view that declares ``fast_get`` (a function of the query and the path's
  arguments returning the response body) or a POST of a JSON body to a view that declares
  ``fast_post`` (a function of the parsed body), resolved by Django's own URLconf (cached per path);
* the client: an ``X-API-Key`` that authenticates (the same cached lookup as
  ``ApiKeyAuthentication``), no ``Origin`` (CORS answers are the middleware's), an ``Accept`` that
  JSON satisfies, and no HTTPS redirect due;
* the rate limit: the same per-key call as ``TierRateThrottle``. A refusal goes to Django
  uncounted, where the throttle refuses it with the 429 and Retry-After. A request counted here and
  then handed over (its body raised an ``ApiError``, Redis failed) is marked in its environ, and the
  throttle does not count it twice;
* the answer: the body with the headers Django's stack would add (``response_headers``; a test
  compares both paths header by header), recorded in the same metrics.

``API_FAST_LANE=false`` turns it off (every request through Django).
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import orjson
from corsheaders.conf import conf as cors
from django.conf import settings
from django.http import QueryDict
from django.urls import Resolver404, resolve

from signalsvc.accounts.selectors import api_key_for
from signalsvc.accounts.services import api_key_touch
from signalsvc.accounts.throttling import COUNTED_ENVIRON_KEY, key_rate_limit_hit
from signalsvc.ops.metrics import request_record

log = logging.getLogger(__name__)


class NotOnFastLane(Exception):
    """Raised by a ``fast_get``/``fast_post`` for a request its view must answer (e.g. realtime Greeks'
    refresh)."""


# Accept headers every client library sends for JSON (or none): anything else is negotiated by DRF.
_ACCEPTED = frozenset(
    ("", "*/*", "application/json", "application/json, */*", "application/json, text/plain, */*")
)


@dataclass(frozen=True)
class _Route:
    handler: Callable[..., bytes]  # the view's fast_get(query, **kwargs) or fast_post(data)
    kwargs: dict
    endpoint: str  # the URL pattern, as the metrics name it
    allow: str  # DRF's Allow header of the view


@lru_cache(maxsize=4096)
def _route(method: str, path: str) -> _Route | None:
    """How the fast lane answers ``method path``: the view's ``fast_get``/``fast_post``, resolved by
    Django's own URLconf; None when the view has none. Cached: the hot paths repeat, and resolution
    is deterministic."""
    try:
        match = resolve(path)
    except Resolver404:
        return None
    view = getattr(match.func, "view_class", None)
    handler = getattr(view, f"fast_{method.lower()}", None)
    if handler is None:
        return None
    # As DRF computes it for an instance (Django's view setup adds HEAD wherever there is GET).
    methods = [
        m.upper()
        for m in view.http_method_names
        if hasattr(view, m) or (m == "head" and hasattr(view, "get"))
    ]
    return _Route(handler, match.kwargs, match.route, ", ".join(methods))


def response_headers(*, path: str, allow: str, secure: bool, length: int) -> list[tuple[str, str]]:
    """The headers Django's stack puts on a JSON 200 of a DRF view (one renderer: no Vary on
    Accept): DRF's Allow, the CORS middleware's Vary on the API's paths, the security middleware's
    and X-Frame-Options' (HSTS on HTTPS when configured)."""
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(length)),
        ("Allow", allow),
        ("X-Frame-Options", settings.X_FRAME_OPTIONS),
    ]
    if not cors.CORS_ALLOW_ALL_ORIGINS and re.match(cors.CORS_URLS_REGEX, path):
        headers.append(("Vary", "origin"))
    if settings.SECURE_HSTS_SECONDS and secure:
        sts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            sts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            sts += "; preload"
        headers.append(("Strict-Transport-Security", sts))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        headers.append(("Referrer-Policy", policy if isinstance(policy, str) else ",".join(policy)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    return headers


def _secure(environ) -> bool:
    header = settings.SECURE_PROXY_SSL_HEADER
    if header is not None:
        name, value = header
        return environ.get(name, "").split(",")[0].strip() == value
    return environ.get("wsgi.url_scheme") == "https"


def _json_body(environ) -> object:
    """A POST's JSON body, parsed; the stream is replaced by the bytes read, so that Django can still
    read them when the request is handed over. Raises when it is not a JSON body within the limit."""
    if environ.get("CONTENT_TYPE", "").split(";")[0].strip() != "application/json":
        raise NotOnFastLane("not JSON")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if not 0 < length <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        raise NotOnFastLane("size")
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return orjson.loads(body)


class FastLane:
    """WSGI middleware in front of Django's handler (signalsvc/wsgi.py)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        answer = self._answer(environ)
        if answer is None:
            return self.app(environ, start_response)
        headers, body = answer
        start_response("200 OK", headers)
        return [body]

    def _answer(self, environ) -> tuple[list, bytes] | None:
        """The headers and body of the success, or None for Django to answer."""
        raw = environ.get("HTTP_X_API_KEY")
        method = environ.get("REQUEST_METHOD")
        if (
            not raw
            or method not in ("GET", "POST")
            or "HTTP_ORIGIN" in environ
            or environ.get("HTTP_ACCEPT", "") not in _ACCEPTED
        ):
            return None
        path = environ.get("PATH_INFO", "")
        route = _route(method, path)
        if route is None:
            return None
        secure = _secure(environ)
        if settings.SECURE_SSL_REDIRECT and not secure:
            return None  # the security middleware redirects (probes are not on these routes)
        started = time.perf_counter()
        try:
            if method == "POST":
                data = _json_body(environ)
            key = api_key_for(raw_key=raw)
            if key is None:
                return None
            api_key_touch(key=key)
            if not key_rate_limit_hit(key):
                return None
            environ[COUNTED_ENVIRON_KEY] = True
            if method == "POST":
                body = route.handler(data)
            else:
                body = route.handler(QueryDict(environ.get("QUERY_STRING", "")), **route.kwargs)
        except Exception:
            return None
        request_record(
            method=method,
            endpoint=route.endpoint,
            status=200,
            seconds=time.perf_counter() - started,
            api_key=key.prefix,
        )
        return response_headers(path=path, allow=route.allow, secure=secure, length=len(body)), body
