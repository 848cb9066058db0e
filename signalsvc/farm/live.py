"""Live Greeks (SPEC §11): a chain whose ticks changed is recomputed every ``GREEKS_LIVE_INTERVAL``.

* The ingest tells :class:`LiveCadence` which underlyings' ticks it stored; at most once per
  interval per underlying (stretched by :func:`signalsvc.farm.backpressure.cadence_factor` under
  pressure) it asks for a computation with :func:`chain_request`.
* :func:`chain_request` coalesces: a flag ``greeks:pending:<underlying>`` (set NX) means a chain
  task is queued, so at most one per underlying waits in the broker. The task clears the flag when
  it starts, so a change during a computation queues exactly one more.
* The task marks itself running (``greeks:running:<underlying>``), and when it ends, however it
  ends, counts the computation in ``greeks:computations`` (underlying -> count) and adds each
  stage's seconds to ``farm:chain:stages``.
* ``?refresh=true`` (:func:`chain_refresh`) joins the computation queued or running, or requests
  one, then waits for the count to move: twenty concurrent refreshes cost one computation.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable

import redis
from django.conf import settings

from signalsvc.core.keys import parse_key

log = logging.getLogger(__name__)

CHAIN_TASK = "greeks.tasks.chain_compute"
PENDING_PREFIX = "greeks:pending:"
RUNNING_PREFIX = "greeks:running:"
COMPUTATIONS_KEY = "greeks:computations"
FINISHED_KEY = "greeks:finished"  # underlying -> when its last computation ended (epoch seconds)
STAGES_KEY = "farm:chain:stages"
# A live computation that has not started within this many seconds is stale: dropped (Celery's
# expiry), and the next tick change queues a fresh one.
LIVE_EXPIRES_SECONDS = 30.0
RUNNING_TTL_SECONDS = 120
REFRESH_POLL_SECONDS = 0.02
# Which underlyings have options is re-read this often by the ingest (a new listing shows up).
UNDERLYINGS_TTL_SECONDS = 60.0


def chain_request(client: redis.Redis, underlying_key: str, *, expires: float = LIVE_EXPIRES_SECONDS) -> bool:
    """Queue one computation of the chain unless one is queued already. True when queued."""
    pending = PENDING_PREFIX + underlying_key
    if not client.set(pending, 1, nx=True, ex=math.ceil(expires) + 5):
        return False
    try:
        from signalsvc.celery import app

        app.send_task(CHAIN_TASK, args=[underlying_key], expires=expires)
    except Exception:
        client.delete(pending)
        raise
    return True


def pending_release_if_expired(request=None, expired: bool = False, **_: object) -> None:
    """``task_revoked`` receiver: a chain task dropped for its expiry never ran, so nothing clears
    its pending flag; without this, no other request for that chain could be queued until the
    flag's own expiry (up to a minute)."""
    if not expired or request is None or getattr(request, "name", None) != CHAIN_TASK or not request.args:
        return
    from signalsvc.redis_clients import redis_client

    try:
        redis_client().delete(PENDING_PREFIX + request.args[0])
    except redis.RedisError as exc:
        log.warning("live cadence: pending flag of %s left to expire (%s)", request.args[0], exc)


def computations(client: redis.Redis, underlying_key: str) -> int:
    return int(client.hget(COMPUTATIONS_KEY, underlying_key) or 0)


class ChainRun:
    """The bookkeeping around one computation (a context manager): the pending flag cleared and
    the running mark set on entry (unless the caller already holds it), the count and the stage
    timings recorded on exit, however the computation ends."""

    def __init__(self, client: redis.Redis, underlying_key: str, *, holds_running: bool = False) -> None:
        self.client = client
        self.underlying_key = underlying_key
        self.holds_running = holds_running
        self.timings: dict[str, float] = {}

    def __enter__(self) -> ChainRun:
        pipe = self.client.pipeline(transaction=False)
        # From now on a newer change may queue the next computation.
        pipe.delete(PENDING_PREFIX + self.underlying_key)
        if not self.holds_running:
            pipe.set(RUNNING_PREFIX + self.underlying_key, 1, ex=RUNNING_TTL_SECONDS)
        pipe.execute()
        return self

    def __exit__(self, *exc) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(RUNNING_PREFIX + self.underlying_key)
        pipe.hincrby(COMPUTATIONS_KEY, self.underlying_key, 1)
        pipe.hset(FINISHED_KEY, self.underlying_key, time.time())
        if self.timings:
            pipe.hincrby(STAGES_KEY, "count", 1)
            for stage, seconds in self.timings.items():
                pipe.hincrbyfloat(STAGES_KEY, stage, seconds)
        pipe.execute()


