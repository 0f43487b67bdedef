"""Rooms' history and presence in this process, for `memory://`.

One store serves every event loop of the app (Starlette's TestClient without `with` gives each
connection a loop and thread of its own), so it keeps no asyncio object: a thread lock guards
its state, and nothing under the lock awaits. An entry is numbered and handed to the app's
`MemoryBus` in one step, so every hub receives a room's entries in offset order.

Each room has an epoch of its own, drawn when the room is made: `clean` drops a room with no
members and no entries left, and a room made again under that name starts a new history.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from starlette_ws.backends.memory import MemoryBus
from starlette_ws.history.base import Entry, Kept, Position, Replay, pack, payload, replay_of, room_channel


def _epoch() -> str:
    return os.urandom(8).hex()


@dataclass(slots=True)
class _Room:
    epoch: str = field(default_factory=_epoch)
    last: int = 0
    entries: deque[tuple[float, Entry]] = field(default_factory=deque)  # (appended at, entry), oldest first
    members: dict[str, tuple[str, float]] = field(default_factory=dict)  # member -> (client id, expires at)


class MemoryStore(Kept):
    def __init__(self, url: str, prefix: str, history: int, seconds: float, bus: MemoryBus | None = None) -> None:
        super().__init__(prefix, history, seconds)
        self._bus = bus or MemoryBus()
        self._rooms: dict[str, _Room] = {}
        self._lock = threading.Lock()
        self.clock = time.monotonic

    async def connect(self) -> None:
        pass

    async def disconnect(self) -> None:
        pass

    async def append(self, room: str, rest: str, seen: Position | None = None) -> Entry:
        with self._lock:
            state = self._rooms.setdefault(room, _Room())
            state.last += 1
            entry = Entry(state.last, state.epoch, payload(state.last, state.epoch, rest))
            state.entries.append((self.clock(), entry))
            self._trim(state)
            self._bus.publish(room_channel(self.prefix, room), pack(entry.offset, entry.epoch, entry.payload))
        return entry

    async def replay(self, room: str, since: int | None, epoch: str | None) -> Replay:
        with self._lock:
            state = self._rooms.setdefault(room, _Room())  # a client holds an epoch from its first visit on
            self._trim(state)
            retained = [entry for _, entry in state.entries]
        return replay_of(state.epoch, retained, state.last, since, epoch)

    async def reset(self, room: str) -> None:
        with self._lock:
            state = self._rooms.get(room)
            if state is not None:
                state.epoch, state.last = _epoch(), 0
                state.entries.clear()

    async def top(self, room: str) -> Position | None:
        with self._lock:
            state = self._rooms.get(room)
            return None if state is None else Position(state.last, state.epoch)

    async def present(self, room: str, member: str, client_id: str, ttl: float) -> bool:
        with self._lock:
            state = self._rooms.setdefault(room, _Room())
            self._expire(state)
            arrived = not any(other == client_id for key, (other, _) in state.members.items() if key != member)
            state.members[member] = (client_id, self.clock() + ttl)
            return arrived

    async def absent(self, room: str, member: str) -> bool:
        with self._lock:
            state = self._rooms.get(room)
            if state is None:
                return False
            self._expire(state)
            found = state.members.pop(member, None)
            return found is not None and all(other != found[0] for other, _ in state.members.values())

    async def clean(self) -> int:
        """Trim every room and drop those with no members and no entries left; how many were dropped."""
        with self._lock:
            idle = []
            for room, state in self._rooms.items():
                self._trim(state)
                self._expire(state)
                if not state.entries and not state.members:
                    idle.append(room)
            for room in idle:
                del self._rooms[room]
        return len(idle)

    async def members(self, room: str) -> list[str]:
        with self._lock:
            state = self._rooms.get(room)
            return self._members(state) if state is not None else []

    async def rooms(self) -> dict[str, list[str]]:
        with self._lock:
            found = {room: self._members(state) for room, state in self._rooms.items()}
        return {room: members for room, members in sorted(found.items()) if members}

    def _members(self, state: _Room) -> list[str]:
        self._expire(state)
        return sorted({client_id for client_id, _ in state.members.values()})

    def _expire(self, state: _Room) -> None:
        now = self.clock()
        for member, (_, expires) in list(state.members.items()):
            if expires <= now:
                del state.members[member]

    def _trim(self, state: _Room) -> None:
        entries = state.entries
        while len(entries) > self.history:
            entries.popleft()
        oldest = self.clock() - self.seconds
        while entries and entries[0][0] < oldest:
            entries.popleft()

    async def ping(self) -> None:
        """The engine is this process: it always answers."""
