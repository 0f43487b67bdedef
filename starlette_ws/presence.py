"""Who is in which room: this loop's members kept present in the store, and what the rooms are told.

The store counts connections per client id (`RoomStore.present` / `absent`): a client id arrives
with its first connection to a room and leaves with its last, in every process. Each loop
refreshes its members every ttl / 3; a member whose process stops doing so is gone after the ttl.
Arrivals and departures are announced live and unnumbered (they are not history), at most
`rate` per second per room (bursts of `burst`); past that they coalesce into one member list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from starlette_ws import metrics
from starlette_ws.backends import BackendError
from starlette_ws.history import HistoryError, RoomStore
from starlette_ws.hub import Hub
from starlette_ws.logs import Outage
from starlette_ws.ratelimit import TokenBucket
from starlette_ws.recovery import compact

logger = logging.getLogger("starlette_ws.presence")


def members_of(ids: list[str]) -> list[int | str]:
    """Member ids as clients see them: a client id is a number."""
    return [int(member) if member.isascii() and member.isdigit() else member for member in ids]


class Presence:
    """This loop's room members, their heartbeat, and the announcements of who comes and goes."""

    def __init__(
        self,
        hub: Hub,
        store: RoomStore,
        ttl: float,
        rate: float,
        burst: int,
        has_members: Callable[[str], bool],
    ) -> None:
        self.hub = hub
        self.store = store
        self.ttl = ttl
        self.rate = rate
        self.burst = burst
        self.has_members = has_members  # whether a channel still has members in this loop
        self.local: dict[str, tuple[str, str]] = {}  # member -> (room, client id), this loop's
        self._announcing: dict[str, TokenBucket] = {}  # by room: presence changes it may still announce
        self._coalescing: dict[str, asyncio.Task[None]] = {}  # by room: a member list about to go out
        self._again: set[str] = set()  # rooms that changed while their member list was being read

    async def here(self, room: str, member: str, client_id: str) -> bool:
        """Record a member; True when its client id has just arrived in the room."""
        self.local[member] = (room, client_id)
        return await self.store.present(room, member, client_id, self.ttl)

    async def gone(self, room: str, member: str) -> bool:
        """Forget a member; True when it was its client id's last connection to the room."""
        self.local.pop(member, None)
        return await self.store.absent(room, member)

    def forget(self, room: str) -> None:
        """The room has no members left in this loop: its announcement budget goes too."""
        self._announcing.pop(room, None)

    async def announce(self, room: str, channel: str, change: dict[str, Any]) -> None:
        """Tell the room's members in every process that someone arrived or left; past the room's
        rate (churn) the changes coalesce into one fresh member list a little later."""
        bucket = self._announcing.get(room)
        if bucket is None and self.has_members(channel):  # none: its last member here has left
            bucket = self._announcing[room] = TokenBucket(self.rate, self.burst)
        if room in self._coalescing:  # a list is on its way: this change goes in it, or in the next one
            self._again.add(room)
        elif bucket is None or bucket.take():
            await self.hub.publish(channel, compact(change))
        else:
            task = asyncio.get_running_loop().create_task(self._members_later(room, channel))
            self._coalescing[room] = task

    async def stop(self) -> None:
        tasks = list(self._coalescing.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._coalescing.clear()  # a task cancelled before it ran never cleaned up after itself
        self._again.clear()

    async def _members_later(self, room: str, channel: str) -> None:
        try:
            again = True
            while again:  # a change that came once the list was read needs another list
                await asyncio.sleep(1 / self.rate)
                self._again.discard(room)
                members = await self.store.members(room)
                change = {"type": "presence", "room": room, "members": members_of(members)}
                await self.hub.publish(channel, compact(change))
                again = room in self._again
        except (HistoryError, BackendError) as exc:
            metrics.ROOM_STORE_ERRORS.labels(operation="members").inc()
            logger.warning("Room %r: member list not announced: %s", room, exc)
        finally:
            self._coalescing.pop(room, None)
            self._again.discard(room)

    async def beat(self) -> None:
        """Every ttl / 3, refresh this loop's members; in an outage one line says so (not one
        traceback per member), and the beat stops at the first failure: the next one tries again."""
        outage = Outage(logger, "Room members not refreshed")
        while True:
            await asyncio.sleep(self.ttl / 3)
            for member, (room, client_id) in list(self.local.items()):
                if member not in self.local:  # gone meanwhile
                    continue
                try:
                    await self.store.present(room, member, client_id, self.ttl)
                except Exception as exc:  # an outage: the next beat tries again
                    metrics.ROOM_STORE_ERRORS.labels(operation="present").inc()
                    outage.failed(exc, asyncio.get_running_loop().time())
                    break
            else:
                outage.ended()
