"""WEBSOCKET_MAX_MESSAGE_BYTES counts bytes, not characters (found by tests/fuzz/test_websocket_fuzz.py:
a 7,000-byte message of 2-byte characters was under the limit of 4,096 because it has 3,500
characters)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from tests.streaming.conftest import connect, receive, send

pytestmark = pytest.mark.django_db(transaction=True)


def _ping(chars: int, char: str) -> str:
    return '{"type":"ping","pad":"' + char * chars + '"}'


@pytest.mark.parametrize(
    ("message", "answer"),
    [
        (_ping(3500, "é"), "message_too_large"),  # 3,524 characters, 7,024 bytes
        (_ping(1400, "€"), "message_too_large"),  # 1,424 characters, 4,224 bytes
        (_ping(1020, "𝄞"), "message_too_large"),  # 1,044 characters, 4,104 bytes
        (_ping(1000, "é"), "pong"),  # 2,024 bytes
        (_ping(4096 - 24, "x"), "pong"),  # exactly the limit
    ],
    ids=["2-byte", "3-byte", "4-byte", "under", "ascii-at-limit"],
)
def test_the_message_limit_is_in_utf8_bytes(db, message, answer):
    async def scenario():
        ws = await connect()
        await receive(ws)
        await send(ws, message)
        reply = await receive(ws)
        await ws.disconnect()
        return reply

    reply = async_to_sync(scenario)()
    assert reply.get("code", reply["type"]) == answer, reply
