"""The app's chat hub for the running event loop, with or without the app's lifespan.

A server runs one event loop: the lifespan starts its hub and the hub's room store (an engine
that is not there, or refuses what the store needs, is a start-up error) and stops them.
Starlette's TestClient without `with` runs no lifespan and gives every connection an event loop
of its own, in its own thread, and a hub's tasks, futures and engine connections belong to one
loop; so each loop gets its own hub, started by the first chat connection in it and stopped by
the last one to leave (closing its engine connections before the loop ends). `memory://` hubs
of one app hear each other through the app's `MemoryBus`; Redis and PostgreSQL hubs through the engine.

Each hub comes with the rooms' history and presence store of its engine (`memory://`: one store
for the whole app, on the same bus), and a heartbeat that keeps this loop's room members present;
without the lifespan they start with the loop's first room connection. From its start to its stop
a hub's `probe.Probe` pings its backend and, once there is one, its store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

from starlette_ws.backends import Backend, backend_for_url
from starlette_ws.backends.memory import MemoryBackend, MemoryBus
from starlette_ws.history import RoomStore, store_for_url
from starlette_ws.hub import Hub
from starlette_ws.probe import ANSWERED, Finding, Probe

logger = logging.getLogger("starlette_ws.hubs")


class Rooms:
    """What a loop's room connections share: the store and the members it keeps present."""

    def __init__(self, store: RoomStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self.local: dict[str, tuple[str, str]] = {}  # member -> (room, client id), this loop's
        self._heartbeat: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat

    async def here(self, room: str, member: str, client_id: str) -> None:
        self.local[member] = (room, client_id)
        await self.store.present(room, member, client_id, self.ttl)

    async def gone(self, room: str, member: str) -> None:
        self.local.pop(member, None)
        await self.store.absent(room, member)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            for member, (room, client_id) in list(self.local.items()):
                try:
                    await self.store.present(room, member, client_id, self.ttl)
                except Exception:  # an outage: the next beat tries again
                    logger.warning("Refreshing %r in room %r failed", client_id, room, exc_info=True)


class Hubs:
    def __init__(
        self,
        broadcast_url: str,
        queue_bytes: int,
        prefix: str = "starlette-ws:",
        history: int = 100,
        seconds: float = 300.0,
        presence_ttl: float = 30.0,
        probe_seconds: float = 2.0,
    ) -> None:
        self.broadcast_url = broadcast_url
        self.queue_bytes = queue_bytes
        self.scheme = urlsplit(broadcast_url).scheme
        self._bus = MemoryBus() if self.scheme == "memory" else None
        self._store_args = (broadcast_url, prefix, history, seconds)
        self.presence_ttl = presence_ttl
        self.probe_seconds = probe_seconds
        self._probes: dict[Hub, Probe] = {}
        # memory://: one store for every loop, so that they share one history
        self._shared = store_for_url(*self._store_args, bus=self._bus) if self._bus is not None else None
        self._rooms: dict[Hub, Rooms] = {}
        self._rooms_starting: dict[Hub, asyncio.Task[Rooms]] = {}
        self._hubs: dict[asyncio.AbstractEventLoop, Hub] = {}
        self._starting: dict[asyncio.AbstractEventLoop, asyncio.Task[Hub]] = {}
        self._users: dict[Hub, int] = {}  # chat connections per hub
        self._kept: set[Hub] = set()  # started by the lifespan: stopped by it only

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

    @property
    def engine(self) -> Finding:
        """What the latest probes of this process's engine found (memory:// always answers)."""
        findings = [self._probes[hub].finding for hub in self._live() if hub in self._probes]
        if not findings and self._bus is None:
            return Finding("not connected: no hub runs in this process (run the app's lifespan)")
        return next((finding for finding in findings if not finding.ok), ANSWERED)

    async def start(self) -> None:
        """The lifespan's start-up: this loop's hub and its rooms' store connect now and run until
        `stop`; or it raises, leaving nothing started."""
        hub = await self._hub()
        self._kept.add(hub)
        try:
            await self.rooms(hub)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """The lifespan's shutdown: stop this loop's hub."""
        hub = self._hubs.pop(asyncio.get_running_loop(), None)
        if hub is not None:
            self._kept.discard(hub)
            await self._stop(hub)

    async def rooms(self, hub: Hub) -> Rooms:
        """The rooms' store and presence that come with `hub`, connected by `start` or else on
        first use."""
        rooms = self._rooms.get(hub)
        if rooms is not None:
            return rooms
        starting = self._rooms_starting.get(hub)
        if starting is None:
            starting = self._rooms_starting[hub] = asyncio.get_running_loop().create_task(self._start_rooms(hub))
        return await asyncio.shield(starting)

    async def store(self) -> RoomStore:
        """A store for a request that holds no hub (memory://: the app's; else this loop's hub's)."""
        if self._shared is not None:
            return self._shared
        return (await self.rooms(await self._hub())).store

    async def _start_rooms(self, hub: Hub) -> Rooms:
        try:
            store = self._shared or store_for_url(*self._store_args)
            await store.connect()
            rooms = self._rooms[hub] = Rooms(store, self.presence_ttl)
            rooms.start()
            return rooms
        finally:
            del self._rooms_starting[hub]

    async def acquire(self) -> Hub:
        """The running loop's hub for a chat connection, started on first use (`BackendError`
        when it cannot start); `release` it when the connection ends."""
        hub = await self._hub()
        self._users[hub] = self._users.get(hub, 0) + 1
        return hub

    async def release(self, hub: Hub) -> None:
        """A hub the lifespan did not start stops with its last connection: its loop may end next
        (TestClient), and nothing else would close its engine connections."""
        users = self._users.pop(hub, 1) - 1
        if users > 0:
            self._users[hub] = users
            return
        if hub in self._kept:
            return
        loop = asyncio.get_running_loop()
        if self._hubs.get(loop) is hub:
            del self._hubs[loop]
        await self._stop(hub)

    async def _hub(self) -> Hub:
        loop = asyncio.get_running_loop()
        hub = self._hubs.get(loop)
        if hub is not None:
            return hub
        starting = self._starting.get(loop)
        if starting is None:
            starting = self._starting[loop] = loop.create_task(self._start(loop))
        return await asyncio.shield(starting)

    async def _start(self, loop: asyncio.AbstractEventLoop) -> Hub:
        try:
            hub = Hub(self._backend(), self.queue_bytes)
            await hub.start()
            probe = self._probes[hub] = Probe(hub.backend, lambda: self._store_of(hub), self.probe_seconds)
            probe.start()
            for gone in [other for other in self._hubs if other.is_closed()]:
                self._hubs.pop(gone, None)
            self._hubs[loop] = hub
            return hub
        finally:
            del self._starting[loop]

    async def _stop(self, hub: Hub) -> None:
        probe = self._probes.pop(hub, None)
        rooms = self._rooms.pop(hub, None)
        try:
            if probe is not None:
                await probe.stop()
            if rooms is not None:
                await rooms.stop()
                if rooms.store is not self._shared:
                    await rooms.store.disconnect()
        finally:
            await hub.stop()

    def _store_of(self, hub: Hub) -> RoomStore | None:
        rooms = self._rooms.get(hub)
        return rooms.store if rooms is not None else None

    def _backend(self) -> Backend:
        if self._bus is not None:
            return MemoryBackend(self.broadcast_url, self._bus)
        return backend_for_url(self.broadcast_url)

    def _live(self) -> list[Hub]:
        return [hub for loop, hub in list(self._hubs.items()) if not loop.is_closed()]
