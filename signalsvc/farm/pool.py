"""The in-worker pool autoscaler (SPEC §11): ``worker_autoscaler`` for ``celery worker --autoscale``.

Celery's own :class:`~celery.worker.autoscale.Autoscaler` sizes the pool from the requests the
worker has already fetched (``state.reserved_requests``), at most its prefetch window: it cannot
tell one task waiting on the broker from ten thousand, and it retires processes as soon as the
fetched ones are done even when the queue behind them is long. This one adds the ready messages of
every queue the worker consumes now (the consumer's live queue list, so queues added or cancelled by
shard ownership or work stealing count from the next check), read from the broker in one pipelined
round trip at most once per :data:`BACKLOG_REFRESH_SECONDS` unless the queues changed.

Load = reserved requests + ready messages of the consumed queues; the base class then grows the
pool to ``min(load, max)`` and, after ``keepalive`` seconds without a new task, shrinks it to
``max(load, min)``. A queue shared by several workers counts whole for each of them: every
consumer of a backlog grows toward its maximum, which is what clears it soonest.

Only workers started with ``--autoscale=MAX,MIN`` have a pool autoscaler. A shard-owning farm
worker runs one process so that a shard's chains stay in order (scripts/start-worker.sh); pool
autoscaling is for workers of the general queues (default, ingest, timeframes).
"""

from __future__ import annotations

import logging
from time import monotonic

import redis
from celery.worker import state
from celery.worker.autoscale import Autoscaler

from signalsvc.farm.queues import priority_keys
from signalsvc.redis_clients import client_for_url

logger = logging.getLogger(__name__)

# maybe_scale runs on every task message: the broker is read at most this often (seconds).
BACKLOG_REFRESH_SECONDS = 1.0


def ready_backlog(client: redis.Redis, queues: list[str]) -> int:
    """Messages waiting on the broker (every priority list) in ``queues``, in one round trip."""
    if not queues:
        return 0
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in priority_keys(queue):
            pipe.llen(key)
    return sum(int(n) for n in pipe.execute())


class BacklogAutoscaler(Autoscaler):
    """Pool autoscaler whose load is the worker's reserved requests plus its queues' backlog."""

    def __init__(self, *args, **kwargs):
        from django.conf import settings

        kwargs.setdefault("keepalive", settings.POOL_AUTOSCALE_KEEPALIVE_SECONDS)
        super().__init__(*args, **kwargs)
        self.backlog = 0
        self._backlog_read_at: float | None = None
        self._backlog_queues: list[str] = []

    def consumed_queues(self) -> list[str]:
        """The queues the worker's task consumer reads now (none before it has connected)."""
        task_consumer = getattr(getattr(self.worker, "consumer", None), "task_consumer", None)
        if task_consumer is None:
            return []
        return sorted({queue.name for queue in task_consumer.queues})

    def broker_backlog(self) -> int:
        """Ready messages of the consumed queues: read again once the last reading is
        :data:`BACKLOG_REFRESH_SECONDS` old, or at once when the queues changed (a queue just
        added may hold a backlog that the last reading never saw)."""
        now = monotonic()
        queues = self.consumed_queues()
        fresh = self._backlog_read_at is not None and now - self._backlog_read_at < BACKLOG_REFRESH_SECONDS
        if fresh and queues == self._backlog_queues:
            return self.backlog
        self._backlog_read_at, self._backlog_queues = now, queues
        try:
            # A short timeout: this runs on the worker's event loop.
            client = client_for_url(self.worker.app.conf.broker_url, socket_timeout=1.0)
            self.backlog = ready_backlog(client, queues)
        except redis.RedisError as exc:
            # The consumer itself is reconnecting when the broker cannot be read; until it can,
            # the pool follows the fetched tasks alone, as Celery's own autoscaler would.
            logger.warning("pool autoscaler: broker backlog unreadable (%s); using fetched tasks only", exc)
            self.backlog = 0
        return self.backlog

    @property
    def qty(self) -> int:
        return len(state.reserved_requests) + self.broker_backlog()

    def scale_up(self, n):
        logger.info(
            "pool autoscaler: %d fetched + %d waiting on the broker: %d -> %d processes",
            len(state.reserved_requests),
            self.backlog,
            self.processes,
            self.processes + n,
        )
        return super().scale_up(n)

    def info(self) -> dict:
        return {**super().info(), "backlog": self.backlog, "queues": self.consumed_queues()}
