"""Objects kept one per running event loop: one per process in a server (uvicorn, daphne), and a
fresh one for each loop that tests start and close."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    def __init__(self, factory: Callable[[], T], *, alive: Callable[[T], bool] = lambda _: True):
        self._factory = factory
        self._alive = alive
        self._by_loop: dict[asyncio.AbstractEventLoop, T] = {}

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        found = self._by_loop.get(loop)
        if found is None or not self._alive(found):
            for closed in [other for other in self._by_loop if other.is_closed()]:
                del self._by_loop[closed]
            found = self._by_loop[loop] = self._factory()
        return found