class RefreshTimeout(Exception):
    pass


def chain_refresh(
    client: redis.Redis,
    underlying_key: str,
    *,
    compute,
    farm_alive: bool,
    timeout: float,
    requested_at: float | None = None,
) -> None:
    """Return once a computation of the chain has finished that was queued or running when the
    request arrived (``requested_at``, epoch seconds), or that finished after it arrived, or that
    this call requested. A request that waited in a server's backlog while a computation ran thus
    joins that one instead of starting another. With no live farm worker, the caller that requests
    it runs ``compute()`` itself, and concurrent callers join that one. :class:`RefreshTimeout`
    when none finished within ``timeout`` seconds."""
    finished = client.hget(FINISHED_KEY, underlying_key)
    if requested_at is not None and finished is not None and float(finished) >= requested_at:
        return
    before = computations(client, underlying_key)
    if farm_alive:
        if not client.exists(RUNNING_PREFIX + underlying_key):
            chain_request(client, underlying_key)
    # No farm: the running mark is the lock; the caller that takes it computes, the others wait.
    elif client.set(RUNNING_PREFIX + underlying_key, 1, nx=True, ex=RUNNING_TTL_SECONDS):
        with ChainRun(client, underlying_key, holds_running=True) as run:
            run.timings = compute() or {}
        return
    deadline = time.monotonic() + timeout
    while computations(client, underlying_key) == before:
        if time.monotonic() > deadline:
            raise RefreshTimeout(f"no computation of {underlying_key} finished within {timeout:g} s")
        time.sleep(REFRESH_POLL_SECONDS)


class LiveCadence:
    """The ingest's side: underlyings whose ticks changed, recomputed at most once per interval."""

    def __init__(self, client: redis.Redis, *, clock=time.monotonic) -> None:
        self.client = client
        self.clock = clock
        self.dirty: set[str] = set()
        self.requested_at: dict[str, float] = {}
        self._with_options: set[str] = set()
        self._with_options_at = float("-inf")

    @property
    def pending(self) -> bool:
        return bool(self.dirty)

    def changed(self, instrument_keys: Iterable[str]) -> None:
        self.dirty |= {parse_key(k).underlying_key for k in instrument_keys}

    def interval(self) -> float:
        from signalsvc.farm.backpressure import cadence_factor, current_level

        return settings.GREEKS_LIVE_INTERVAL * cadence_factor(current_level())

    def flush_due(self) -> int:
        """Request the computations that are due; returns how many were queued."""
        if not self.dirty or settings.GREEKS_LIVE_INTERVAL <= 0:
            return 0
        self.dirty &= self._underlyings_with_options()
        now, interval, queued = self.clock(), self.interval(), 0
        for underlying in sorted(self.dirty):
            if now - self.requested_at.get(underlying, float("-inf")) < interval:
                continue
            try:
                queued += chain_request(self.client, underlying)
            except Exception as exc:  # the broker or Redis is down: keep it dirty, try next round
                log.warning("live cadence: %s not requested (%s)", underlying, exc)
                break
            self.dirty.discard(underlying)
            self.requested_at[underlying] = now
        return queued

    def _underlyings_with_options(self) -> set[str]:
        if self.clock() - self._with_options_at > UNDERLYINGS_TTL_SECONDS:
            from signalsvc.instruments.selectors import underlyings_with_options

            self._with_options = set(underlyings_with_options())
            self._with_options_at = self.clock()
        return self._with_options
