"""Queue names and routing (SPEC §11).

A chain task's queue is the shard of its underlying: crc32 modulo ``SHARD_COUNT`` (stable across
processes and Python versions, unlike ``hash()``), so one chain always lands on one queue and, with
shard ownership, on one worker. Every queue is declared; Celery never creates one on the fly
(``task_create_missing_queues`` is off), so a mistyped queue is an error, not a queue nobody reads.
"""

from __future__ import annotations

import zlib

QUEUE_DEFAULT = "default"
QUEUE_INGEST = "ingest"
QUEUE_TIMEFRAMES = "timeframes"
# The farm workers' queue beside their shards: the periodic tasks that take milliseconds.
FARM_QUEUES = (QUEUE_DEFAULT,)
# Work that can hold a worker for seconds (a rollup over a backlog, partition DDL) has its own lane,
# the batch worker: on a farm worker, a chain's live computation waited behind it (a 1 s rollup made
# a 2.3 s gap in the live cadence on a loaded machine).
BATCH_QUEUES = (QUEUE_INGEST, QUEUE_TIMEFRAMES)
GENERAL_QUEUES = (*FARM_QUEUES, *BATCH_QUEUES)
GREEKS_QUEUE_PREFIX = "greeks"


def shard_for(underlying: str, shard_count: int) -> int:
    return zlib.crc32(underlying.encode()) % shard_count


def shard_queue(shard: int) -> str:
    return f"{GREEKS_QUEUE_PREFIX}.{shard}"


def greeks_queue(underlying: str, shard_count: int) -> str:
    return shard_queue(shard_for(underlying, shard_count))


def shard_queues(shard_count: int) -> list[str]:
    return [shard_queue(s) for s in range(shard_count)]


def shard_of_queue(queue: str) -> int | None:
    """The shard number of a ``greeks.<n>`` queue, None for any other queue."""
    prefix, _, number = queue.partition(".")
    return int(number) if prefix == GREEKS_QUEUE_PREFIX and number.isdigit() else None


def all_queues(shard_count: int) -> list[str]:
    return [*GENERAL_QUEUES, *shard_queues(shard_count)]


def farm_queues(shard_count: int) -> list[str]:
    """What the farm workers consume, and so what sizes the farm: everything but the batch lane."""
    return [*FARM_QUEUES, *shard_queues(shard_count)]
