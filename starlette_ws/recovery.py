"""Rooms' promise to a member: every entry once, in order, or a `gap` that says what it missed.

Each member connection knows the last position (offset, epoch) it was sent. A room's entries
reach this process through its engine's subscription, each with its position read once from
the engine's header (`history.unpack`); a `RoomStream` hands each one to every member of the
room here and checks it against that member's position:

- the next one (same epoch, offset + 1): sent, inline, as the chat sends;
- one it already has (a replay or a repair sent it): dropped;
- anything else (a hole: entries the subscription lost while it was down or being replaced;
  another epoch: the engine lost the history): the member holds what arrives from then on, the
  store is read from the member's position (`RoomStore.replay`, one read for every member at
  that same position), and the member is sent what is missing, or a `gap` when the store no
  longer has it or the history changed, then what it held.

`check` compares the members' positions with the store's top now and then, and when the
engine's subscription comes back, so that a hole at the end of a conversation (nothing said
after it) is filled without waiting for the next entry. A joining connection starts held: the
endpoint sends its first messages itself (at the pace the client reads them), then `release`s
it at the position they end at.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import Any

from starlette import status

from starlette_ws import metrics
from starlette_ws.backends import BackendError
from starlette_ws.connection import TOO_SLOW, Connection, send_all
from starlette_ws.history import HistoryError, Position, Replay, RoomStore, unpack
from starlette_ws.hub import opened
from starlette_ws.sockets import Text

logger = logging.getLogger("starlette_ws.recovery")

CONTROL = "!"  # what starts a control message on a room's channel (entries start with `#`, presence with `{`)
REMOVED = 4003


def removal(client_id: int) -> str:
    """The control message that closes every connection of `client_id` to a room, in every process."""
    return f"{CONTROL}remove {client_id}"


CHECK = f"{CONTROL}check"  # the control message that has every member's position checked now


Item = tuple[Position | None, Text]  # what a held member keeps: position (None: presence), message


def compact(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def gap(room: str, offset: int, replay: Replay) -> str:
    """What a member is told when entries after `offset` cannot be given (`replay.missed` of them,
    null: unknown, another history); `epoch` is the history now."""
    return compact({"type": "gap", "room": room, "offset": offset, "epoch": replay.epoch, "missed": replay.missed})


def recent(replay: Replay, budget: int) -> list[str]:
    """The newest entries of `replay` whose payloads add up to at most `budget` bytes, oldest first."""
    kept: list[str] = []
    total = 0
    for entry in reversed(replay.entries):
        total += len(entry.payload.encode())
        if total > budget:
            break
        kept.append(entry.payload)
    kept.reverse()
    return kept


class Member:
    """One connection in a room: the last position it was sent, and what it holds meanwhile."""

    __slots__ = ("client_id", "connection", "held", "held_bytes", "position", "removed")

    def __init__(self, connection: Connection, client_id: int | None = None) -> None:
        self.connection = connection
        self.client_id = client_id
        self.position: Position | None = None  # None until released: the endpoint is sending it its first messages
        self.held: list[Item] | None = []  # a list while it waits for what comes before these
        self.held_bytes = 0
        self.removed: str | None = None  # removed while joining: closed, with this reason, once released


class RoomStream:
    """One room's entries in this process, on their way to its members (see the module's docstring)."""

    def __init__(self, room: str, store: RoomStore) -> None:
        self.room = room
        self.store = store
        self.members: dict[Connection, Member] = {}
        self._reads: dict[Position, list[Member]] = {}  # members waiting for the store, by the position they read from
        self._tasks: set[asyncio.Task[None]] = set()
        self._last: Position | None = None  # the latest entry delivered here
        self._renewing: str | None = None  # the epoch found given again, being replaced

    @property
    def last(self) -> Position | None:
        """The latest entry of the room this process was given."""
        return self._last

    def add(self, connection: Connection, client_id: int | None = None) -> Member:
        """A new member, held until `release`."""
        member = self.members[connection] = Member(connection, client_id)
        return member

    def remove(self, client_id: int, reason: str) -> None:
        """Close every connection of `client_id` here with 4003 (the server API removed it)."""
        for member in list(self.members.values()):
            if member.client_id != client_id:
                continue
            if member.position is None:  # still joining (not accepted yet): closed once released
                member.removed = reason
            else:
                member.connection.close(REMOVED, reason, flush=False)

    def discard(self, connection: Connection) -> None:
        self.members.pop(connection, None)

    def release(self, member: Member, position: Position) -> None:
        """The endpoint has sent `member` everything up to `position`: from here on, the stream does."""
        member.position = position
        if member.removed is not None:
            member.connection.close(REMOVED, member.removed, flush=False)
            return
        self._flush(member)

    def deliver(self, text: str) -> None:
        """A message published on the room's channel: a numbered entry, or a presence change."""
        position, payload = unpack(text)
        if position is None:
            payload = opened(payload)[1]
            if payload.startswith(CONTROL):
                self._control(payload)
                return
        entry = Text(payload)
        last, follows = self._last, False
        if position is not None:
            # The fan-out's own path: a member that holds nothing and was sent the very entry this
            # one follows (the same object, so one identity check per member) is sent it inline.
            follows = last is not None and position.offset == last.offset + 1 and position.epoch == last.epoch
            if last is not None and position.epoch == last.epoch and position.offset <= last.offset:
                self._given_again(last)  # members drop it as one they have: they are told with a gap
            else:
                self._last = position
        inline: list[Connection] = []
        for member in list(self.members.values()):
            if follows and member.position is last and member.held is None:
                member.position = position
                inline.append(member.connection)
            else:
                self._offer(member, (position, entry))
        send_all(inline, entry)

    def _control(self, text: str) -> None:
        """An order for this room's members in every process, never sent to a client."""
        command, _, argument = text[len(CONTROL) :].partition(" ")
        if command == "remove" and argument.isdigit():
            self.remove(int(argument), f"Removed from room {self.room!r} by the server")
        elif command == "check":  # the history was reset: members learn it now, not at the next check
            self._spawn(self.check())

    async def check(self) -> None:
        """Compare every released member's position with the store's top: behind it, or in
        another epoch, it is sent what it missed (or a gap). A member whose read failed reads again."""
        if not self.members:
            return
        try:
            top = await self.store.top(self.room)
            last = self._last
            if top is not None and last is not None and top.epoch == last.epoch and top.offset < last.offset:
                top = await self._renew(top, last)
        except (HistoryError, BackendError) as exc:
            metrics.ROOM_STORE_ERRORS.labels(operation="top").inc()
            logger.debug("Room %r: position check failed: %s", self.room, exc)
            return
        for member in list(self.members.values()):
            current = member.position
            if current is None or current in self._reads:
                continue
            if member.held is not None:  # its read failed: again
                self._read(member)
            elif top is None or top.epoch != current.epoch or top.offset > current.offset:
                member.held = []
                self._read(member)

    def _given_again(self, last: Position) -> None:
        """The engine published an offset of this history a second time: it went back (acknowledged
        entries lost in a failover) and another process, which had not been given them, appended
        after it. A new epoch, once per history, and every member checked."""
        if self._renewing == last.epoch:
            return
        self._renewing = last.epoch
        self._spawn(self._renew_again(last))

    async def _renew_again(self, last: Position) -> None:
        try:
            if await self.store.renew(self.room, last, again=True):
                metrics.ROOM_HISTORIES_LOST.inc()
                logger.warning(
                    "Room %r: the engine gave offset %d of its history again (entries lost in a failover?); "
                    "a new epoch begins and members are told what they missed",
                    self.room,
                    last.offset,
                )
        except (HistoryError, BackendError) as exc:
            metrics.ROOM_STORE_ERRORS.labels(operation="renew").inc()
            logger.warning("Room %r: cannot start a new epoch: %s", self.room, exc)
            self._renewing = None  # the next entry given again tries again
            return
        await self.check()

    async def _renew(self, top: Position, last: Position) -> Position | None:
        """The engine's history went back below what this process was given (acknowledged entries
        lost in a failover): a new epoch, so that members are told, and no offset given twice."""
        if await self.store.renew(self.room, last):
            metrics.ROOM_HISTORIES_LOST.inc()
            logger.warning(
                "Room %r: the engine's history went back from offset %d to %d (entries lost in a "
                "failover?); a new epoch begins and members are told what they missed",
                self.room,
                last.offset,
                top.offset,
            )
        return await self.store.top(self.room)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    def _hold(self, member: Member, item: Item) -> None:
        assert member.held is not None
        size = item[1].size
        if member.held_bytes + size > member.connection.max_bytes:
            metrics.CHAT_SLOW_CLIENTS.inc()
            member.connection.close(status.WS_1013_TRY_AGAIN_LATER, TOO_SLOW, flush=False)
            self.discard(member.connection)
            return
        member.held.append(item)
        member.held_bytes += size

    def _read(self, member: Member) -> None:
        """Read the store from the member's position; members at the same position share the read."""
        position = member.position
        assert position is not None
        waiting = self._reads.get(position)
        if waiting is not None:
            if member not in waiting:
                waiting.append(member)
            return
        self._reads[position] = [member]
        self._spawn(self._fill(position))

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fill(self, since: Position) -> None:
        try:
            replay = await self.store.replay(self.room, since.offset, since.epoch)
        except (HistoryError, BackendError) as exc:  # they stay held; the next check reads again
            metrics.ROOM_STORE_ERRORS.labels(operation="replay").inc()
            logger.warning("Room %r: cannot read what members missed after %d: %s", self.room, since.offset, exc)
            self._reads.pop(since, None)
            return
        except BaseException:
            self._reads.pop(since, None)
            raise
        waiting = self._reads.pop(since, [])
        text = gap(self.room, since.offset, replay) if replay.missed != 0 else None
        for member in waiting:
            if self.members.get(member.connection) is not member or member.position != since:
                continue
            send = member.connection.send_text_nowait
            if text is not None:
                metrics.ROOM_GAPS.inc()
                send(text)
            for entry in replay.entries:
                send(entry.payload)
            metrics.ROOM_HOLES_FILLED.inc(len(replay.entries))
            member.position = replay.position
            self._flush(member)

    def _flush(self, member: Member) -> None:
        """Send what the member held, in order, now that it has everything before it."""
        held, member.held, member.held_bytes = member.held or [], None, 0
        for item in held:
            self._offer(member, item)

    def _offer(self, member: Member, item: Item) -> None:
        """Give `member` an entry (or a presence change): send it, drop it, or hold it behind a read."""
        if member.held is not None:
            self._hold(member, item)
            return
        position, text = item
        current = member.position
        assert current is not None
        if position is not None and (position.epoch != current.epoch or position.offset > current.offset + 1):
            member.held = []  # a hole, or another history: what is missing comes first
            self._hold(member, item)
            self._read(member)
        elif position is None or position.offset == current.offset + 1:
            if position is not None:
                member.position = position
            member.connection.send_nowait(text)
