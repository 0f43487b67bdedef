"""What a room's history and presence engine does, whichever engine keeps them.

A room's messages are numbered: each gets the room's next offset (one more than the last), the
same number in every process, and is published on the room's channel in that order. The engine
keeps the last `ROOM_HISTORY` entries younger than `ROOM_HISTORY_SECONDS`, under an epoch: a
random name for this run of the history, which changes when the history is lost (a memory store
restarted, Redis flushed, the table dropped), so that a client that reconnects with an old epoch
learns it has missed what it cannot get back.

Every payload is a JSON object whose first two members are the offset and the epoch, followed by
the caller's members (`rest`, the object's text after its opening brace):
`{"offset":12,"epoch":"9f3c0a1b2c3d4e5f","type":"message",...}`. Engines that build the payload
where the offset is assigned (a Lua script, one SQL statement) concatenate exactly that.

What an engine publishes carries the entry's position ahead of the payload, in a header of its
own (`pack`): `#12:9f3c0a1b2c3d4e5f\n{...}`. The receiving process reads it back once, into a
`Position` (`unpack`), and from there the position travels as a value; the payload is what
clients get, never parsed by the server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from starlette_ws.backends.base import MAX_CHANNEL_BYTES


@dataclass(frozen=True, slots=True)
class Position:
    """Where an entry stands in its room's history: its offset under an epoch."""

    offset: int
    epoch: str


def pack(offset: int, epoch: str, payload: str) -> str:
    """What an engine publishes for an entry: its position, a newline, then its payload."""
    return f"#{offset}:{epoch}\n{payload}"


def unpack(text: str) -> tuple[Position | None, str]:
    """`(position, payload)` of what `pack` made; `(None, text)` for anything else published on
    a room's channel (a presence change, which has no place in the history)."""
    if not text.startswith("#"):
        return None, text
    head, _, payload = text.partition("\n")
    offset, _, epoch = head[1:].partition(":")
    return Position(int(offset), epoch), payload


def payload(offset: int, epoch: str, rest: str) -> str:
    """The text clients receive for one entry; `rest` is a JSON object's text after its `{`."""
    return f'{{"offset":{offset},"epoch":"{epoch}",{rest}'


DIGEST_HEX = 24  # a long room name's channel: the prefix, "room#", then this many hex digits
MAX_PREFIX_BYTES = MAX_CHANNEL_BYTES - len("room#") - DIGEST_HEX  # 34: every room's channel fits


def room_channel(prefix: str, room: str) -> str:
    """The broadcast channel of a room: `prefix` + the name, or + a digest of it where that would
    be longer than every engine allows."""
    channel = f"{prefix}room:{room}"
    if len(channel.encode()) <= MAX_CHANNEL_BYTES:
        return channel
    return f"{prefix}room#{hashlib.blake2b(room.encode(), digest_size=DIGEST_HEX // 2).hexdigest()}"


class Kept:
    """What a store keeps of each room of the deployment `prefix`: its last `history` entries
    younger than `seconds`."""

    def __init__(self, prefix: str, history: int, seconds: float) -> None:
        self.prefix = prefix
        self.history = history
        self.seconds = seconds

    async def renew(self, room: str, seen: Position, again: bool = False) -> bool:
        """Nothing to do where an acknowledged write is never lost (one process's memory, a
        committed PostgreSQL transaction)."""
        return False


@dataclass(frozen=True, slots=True)
class Entry:
    offset: int
    epoch: str
    payload: str

    @property
    def position(self) -> Position:
        return Position(self.offset, self.epoch)


@dataclass(frozen=True, slots=True)
class Replay:
    """What a client reconnecting with `since` gets first: the retained entries after it."""

    epoch: str  # the history's epoch now
    entries: tuple[Entry, ...]  # every retained entry with an offset above `since`, in order
    last: int  # the room's last offset (0: nothing said yet)
    missed: int | None  # entries after `since` that are not retained: 0 none, None unknown (another history)

    @property
    def position(self) -> Position:
        """Where a client stands once it has been given this replay."""
        return Position(self.last, self.epoch)


