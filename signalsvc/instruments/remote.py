"""The instrument service, when ``INSTRUMENT_SERVICE_URL`` is set: one client per process (so
its circuit breaker sees every call of the process)."""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from signalsvc.core.keys import InstrumentSpec
from signalsvc.instruments.client import InstrumentServiceClient, InstrumentServiceError

log = logging.getLogger(__name__)
_client: InstrumentServiceClient | None = None
_client_url: str | None = None
_lock = threading.Lock()


def instrument_service() -> InstrumentServiceClient | None:
    global _client, _client_url
    url = settings.INSTRUMENT_SERVICE_URL
    if not url:
        return None
    with _lock:
        if _client is None or _client_url != url:
            timeout = settings.INSTRUMENT_SERVICE_TIMEOUT
            _client, _client_url = InstrumentServiceClient(url, timeout=(min(timeout, 3.05), timeout)), url
        return _client


def remote_instrument(key: str) -> InstrumentSpec | None:
    """Ask the instrument service for one key. An unreachable service is logged and treated as
    'not found here' (the caller answers 404), never as an invented instrument."""
    client = instrument_service()
    if client is None:
        return None
    try:
        return client.get_instrument(key)
    except InstrumentServiceError as exc:
        log.warning("instrument service lookup of %s failed: %s", key, exc)
        return None
