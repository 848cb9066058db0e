"""Shard ownership (SPEC §11): each ``greeks.<shard>`` queue is consumed by one live worker.

Every worker runs :class:`FarmMember` in a thread of its main process. Once per
``FARM_HEARTBEAT_SECONDS`` it:

1. writes a heartbeat to ``farm:workers`` with the shard queues it consumes right now;
2. takes or renews the coordinator lease (``farm:coordinator``, ``FARM_COORDINATOR_LEASE_SECONDS``);
   the worker holding it computes the assignment of shards to the live workers (rendezvous
   hashing with bounded loads, :mod:`signalsvc.farm.core.sharding`), stores it in ``farm:owners``
   and sends Celery's own ``add_consumer``/``cancel_consumer`` control commands to every worker
   whose queues differ from it. Control messages are fire-and-forget, so the coordinator
   reconciles from what the workers report, and resends what has not taken effect;
3. steals: when it is idle, it also consumes a shard whose oldest task has waited more than
   ``STEAL_AFTER_SECONDS``, and lets go once that shard's backlog is clear. Safe because chain
   writes are timestamp-guarded and idempotent.

A worker silent for ``FARM_WORKER_TTL_SECONDS`` is dead: its shards go to the others at the next
reconcile, and the tasks it had taken but not acknowledged go back to the head of their queues
at once (:func:`unacked_restore`) rather than after the broker's visibility timeout (minutes). A coordinator that dies loses its lease within ``FARM_COORDINATOR_LEASE_SECONDS`` and
another worker takes over, so a shard is never without an owner for longer than about
TTL + lease + a heartbeat (11 s with the defaults; the issue asks for 15).

Redis keys (read by ops, metrics and scripts):
- ``farm:workers``: hash, worker name -> JSON {"seen": epoch seconds, "queues": [shard queues it
  consumes now], "stolen": [those it consumes as a thief], "busy": bool, "tags": [delivery tags
  of the tasks it holds], "pid", "host"}, and "reaped": true once found dead and handled;
- ``farm:owners``: hash, shard number -> worker name (the coordinator's assignment);
- ``farm:coordinator``: the name of the worker holding the lease.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

import redis
from celery import bootsteps

from signalsvc.farm.core.sharding import shard_assignment
from signalsvc.farm.queues import UNACKED_KEY, broker_client, queue_depths
from signalsvc.farm.routing import shard_of_queue, shard_queue, shard_queues

log = logging.getLogger(__name__)

WORKERS_KEY = "farm:workers"
OWNERS_KEY = "farm:owners"
COORDINATOR_KEY = "farm:coordinator"
# A command not yet reflected in the target's heartbeat is sent again after this long.
RESEND_AFTER_SECONDS = 3.0
# Heartbeats of workers gone this many TTLs are deleted (kept a while for `status`).
FORGET_AFTER_TTLS = 12

# Take the lease when free, renew it when held: one atomic step.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
            live[_text(name)] = info
    return live


def owners_read(client: redis.Redis) -> dict[int, str]:
    """The coordinator's current assignment: shard -> worker name."""
    return {int(shard): _text(name) for shard, name in client.hgetall(OWNERS_KEY).items()}


UNACKED_INDEX_KEY = "unacked_index"
# Put a message back only if it is still unacknowledged (the worker may have acked it after all).
_RESTORE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('RPUSH', KEYS[3], ARGV[2])
  return 1
