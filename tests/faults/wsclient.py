"""A WebSocket client in a thread that behaves as the README tells clients to: subscribe to the
seed's channel (NIFTY ATM moneyness), and when the connection closes, reconnect after a second and
subscribe again. It records every message with its receipt time, and every connection."""

from __future__ import annotations

import json
import threading
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

SEED_SUBSCRIBE = {
    "type": "subscribe",
    "channel": "moneyness",
    "instrument_key": "moneyness_greeks",
    "params": {"underlying": "NIFTY", "moneyness_level": "ATM"},
}


class ReconnectingClient:
    def __init__(self, url: str, *, client_id: str = "faults") -> None:
        self.url = f"{url}?client_id={client_id}"
        self.messages: list[tuple[float, dict]] = []
        self.connections: list[float] = []  # when each connection opened
        self.closes: list[tuple[float, int | None]] = []  # when and with which code each closed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-ws", daemon=True)
        self._ws = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None:
            ws.close()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with connect(self.url, open_timeout=5, close_timeout=2) as ws:
                    self._ws = ws
                    self.connections.append(time.time())
                    ws.send(json.dumps(SEED_SUBSCRIBE))
                    while not self._stop.is_set():
                        try:
                            raw = ws.recv(timeout=1)
                        except TimeoutError:
                            continue
                        self.messages.append((time.time(), json.loads(raw)))
            except ConnectionClosed as exc:
                self.closes.append((time.time(), exc.rcvd.code if exc.rcvd else None))
            except (OSError, TimeoutError) as exc:  # refused while the server is away: retry
                self.closes.append((time.time(), None))
                del exc
            self._ws = None
            self._stop.wait(1)

    def data_after(self, moment: float) -> list[dict]:
        return [m for t, m in list(self.messages) if t > moment and m.get("type") == "data"]

    def types(self) -> list[str]:
        return [m.get("type") for _, m in list(self.messages)]
