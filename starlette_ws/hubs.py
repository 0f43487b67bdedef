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
from collections.abc import AsyncIterator

from starlette_ws import metrics
from starlette_ws.backends import BackendError
from starlette_ws.connection import Connection
from starlette_ws.engines import Engine
from starlette_ws.history import HistoryError, RoomStore
from starlette_ws.hub import Hub
from starlette_ws.logs import Outage
from starlette_ws.presence import Presence
from starlette_ws.probe import ANSWERED, Finding, Probe
from starlette_ws.recovery import RoomStream
from starlette_ws.settings import Settings

logger = logging.getLogger("starlette_ws.hubs")

LISTENING_POLL = 0.25  # seconds between two looks at whether the hub's subscription is back
CHECKS_AT_ONCE = 20  # rooms checked against the store at the same time (a stalled store holds each for its timeout)


class Busy(Exception):
    """Every place for a connection being set up is taken, and none came free in time."""


class Rooms:
    """What a loop's room connections share: the store, the presence of its members, a stream per
    room with members here (`recovery.RoomStream`), and the timers that look after them."""

    def __init__(self, hub: Hub, store: RoomStore, settings: Settings) -> None:
        self.hub = hub
        self.store = store
        self.settings = settings
        self.streams: dict[str, RoomStream] = {}  # by channel
        self.presence = Presence(
            hub,
            store,
            settings.presence_ttl,
            settings.room_presence_rate,
            settings.room_presence_burst,
            self.streams.__contains__,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._setting_up = asyncio.Semaphore(settings.room_connects_at_once)

    @contextlib.asynccontextmanager
    async def admitting(self) -> AsyncIterator[None]:
        """A place for a connection's set-up (its calls to the store): at most `connects_at_once`
        at a time, so that a flood of connects leaves the store's pool to the members' messages;
        `Busy` when none comes free within `connect_wait` seconds."""
        try:
            async with asyncio.timeout(self.settings.room_connect_wait):
                await self._setting_up.acquire()
        except TimeoutError:
            raise Busy from None
        try:
            yield
        finally:
            self._setting_up.release()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(job()) for job in (self.presence.beat, self._check, self._clean)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.presence.stop()
        for stream in list(self.streams.values()):
            await stream.stop()

    def stream(self, room: str, channel: str) -> RoomStream:
        """The room's stream here, routed from the hub (again, if its channel was left meanwhile)."""
        stream = self.streams.get(channel)
        if stream is None:
            stream = self.streams[channel] = RoomStream(room, self.store)
        self.hub.route(channel, stream.deliver)
        return stream

    async def forget(self, channel: str, connection: Connection) -> None:
        stream = self.streams.get(channel)
        if stream is None:
            return
        stream.discard(connection)
        if not stream.members:
            del self.streams[channel]
            self.presence.forget(stream.room)
            await stream.stop()

    async def _check(self) -> None:
        """Every `check_seconds`, and as soon as the hub's subscription is back after an outage,
        every room with members here is checked against the store (`RoomStream.check`)."""
        loop = asyncio.get_running_loop()
        listening, resubscribed = self.hub.listening, self.hub.backend.resubscribed
        due = loop.time() + self.settings.room_check_seconds
        while True:
            await asyncio.sleep(min(LISTENING_POLL, self.settings.room_check_seconds))
            now_listening, now_resubscribed = self.hub.listening, self.hub.backend.resubscribed
            back = (now_listening and not listening) or now_resubscribed != resubscribed
            listening, resubscribed = now_listening, now_resubscribed
            if back or loop.time() >= due:
                due = loop.time() + self.settings.room_check_seconds
                streams = list(self.streams.values())
                for at in range(0, len(streams), CHECKS_AT_ONCE):
                    await asyncio.gather(*(stream.check() for stream in streams[at : at + CHECKS_AT_ONCE]))

    async def _clean(self) -> None:
        while True:
            await asyncio.sleep(self.settings.room_clean_seconds)
            try:
                await self.store.clean()
            except (HistoryError, BackendError) as exc:
                metrics.ROOM_STORE_ERRORS.labels(operation="clean").inc()
                logger.warning("Cleaning the room store failed: %s", exc)


class Hubs:
    """This process's hubs, one per event loop, with their rooms, made as `settings` say."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = Engine(settings.broadcast_url)
        self._store_args = (settings.channel_prefix, settings.room_history, settings.room_history_seconds)
        self.room_outage = Outage(logger, "Room store not available")
        self._probes: dict[Hub, Probe] = {}
        # memory://: one store for every loop, so that they share one history
        self._shared = self.engine.store(*self._store_args) if self.engine.in_process else None
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
            return self.engine.in_process
        return all(hub.listening for hub in hubs)

    @property
    def probed(self) -> Finding:
        """What the latest probes of this process's engine found (memory:// always answers)."""
        findings = [self._probes[hub].finding for hub in self._live() if hub in self._probes]
        if not findings and not self.engine.in_process:
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
            store = self._shared or self.engine.store(*self._store_args)
            await store.connect()
            rooms = self._rooms[hub] = Rooms(hub, store, self.settings)
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
            hub = Hub(self.engine.backend(), self.settings.send_queue_bytes)
            await hub.start()
            probe = self._probes[hub] = Probe(
                hub.backend, lambda: self._store_of(hub), self.settings.engine_probe_seconds
            )
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

    def _live(self) -> list[Hub]:
        return [hub for loop, hub in list(self._hubs.items()) if not loop.is_closed()]