end
return 0
"""


def unacked_restore(client: redis.Redis, tags: list[str]) -> int:
    """Put unacknowledged messages back at the head of their queues (kombu BRPOPs from the
    right, so RPUSH makes them next), marked redelivered, as kombu itself does after its
    visibility timeout. Returns how many were restored."""
    restore = client.register_script(_RESTORE)
    restored = 0
    for tag in tags:
        raw = client.hget(UNACKED_KEY, tag)
        if raw is None:
            continue
        try:
            payload, _exchange, routing_key = json.loads(raw)
            payload.setdefault("headers", {})["redelivered"] = True
            payload.get("properties", {}).get("delivery_info", {})["redelivered"] = True
        except (ValueError, TypeError, AttributeError):
            log.warning("farm: unreadable unacked message %s left to the visibility timeout", tag)
            continue
        # Our queues are declared with routing key == queue name, and tasks carry no priority.
        restored += restore(
            keys=[UNACKED_KEY, UNACKED_INDEX_KEY, routing_key], args=[tag, json.dumps(payload)]
        )
    return restored


class Coordinator:
    """The reconcile step of the worker holding the lease. ``control`` is the Celery app's
    ``control`` (``add_consumer``/``cancel_consumer``); tests may pass a recorder."""

    def __init__(
        self, client: redis.Redis, control, *, shard_count: int, ttl: float, heartbeat: float = 1.0
    ) -> None:
        self.client = client
        self.control = control
        self.shard_count = shard_count
        self.ttl = ttl
        self.heartbeat = heartbeat
        self._sent: dict[tuple[str, str, str], float] = {}

    def reconcile(self, *, now: float | None = None) -> dict[int, str]:
        now = time.time() if now is None else now
        self._reap_dead(now)
        live = workers_read(self.client, ttl=self.ttl, now=now)
        assignment = shard_assignment(range(self.shard_count), live)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(OWNERS_KEY)
        if assignment:
            pipe.hset(OWNERS_KEY, mapping={str(s): w for s, w in assignment.items()})
        pipe.execute()
        wanted: dict[str, set[str]] = {w: set() for w in live}
        for shard, worker in assignment.items():
            wanted[worker].add(shard_queue(shard))
        for worker, info in live.items():
            consuming = set(info.get("queues", []))
            stolen = set(info.get("stolen", []))
            for queue in sorted(wanted[worker] - consuming):
                self._send("add", worker, queue, now)
            # A thief keeps what it stole until the backlog clears (it lets go itself).
            for queue in sorted(consuming - wanted[worker] - stolen):
                self._send("cancel", worker, queue, now)
        return assignment

    def _send(self, action: str, worker: str, queue: str, now: float) -> None:
        key = (action, worker, queue)
        if now - self._sent.get(key, 0.0) < RESEND_AFTER_SECONDS:
            return
        self._sent[key] = now
        log.info("farm: %s_consumer %s on %s", action, queue, worker)
        if action == "add":
            self.control.add_consumer(queue, destination=[worker], reply=False)
        else:
            self.control.cancel_consumer(queue, destination=[worker], reply=False)

    def _reap_dead(self, now: float) -> None:
        """Workers silent past the TTL: put back the tasks they held, once; forget them later."""
        heartbeats: dict[bytes, dict] = {}
        for name, raw in self.client.hgetall(WORKERS_KEY).items():
            try:
                heartbeats[name] = dict(json.loads(raw))
                float(heartbeats[name].get("seen", 0))
            except (ValueError, TypeError, AttributeError):
                heartbeats.pop(name, None)
                self.client.hdel(WORKERS_KEY, name)
        dead = {n: i for n, i in heartbeats.items() if now - float(i.get("seen", 0)) > self.ttl}
        if not any(not i.get("reaped") for i in dead.values()):
            return
        live_tags = {t for n, i in heartbeats.items() if n not in dead for t in i.get("tags", [])}
        for name, info in dead.items():
            silent = now - float(info.get("seen", 0))
            if silent > self.ttl * FORGET_AFTER_TTLS:
                self.client.hdel(WORKERS_KEY, name)
            elif not info.get("reaped"):
                tags = set(info.get("tags", [])) | self._unreported(
                    set(info.get("queues", [])), live_tags, now
                )
                restored = unacked_restore(self.client, sorted(tags))
                log.warning(
                    "farm: %s is dead (silent %.1f s); %d held task(s) requeued",
                    _text(name),
                    silent,
                    restored,
                )
                self.client.hset(WORKERS_KEY, name, json.dumps(info | {"reaped": True}))

    def _unreported(self, queues: set[str], live_tags: set[str], now: float) -> set[str]:
        """Unacknowledged tasks of a dead worker's shard queues that it took after its last
        heartbeat. Its shards had no other consumer (thieves report what they hold every
        heartbeat), so such a task, delivered before the live workers last reported and held by
        none of them, was the dead worker's."""
        if not queues:
            return set()
        settled = now - 2 * self.heartbeat
        # Delivered before the live workers last reported: one range read of the delivery index.
        early = {_text(t) for t in self.client.zrangebyscore(UNACKED_INDEX_KEY, "-inf", f"({settled}")}
        candidates = sorted(early - live_tags)
        found = set()
        for tag, raw in zip(
            candidates, self.client.hmget(UNACKED_KEY, candidates) if candidates else [], strict=True
        ):
            try:
                routing_key = json.loads(raw)[2]
            except (ValueError, IndexError, TypeError):
                continue
            if routing_key in queues:
                found.add(tag)
        return found


