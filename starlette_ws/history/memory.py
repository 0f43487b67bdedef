"""Rooms' history and presence in this process, for `memory://`.

One store serves every event loop of the app (Starlette's TestClient without `with` gives each
connection a loop and thread of its own), so it keeps no asyncio object: a thread lock guards
its state, and nothing under the lock awaits. An entry is numbered and handed to the app's
`MemoryBus` in one step, so every hub receives a room's entries in offset order.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from starlette_ws.backends.memory import MemoryBus
from starlette_ws.history.base import Entry, Replay, payload, replay_of, room_channel


@dataclass(slots=True)
class _Room:
    last: int = 0
    entries: deque[tuple[float, Entry]] = field(default_factory=deque)  # (appended at, entry), oldest first
    members: dict[str, tuple[str, float]] = field(default_factory=dict)  # member -> (client id, expires at)


class MemoryStore:
    def __init__(self, url: str, prefix: str, history: int, seconds: float, bus: MemoryBus | None = None) -> None:
        self.prefix = prefix
        self.history = history
        self.seconds = seconds
        self.epoch = os.urandom(8).hex()
        self._bus = bus or MemoryBus()
        self._rooms: dict[str, _Room] = {}
        self._lock = threading.Lock()
        self.clock = time.monotonic

    async def connect(self) -> None:
        pass

    async def disconnect(self) -> None:
        pass

    async def append(self, room: str, rest: str) -> Entry:
        with self._lock:
            state = self._rooms.setdefault(room, _Room())
            state.last += 1
            entry = Entry(state.last, self.epoch, payload(state.last, self.epoch, rest))
            state.entries.append((self.clock(), entry))
            self._trim(state)
            self._bus.publish(room_channel(self.prefix, room), entry.payload)
        return entry

    async def replay(self, room: str, since: int | None, epoch: str | None) -> Replay:
        with self._lock:
            state = self._rooms.get(room) or _Room()
            self._trim(state)
            retained = [entry for _, entry in state.entries]
        return replay_of(self.epoch, retained, state.last, since, epoch)

    async def present(self, room: str, member: str, client_id: str, ttl: float) -> None:
        with self._lock:
            self._rooms.setdefault(room, _Room()).members[member] = (client_id, self.clock() + ttl)

    async def absent(self, room: str, member: str) -> None:
        with self._lock:
            state = self._rooms.get(room)
            if state is not None:
                state.members.pop(member, None)

    async def members(self, room: str) -> list[str]:
        with self._lock:
            state = self._rooms.get(room)
            return self._members(state) if state is not None else []

    async def rooms(self) -> dict[str, list[str]]:
        with self._lock:
            found = {room: self._members(state) for room, state in self._rooms.items()}
        return {room: members for room, members in sorted(found.items()) if members}

    def _members(self, state: _Room) -> list[str]:
        now = self.clock()
        for member, (_, expires) in list(state.members.items()):
            if expires <= now:
                del state.members[member]
        return sorted({client_id for client_id, _ in state.members.values()})

    def _trim(self, state: _Room) -> None:
        entries = state.entries
        while len(entries) > self.history:
            entries.popleft()
        oldest = self.clock() - self.seconds
        while entries and entries[0][0] < oldest:
            entries.popleft()

    async def ping(self) -> None:
        """The engine is this process: it always answers."""
