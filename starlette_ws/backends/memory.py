from __future__ import annotations

import asyncio

from starlette_ws.backends.base import Event


class MemoryBackend:
    """One process only: a publish is delivered straight back to this process's subscriptions."""

    def __init__(self, url: str = "memory://") -> None:
        self._channels: set[str] = set()
        self._events: asyncio.Queue[Event] = asyncio.Queue()

    @property
    def listening(self) -> bool:
        return True

    async def connect(self) -> None:
        pass

    async def disconnect(self) -> None:
        pass

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def publish(self, channel: str, message: str) -> None:
        if channel in self._channels:
            self._events.put_nowait(Event(channel, message))

    async def next_published(self) -> Event:
        return await self._events.get()
