"""Bar-change events: the one signal that an instrument's 1-minute bars changed, at most once per
instrument per ``BAR_EVENT_INTERVAL_SECONDS`` (SPEC §10 `bars` channel; realtime indicators).

For each change the instrument's **bar version** ``bars:ver:{id}`` gets a new random token and
``signal:bars:{id}`` is published. Whatever is derived from bars (the realtime indicator values of
``timeframes.latest``, the streaming feeds) is stamped with the version read *before* its bars
were read: a stamp that differs from the current version is stale, and one computation per
version is shared by every reader (``signalsvc.redis_clients``: versions).

Live ticks change the open bar many times a second; the ingest announces the first change after
a quiet interval at once and coalesces the rest into one event when the interval has passed, so
the last change is always announced and values derived from bars lag the ticks by at most the
interval. Writes of whole bars (the bars API, CSV imports, corrections) are announced at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import orjson
import redis
from django.conf import settings

from signalsvc.redis_clients import version_get, version_new

VERSION_PREFIX = "bars:ver:"
CHANNEL_PREFIX = settings.PUBSUB_PREFIX + "signal:bars:"  # see settings.PUBSUB_PREFIX


def version_key(instrument_id: int) -> str:
    return f"{VERSION_PREFIX}{instrument_id}"


def _announce(client: redis.Redis, instrument_ids: Iterable[int]) -> None:
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for instrument_id in instrument_ids:
        token = version_new()
        pipe.set(version_key(instrument_id), token)
        pipe.publish(
            f"{CHANNEL_PREFIX}{instrument_id}",
            orjson.dumps({"instrument_id": instrument_id, "version": token.hex(), "changed_at": now}),
        )
    pipe.execute()


def bars_changed_now(client: redis.Redis, instrument_ids: Iterable[int]) -> None:
    """Announce changed bars at once (writes of whole bars: after their transaction commits)."""
    ids = sorted(set(instrument_ids))
    if ids:
        _announce(client, ids)


def bar_version(client: redis.Redis, instrument_id: int) -> bytes:
    """The current version of an instrument's bars."""
    return version_get(client, version_key(instrument_id))


class BarEvents:
    """The ingest's coalescing announcer (one per consumer process)."""

    def __init__(self, client: redis.Redis, *, interval: float | None = None):
        self.client = client
        self.interval = settings.BAR_EVENT_INTERVAL_SECONDS if interval is None else interval
        self._last_sent: dict[int, float] = {}
        self._dirty: set[int] = set()

    @property
    def pending(self) -> bool:
        return bool(self._dirty)

    def changed(self, instrument_ids: Iterable[int]) -> None:
        """Bars of these instruments changed (their transaction has committed)."""
        self._dirty.update(instrument_ids)
        self.flush_due()

    def flush_due(self, *, force: bool = False) -> int:
        """Announce every changed instrument whose last event is at least the interval old (all of
        them with ``force``). Returns how many were announced."""
        if not self._dirty:
            return 0
        now = time.monotonic()
        due = [i for i in self._dirty if force or now - self._last_sent.get(i, -1e18) >= self.interval]
        if not due:
            return 0
        _announce(self.client, due)
        for instrument_id in due:
            self._last_sent[instrument_id] = now
        self._dirty.difference_update(due)
        return len(due)
