"""Helpers for driving a backend from sync tests: `run` and a listener task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette_ws.backends import Backend, Event

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    """asyncio.run with a deadline, so a broken backend fails the test instead of hanging it."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await main

    return asyncio.run(bounded())


class Listener:
    """What the hub does: one task calling `next_published` forever, events into a queue."""

    def __init__(self, backend: Backend, events: asyncio.Queue[Event] | None = None) -> None:
        self.backend = backend
        self.events: asyncio.Queue[Event] = asyncio.Queue() if events is None else events
        self.task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            self.events.put_nowait(await self.backend.next_published())

    async def get(self, within: float = 5.0) -> Event:
        async with asyncio.timeout(within):
            return await self.events.get()

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
