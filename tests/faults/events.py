"""Every Celery task event of the private topology, recorded by a receiver thread in the test
process: ``task-sent`` (the publisher: ingest's live cadence, a beat-run ``schedule_chains``),
``task-started``, ``task-succeeded``, ``task-failed``, ``task-revoked`` (an expired task). The
settings turn on ``task_send_sent_event`` and worker events, so each task is counted by its id.

Events travel over Redis pub/sub: none are delivered while Redis is down (no task can be sent then
either); the receiver reconnects by itself."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from kombu import Connection


@dataclass(frozen=True)
class Event:
    type: str
    uuid: str
    name: str | None
    args: str | None
    hostname: str | None
    at: float  # when the sender sent it (epoch seconds, the event's own timestamp)
    expired: bool = False


class TaskEvents:
    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-events", daemon=True)
        self._receiver = None
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(10)

    def _handle(self, event: dict) -> None:
        if not event.get("type", "").startswith("task-"):
            return
        with self._lock:
            self.events.append(
                Event(
                    type=event["type"],
                    uuid=event.get("uuid", ""),
                    name=event.get("name"),
                    args=event.get("args"),
                    hostname=event.get("hostname"),
                    # The sender's clock (every process runs on this machine): receipt can lag.
                    at=float(event.get("timestamp") or time.time()),
                    expired=bool(event.get("expired")),
                )
            )

    def _run(self) -> None:
        from signalsvc.celery import app

        while not self._stop.is_set():
            try:
                with Connection(self.url, connect_timeout=2) as conn:
                    self._receiver = app.events.Receiver(conn, handlers={"*": self._handle})
                    self.connected.set()
                    self._receiver.capture(limit=None, timeout=None, wakeup=False)
            except Exception:  # Redis down (the outage test): reconnect until stopped
                self.connected.clear()
                time.sleep(0.5)

    def caught_up(self, moment: float) -> bool:
        """Whether an event sent at or after ``moment`` has been received: the receiver may lag
        (it shares the test process), and events arrive in order, so a window that ends before
        ``moment`` is then complete."""
        with self._lock:
            return any(e.at >= moment for e in reversed(self.events[-200:]))

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def tasks(self, name: str, *, sent_after: float, sent_before: float) -> dict[str, dict[str, list[Event]]]:
        """Tasks named ``name`` whose ``task-sent`` was received in the window: uuid -> type ->
        its events (all of them, whenever received)."""
        events = self.snapshot()
        sent = {
            e.uuid
            for e in events
            if e.type == "task-sent" and e.name == name and sent_after <= e.at < sent_before
        }
        out: dict[str, dict[str, list[Event]]] = {u: {} for u in sent}
        for e in events:
            if e.uuid in out:
                out[e.uuid].setdefault(e.type, []).append(e)
        return out
