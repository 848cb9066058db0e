"""What is waiting on the broker, per queue: ready messages (every priority list of a Redis
queue), unacknowledged ones (delivered to a worker, not yet acked) and the age of the oldest.

Celery's own autoscaler and Flower see only what workers already fetched; the farm decides from
the broker itself. One pipelined round trip reads every queue. The oldest message of a Redis list
is at its right end (kombu LPUSHes and BRPOPs); its age comes from the ``sent_at`` header that
:func:`stamp_sent_at` adds to every task message at publish time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

from signalsvc.farm.routing import farm_queues

# kombu's Redis transport: a queue with priorities is one list per priority step, named
# "<queue>\x06\x16<step>" (step 0 is the bare name); delivered messages wait for their ack in the
# "unacked" hash as [message, exchange, routing_key].
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = "\x06\x16"
UNACKED_KEY = "unacked"
SENT_AT_HEADER = "sent_at"


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    ready: int  # waiting in the broker
    unacked: int  # delivered to a worker, not acknowledged yet (running or reserved)
    oldest_age: float  # seconds since the oldest ready message was published; 0 when none

    @property
    def total(self) -> int:
        return self.ready + self.unacked


def priority_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


def stamp_sent_at(headers: dict | None = None, **_: object) -> None:
    """``before_task_publish`` receiver: the publish time, so the oldest task's age can be read."""
    if headers is not None:
        headers.setdefault(SENT_AT_HEADER, time.time())


def _sent_at(raw: bytes | str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("headers", {}).get(SENT_AT_HEADER)
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def queue_depths(
    client: redis.Redis, queues: list[str], *, now: float | None = None
) -> dict[str, QueueDepth]:
    """Depth of each queue in ``queues``, read in one pipelined round trip."""
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in priority_keys(queue):
            pipe.llen(key)
            pipe.lindex(key, -1)
    pipe.hvals(UNACKED_KEY)
    replies = pipe.execute()
    unacked_raw = replies.pop()
    unacked: dict[str, int] = {}
    for raw in unacked_raw:
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError, TypeError):
            continue
        unacked[routing_key] = unacked.get(routing_key, 0) + 1
    depths: dict[str, QueueDepth] = {}
    per_queue = 2 * len(PRIORITY_STEPS)
    for index, queue in enumerate(queues):
        chunk = replies[index * per_queue : (index + 1) * per_queue]
        ready = sum(int(n) for n in chunk[0::2])
        stamps = [s for s in map(_sent_at, chunk[1::2]) if s is not None]
        oldest_age = max(0.0, now - min(stamps)) if stamps else 0.0
        depths[queue] = QueueDepth(queue, ready, unacked.get(queue, 0), oldest_age)
    return depths


def farm_depths(client: redis.Redis, shard_count: int) -> dict[str, QueueDepth]:
    """Depth of every queue the farm workers consume: ``default`` and every shard queue (not the
    batch lane's, which more farm workers would not drain)."""
    return queue_depths(client, farm_queues(shard_count))


def broker_client() -> redis.Redis:
    """The broker's Redis (``CELERY_BROKER_URL``; the same server as ``REDIS_URL`` by default),
    bytes in and out, from the shared per-process pool."""
    from django.conf import settings

    from signalsvc.redis_clients import client_for_url

    return client_for_url(settings.CELERY_BROKER_URL)
