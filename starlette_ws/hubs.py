"""The app's chat hub for the running event loop, with or without the app's lifespan.

A server runs one event loop: the lifespan starts its hub (a broadcast engine that is not there
is a start-up error) and stops it. Starlette's TestClient without `with` runs no lifespan and
gives every connection an event loop of its own, in its own thread, and a hub's tasks, futures
and engine connections belong to one loop; so each loop gets its own hub, started by the first
chat connection in it. `memory://` hubs of one app hear each other through the app's
`MemoryBus`; Redis and PostgreSQL hubs through the engine, connected by that first connection
(and, without the lifespan, never closed before the process ends).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from starlette_ws.backends import Backend, backend_for_url
from starlette_ws.backends.memory import MemoryBackend, MemoryBus
from starlette_ws.hub import Hub


class Hubs:
    def __init__(self, broadcast_url: str, queue_bytes: int) -> None:
        self.broadcast_url = broadcast_url
        self.queue_bytes = queue_bytes
        self.scheme = urlsplit(broadcast_url).scheme
        self._bus = MemoryBus() if self.scheme == "memory" else None
        self._hubs: dict[asyncio.AbstractEventLoop, Hub] = {}
        self._starting: dict[asyncio.AbstractEventLoop, asyncio.Task[Hub]] = {}

    def __len__(self) -> int:
        """Chat connections in this process."""
        return sum(len(hub) for hub in self._live())

    @property
    def listening(self) -> bool:
        """Whether broadcasts from other processes reach this one (memory://: there are none)."""
        hubs = self._live()
        if not hubs:
            return self._bus is not None
        return all(hub.listening for hub in hubs)

    async def get(self) -> Hub:
        """The running loop's hub, started on first use; `BackendError` when it cannot start."""
        loop = asyncio.get_running_loop()
        hub = self._hubs.get(loop)
        if hub is not None:
            return hub
        starting = self._starting.get(loop)
        if starting is None:
            starting = self._starting[loop] = loop.create_task(self._start(loop))
        return await asyncio.shield(starting)

    async def stop(self) -> None:
        """Stop the running loop's hub (the lifespan's shutdown)."""
        hub = self._hubs.pop(asyncio.get_running_loop(), None)
        if hub is not None:
            await hub.stop()

    async def _start(self, loop: asyncio.AbstractEventLoop) -> Hub:
        try:
            hub = Hub(self._backend(), self.queue_bytes)
            await hub.start()
            for gone in [other for other in self._hubs if other.is_closed()]:
                self._hubs.pop(gone, None)
            self._hubs[loop] = hub
            return hub
        finally:
            del self._starting[loop]

    def _backend(self) -> Backend:
        if self._bus is not None:
            return MemoryBackend(self.broadcast_url, self._bus)
        return backend_for_url(self.broadcast_url)

    def _live(self) -> list[Hub]:
        return [hub for loop, hub in list(self._hubs.items()) if not loop.is_closed()]