class HistoryError(Exception):
    """The engine could not be reached or answered wrongly; nothing was appended."""


class HistoryUncertain(HistoryError):
    """An append was sent, then its answer was lost (a timeout, a dropped connection): it may
    have been kept and published."""


class RoomStore(Protocol):
    """History and presence for every room of one deployment (`prefix`), in one engine.

    One instance per process and event loop, like a broadcast backend; `connect` before use.
    """

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    async def append(self, room: str, rest: str, seen: Position | None = None) -> Entry:
        """Give the next offset, keep the entry (trimming by count and age) and publish its
        payload on `room_channel(prefix, room)`; every process receives a room's entries in
        offset order. Raises `HistoryError` when nothing was appended. `seen`: the room's latest
        position this process was given; an engine that can lose acknowledged writes (`renew`)
        starts a new epoch first when its history is behind it, so no offset is given twice."""
        ...

    async def renew(self, room: str, seen: Position, again: bool = False) -> bool:
        """When the room's last offset is below `seen` in `seen`'s epoch, or (`again`) this process
        was given an offset of that epoch a second time (entries it was given are gone: a failover
        lost them, and the offsets were given again), start a new epoch and say True."""
        ...

    async def replay(self, room: str, since: int | None, epoch: str | None) -> Replay:
        """What a client that last saw offset `since` of history `epoch` gets first (`replay_of`):

        - `since` None: every retained entry; `missed` 0.
        - The client's history is not this one (`epoch` given and not the current one, or `since`
          above the room's last offset, which this history never gave): every retained entry;
          `missed` None (unknown). A missing `epoch` trusts the offset.
        - Otherwise the retained entries after `since`; `missed` is how many offsets between
          `since` and the first of them (or the last offset + 1 when none) are no longer kept.
        """
        ...

    async def top(self, room: str) -> Position | None:
        """The room's last position now, without creating the room; None when the engine has no
        history for it (never written, expired or lost)."""
        ...

    async def present(self, room: str, member: str, client_id: str, ttl: float) -> bool:
        """Add or refresh a member (`member`: unique per connection, across processes) until
        `ttl` seconds from now; a member not refreshed by then no longer counts. True when no
        other member of the room had this client id: the client has just arrived."""
        ...

    async def absent(self, room: str, member: str) -> bool:
        """Remove a member; True when no other member of the room has its client id: the client
        has left (False too when the member was not there)."""
        ...

    async def reset(self, room: str) -> None:
        """Forget the room's history: it starts a new epoch (members keep their presence), so a
        client that comes back with the old one is told, with a `gap`, that it missed what went."""
        ...

    async def clean(self) -> int:
        """Housekeeping, run on a timer: delete entries past retention, expired members and rooms
        with neither (a room made again starts a new epoch); how many rooms went."""
        ...

    async def members(self, room: str) -> list[str]:
        """The client ids present in the room now, sorted, each once."""
        ...

    async def rooms(self) -> dict[str, list[str]]:
        """Every room with members now, by name: {room: members(room)}."""
        ...

    async def ping(self) -> None:
        """One round trip to the engine; `HistoryError` when no answer comes."""
        ...


def same_history(current: str, last: int, since: int, epoch: str | None) -> bool:
    """Whether offset `since` of history `epoch` (None: trusted) can be one of this history's,
    whose epoch is `current` and last offset `last`."""
    return (epoch is None or epoch == current) and since <= last


def replay_of(current: str, retained: Sequence[Entry], last: int, since: int | None, epoch: str | None) -> Replay:
    """`RoomStore.replay`'s answer, from the entries retained now, oldest first. When
    `same_history` holds, `retained` needs only those after `since` (what Redis reads)."""
    if since is None:
        return Replay(current, tuple(retained), last, 0)
    if not same_history(current, last, since, epoch):
        return Replay(current, tuple(retained), last, None)
    after = tuple(entry for entry in retained if entry.offset > since)
    first = after[0].offset if after else last + 1
    return Replay(current, after, last, max(0, first - since - 1))
