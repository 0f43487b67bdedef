from __future__ import annotations

import asyncio

from starlette_ws.backends.base import Event


class MemoryBus:
    """The backends of one process that hear each other: one per app.

    A server runs one event loop, so one backend; Starlette's TestClient without `with` runs
    every connection in an event loop (and thread) of its own, each with its own hub and
    backend, and the bus carries a publish from one loop to the others like a broker would.
    """

    def __init__(self) -> None:
        self._backends: set[MemoryBackend] = set()

    def publish(self, channel: str, message: str) -> None:
        event = Event(channel, message)
        for backend in list(self._backends):
            if not backend.receive(event):
                self._backends.discard(backend)

    def attach(self, backend: MemoryBackend) -> None:
        self._backends.add(backend)

    def detach(self, backend: MemoryBackend) -> None:
        self._backends.discard(backend)


class MemoryBackend:
    """One process only: a publish is delivered straight back to the subscriptions on its bus."""

    resubscribed = 0  # never: nothing between it and the bus can fail
    in_process = True

    def __init__(self, url: str = "memory://", bus: MemoryBus | None = None) -> None:
        self._bus = bus or MemoryBus()
        self._bus.attach(self)
        self._channels: set[str] = set()
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None  # where `next_published` waits

    @property
    def listening(self) -> bool:
        return True

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._bus.attach(self)

    async def disconnect(self) -> None:
        self._bus.detach(self)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def publish(self, channel: str, message: str) -> None:
        self._bus.publish(channel, message)

    async def next_published(self) -> Event:
        return await self._events.get()

    async def ping(self) -> None:
        """The engine is this process: it always answers."""

    def receive(self, event: Event) -> bool:
        """Queue an event published on the bus, from any thread; false once this backend's loop is closed."""
        loop = self._loop
        if loop is not None and loop.is_closed():
            return False
        if event.channel not in self._channels:
            return True
        try:
            if loop is None or loop is _running_loop():
                self._events.put_nowait(event)
            else:
                loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: its hub went with it
            return False
        return True


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