class FarmMember:
    """One worker's part in the farm: heartbeat, lease, reconcile when coordinator, stealing.

    ``consumer`` is the Celery worker's consumer (its ``task_consumer`` tells which queues it
    reads); ``held_tags()`` returns the delivery tags of the tasks it has running or reserved
    (none: the worker is idle)."""

    def __init__(self, *, name: str, app, consumer, client: redis.Redis, settings, held_tags) -> None:
        self.name = name
        self.app = app
        self.consumer = consumer
        self.client = client
        self.held_tags = held_tags
        self.interval = settings.FARM_HEARTBEAT_SECONDS
        self.ttl = settings.FARM_WORKER_TTL_SECONDS
        self.lease_ms = int(settings.FARM_COORDINATOR_LEASE_SECONDS * 1000)
        self.steal_after = settings.STEAL_AFTER_SECONDS
        self.shard_count = settings.SHARD_COUNT
        self.coordinator = Coordinator(
            client, app.control, shard_count=self.shard_count, ttl=self.ttl, heartbeat=self.interval
        )
        self.stolen: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lease = client.register_script(_LEASE)
        self._release = client.register_script(_RELEASE)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._retire_previous_process()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="farm-member", daemon=True)
            self._thread.start()

    def _retire_previous_process(self) -> None:
        """A worker restarted under its old name (a supervisor's restart keeps the host name) finds
        the heartbeat of the process before it. That process left without deregistering (a clean
        stop deletes it), so it died: its heartbeat is kept under ``<name>#<pid>``, where the
        coordinator reaps it as any dead worker and requeues the tasks it held. Overwritten by this
        process's first heartbeat instead, those tasks would wait for the broker's visibility
        timeout (10 min) and expire first."""
        try:
            raw = self.client.hget(WORKERS_KEY, self.name)
            if raw is None:
                return
            info = json.loads(raw)
            if info.get("reaped") or (info.get("pid"), info.get("host")) == (
                os.getpid(),
                socket.gethostname(),
            ):
                return
            self.client.hset(WORKERS_KEY, f"{self.name}#{info.get('pid')}", raw)
            log.warning("farm: %s restarted; its previous process (pid %s) died", self.name, info.get("pid"))
        except (redis.RedisError, ValueError, TypeError, AttributeError) as exc:
            log.warning("farm: previous heartbeat of %s not checked: %s", self.name, exc)

    def stop(self) -> None:
        """Leave the farm at once: the next reconcile hands this worker's shards to the others."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval * 3)
        try:
            self.client.hdel(WORKERS_KEY, self.name)
            self._release(keys=[COORDINATOR_KEY], args=[self.name])
        except redis.RedisError:
            log.warning("farm: could not deregister %s", self.name)

    def consuming(self) -> list[str]:
        queues = getattr(self.consumer.task_consumer, "queues", None) or []
        return sorted(q.name for q in queues if shard_of_queue(q.name) is not None)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except redis.RedisError as exc:
                # Redis down: the worker keeps what it consumes; ownership resumes with Redis.
                log.warning("farm: heartbeat failed: %s", exc)
            except Exception:
                log.exception("farm: heartbeat step failed")
            self._stop.wait(self.interval)

    def step(self, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        consuming = self.consuming()
        tags = sorted(self.held_tags())
        busy = bool(tags)
        self.stolen &= set(consuming)
        if self.stolen:
            # A shard the coordinator has since given to this worker is its own now, not stolen: it
            # must not be let go when its backlog clears.
            mine = {shard_queue(s) for s, w in owners_read(self.client).items() if w == self.name}
            self.stolen -= mine
        info = {
            "seen": now, "queues": consuming, "stolen": sorted(self.stolen), "busy": busy, "tags": tags,
            "pid": os.getpid(), "host": socket.gethostname(),
        }  # fmt: skip
        self.client.hset(WORKERS_KEY, self.name, json.dumps(info))
        if self._lease(keys=[COORDINATOR_KEY], args=[self.name, self.lease_ms]):
            self.coordinator.reconcile(now=now)
        self._steal_or_release(consuming, busy, now)

    def _steal_or_release(self, consuming: list[str], busy: bool, now: float) -> None:
        if not self.stolen and busy:
            return
        own = set(consuming) - self.stolen
        candidates = [q for q in shard_queues(self.shard_count) if q not in own]
        depths = queue_depths(self.client, candidates, now=now)
        for queue in sorted(self.stolen):
            if depths[queue].ready == 0:
                log.info("farm: %s lets go of stolen %s (backlog clear)", self.name, queue)
                self.app.control.cancel_consumer(queue, destination=[self.name], reply=False)
                self.stolen.discard(queue)
        if busy:
            return
        stale = [
            d
            for d in depths.values()
            if d.ready and d.oldest_age > self.steal_after and d.queue not in self.stolen
        ]
        if stale:
            oldest = max(stale, key=lambda d: d.oldest_age)
            log.info("farm: %s steals %s (oldest task %.1f s)", self.name, oldest.queue, oldest.oldest_age)
            self.stolen.add(oldest.queue)
            self.app.control.add_consumer(oldest.queue, destination=[self.name], reply=False)


def _held_tags(state) -> list[str]:
    requests = [*state.active_requests, *state.reserved_requests]
    return [tag for r in requests if (tag := getattr(r.message, "delivery_tag", None))]


class FarmStep(bootsteps.StartStopStep):
    """Consumer bootstep: joins the worker to the farm when its consumer starts, leaves on stop.

    Enabled by the worker option ``--farm`` (scripts/start-worker.sh, compose): a plain worker
    started by hand consumes only what ``-Q`` says."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, farm: bool = False, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.enabled = bool(farm)
        self.member: FarmMember | None = None

    def start(self, parent) -> None:
        from celery.worker import state
        from django.conf import settings

        if self.member is None:
            self.member = FarmMember(
                name=parent.hostname,
                app=parent.app,
                consumer=parent,
                client=broker_client(),
                settings=settings,
                held_tags=lambda: _held_tags(state),
            )
        self.member.start()

    def shutdown(self, parent) -> None:
        if self.member is not None:
            self.member.stop()
