"""WebSocket tests through the real routing stack (signalsvc.asgi's application) with Channels'
WebsocketCommunicator. Each scenario runs under ``async_to_sync``, so the consumer's and the
hub's database work runs on the test's own thread and connection."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator

from greeks.services import chain_compute

PATH = "/api/v2/signals/subscriptions/websocket"
NIFTY = "NSE@NIFTY@equity_spot"
SEED_SUBSCRIBE = {
    "type": "subscribe",
    "channel": "moneyness",
    "instrument_key": "moneyness_greeks",
    "params": {"underlying": "NIFTY", "moneyness_level": "ATM"},
}


def application():
    from signalsvc.asgi import application

    return application


async def connect(query: str = "client_id=user123", headers: list | None = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application(), f"{PATH}?{query}", headers=headers or [])
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def receive(communicator: WebsocketCommunicator, timeout: float = 5) -> dict:
    return json.loads(await communicator.receive_from(timeout=timeout))


async def receive_until(communicator: WebsocketCommunicator, kind: str, timeout: float = 10) -> dict:
    """The next message of type ``kind`` (heartbeats and other types before it are skipped)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        message = await receive(communicator, max(0.1, deadline - asyncio.get_running_loop().time()))
        if message["type"] == kind:
            return message


async def send(communicator: WebsocketCommunicator, message) -> None:
    await communicator.send_to(text_data=message if isinstance(message, str) else json.dumps(message))


@pytest.fixture
def live(demo_market, redis_client):
    """The demo market with its chains computed (moneyness and Greeks published)."""
    for key in (NIFTY, "NSE@BANKNIFTY@equity_spot"):
        chain_compute(underlying_key=key, client=redis_client)
    return demo_market
