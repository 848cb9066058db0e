"""Shard ownership (SPEC §11): which live worker consumes which ``greeks.<shard>`` queue.

Redis keys (read by ops, metrics and scripts):
- ``farm:workers``: hash, worker name -> JSON {"seen": epoch seconds, "queues": [shard queues it
  consumes now], "stolen": [shard queues it consumes as a thief], "busy": bool, "pid", "host"};
- ``farm:owners``: hash, shard number -> worker name (the coordinator's assignment).
"""

from __future__ import annotations

import json
import time

import redis

WORKERS_KEY = "farm:workers"
OWNERS_KEY = "farm:owners"


def workers_read(client: redis.Redis, *, ttl: float, now: float | None = None) -> dict[str, dict]:
    """The live workers (heartbeat within ``ttl`` seconds) and what each reported."""
    now = time.time() if now is None else now
    live = {}
    for name, raw in client.hgetall(WORKERS_KEY).items():
        try:
            info = json.loads(raw)
        except ValueError:
            continue
        if now - float(info.get("seen", 0)) <= ttl:
            live[name.decode() if isinstance(name, bytes) else name] = info
    return live


def owners_read(client: redis.Redis) -> dict[int, str]:
    """The coordinator's current assignment: shard -> worker name."""
    return {
        int(shard): (name.decode() if isinstance(name, bytes) else name)
        for shard, name in client.hgetall(OWNERS_KEY).items()
    }
