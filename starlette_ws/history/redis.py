"""Rooms' history and presence in Redis, next to the Redis broadcast backend.

Keys, all under the deployment's `prefix` (the kind before the room, so no room name can make
one kind of key look like another):

- `{prefix}meta:{room}`, a hash: `epoch` (16 hex digits, set when missing, so it changes when
  the key is lost: FLUSHALL, a Redis restarted without persistence) and `last`, the room's last
  offset. It expires after `idle` seconds (default a day, at least `seconds`) without appends or
  replays; a client that comes back after that learns from the new epoch that it missed an
  unknown number of messages.
- `{prefix}history:{room}`, a Stream with one entry per message, fields `o` (offset) and `p`
  (payload), IDs chosen by Redis (its clock in ms), trimmed to the last `history` entries and to
  those younger than `seconds`. It expires after `seconds` without appends, when every entry
  would be too old anyway.
- `{prefix}presence:{room}`, a sorted set: member -> the time (Redis's clock, ms) it expires;
  `{prefix}presence-ids:{room}`, a hash: member -> client id. Both expire with their last member.
- `{prefix}rooms`, a sorted set: room -> when its last member expires; it expires with them.

Every operation is one Lua script, run where the data is, with Redis's clock: an append assigns
the offset, builds the payload, adds and trims the entry and PUBLISHes it on the room's channel
in one atomic step, so every subscriber in every process receives a room's entries in offset
order. `rooms()` reads each room's presence keys by name from its script, so the store expects
one Redis server (not a Cluster).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from starlette_ws import metrics
from starlette_ws.backends.base import address_of
from starlette_ws.backends.redis_client import ERRORS, PORT, Unanswered, client_for, in_steps
from starlette_ws.backends.retry import describe
from starlette_ws.history.base import (
    Entry,
    HistoryError,
    HistoryUncertain,
    Kept,
    Position,
    Replay,
    replay_of,
    room_channel,
)
from starlette_ws.history.redis_lua import (
    ABSENT,
    APPEND,
    MEMBERS,
    PRESENT,
    RENEW,
    REPLAY,
    RESET,
    ROOMS,
    TOP,
)


class RedisStore(Kept):
    """`RoomStore` in Redis: a small pool without retries (an append sent twice would be kept
    and published twice), each call one script, EVALSHA with EVAL when the server lacks it."""

    def __init__(
        self,
        url: str,
        prefix: str,
        history: int,
        seconds: float,
        *,
        timeout: float = 2.0,
        idle: float = 86400.0,
        pool_size: int = 50,
    ) -> None:
        super().__init__(prefix, history, seconds)
        self.url = url
        self.timeout = timeout
        self.idle = max(idle, seconds)
        self.pool_size = pool_size
        self.address = self.address_of(url)
        self._client: Redis | None = None

    @staticmethod
    def address_of(url: str) -> str:
        return address_of(url, PORT)

    async def connect(self) -> None:
        """Reach Redis once; a server that is not there at start-up is a configuration error."""
        self._client = client_for(self.url, self.timeout, self.pool_size, protocol=2)
        try:
            await self._client.ping()
        except ERRORS as exc:
            await self.disconnect()
            raise HistoryError(f"Redis at {self.address} is unreachable: {describe(exc)}") from exc

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def append(self, room: str, rest: str, seen: Position | None = None) -> Entry:
        keys = [self._key("meta", room), self._key("history", room)]
        args = [
            secrets.token_hex(8),
            rest,
            self._channel(room),
            self.history,
            milliseconds(self.seconds),
            milliseconds(self.idle),
            *((seen.offset, seen.epoch) if seen is not None else ("", "")),
        ]
        offset, epoch, text = await self._run(self.append_script, keys, args, uncertain=True)
        return Entry(int(offset), epoch, text)

    async def renew(self, room: str, seen: Position, again: bool = False) -> bool:
        """A new epoch when the room's history went back from `seen` (see `redis_lua.GONE_BACK`)."""
        keys = [self._key("meta", room), self._key("history", room)]
        return bool(await self._run(RENEW, keys, [seen.offset, seen.epoch, "1" if again else "0"]))

    async def replay(self, room: str, since: int | None, epoch: str | None) -> Replay:
        keys = [self._key("meta", room), self._key("history", room)]
        args = [
            secrets.token_hex(8),
            "" if since is None else since,
            epoch or "",
            milliseconds(self.seconds),
            milliseconds(self.idle),
        ]
        now, last, *flat = await self._run(REPLAY, keys, args)
        entries = [Entry(int(offset), now, text) for offset, text in zip(flat[::2], flat[1::2], strict=True)]
        return replay_of(now, entries, int(last), since, epoch)

    async def reset(self, room: str) -> None:
        await self._run(RESET, [self._key("meta", room), self._key("history", room)], [])

    async def top(self, room: str) -> Position | None:
        epoch, last = await self._run(TOP, [self._key("meta", room)], [])
        return None if epoch is None else Position(int(last or 0), epoch)

    async def present(self, room: str, member: str, client_id: str, ttl: float) -> bool:
        arrived, _ = await self._run(PRESENT, self._presence_keys(room), [room, member, client_id, milliseconds(ttl)])
        return bool(arrived)

    async def absent(self, room: str, member: str) -> bool:
        left, _ = await self._run(ABSENT, self._presence_keys(room), [room, member])
        return bool(left)

    async def clean(self) -> int:
        """Nothing to do: every key expires by itself (see the module's docstring)."""
        return 0

    async def members(self, room: str) -> list[str]:
        return sorted(set(await self._run(MEMBERS, self._presence_keys(room), [room])))

    async def rooms(self) -> dict[str, list[str]]:
        flat = await self._run(ROOMS, [f"{self.prefix}rooms"], [self.prefix])
        rooms: dict[str, list[str]] = {}
        at = 0
        while at < len(flat):
            room, count = flat[at], int(flat[at + 1])
            rooms[room] = sorted(set(flat[at + 2 : at + 2 + count]))
            at += 2 + count
        return dict(sorted(rooms.items()))  # by name, as every store lists them

    append_script = APPEND

    def _key(self, kind: str, room: str) -> str:
        return f"{self.prefix}{kind}:{room}"

    def _channel(self, room: str) -> str:
        return room_channel(self.prefix, room)

    def _presence_keys(self, room: str) -> list[str]:
        return [self._key("presence", room), self._key("presence-ids", room), f"{self.prefix}rooms"]

    async def _run(self, script: str, keys: list[str], args: list[Any], *, uncertain: bool = False) -> Any:
        """EVALSHA on a pooled connection (EVAL if the server has not seen the script yet), in
        steps: a failure before the command is written means it did not run."""
        client = self._client
        if client is None:
            raise HistoryError("the Redis history store is not connected")

        async def evaluate(connection: Any) -> Any:
            await connection.send_command("EVALSHA", script_sha(script), len(keys), *keys, *args)
            try:
                return await connection.read_response()
            except NoScriptError:
                await connection.send_command("EVAL", script, len(keys), *keys, *args)
                return await connection.read_response()

        try:
            return await in_steps(client, self.timeout, evaluate, metrics.ROOM_POOL_WAITS.inc)
        except Unanswered as exc:
            if uncertain and exc.sent:
                raise HistoryUncertain(f"sent to Redis at {self.address}, then {exc.reason}") from exc.__cause__
            raise HistoryError(f"Redis at {self.address} failed: {exc.reason}") from exc.__cause__

    async def ping(self) -> None:
        """PING on a pooled connection within `timeout`, or `HistoryError`."""
        client = self._client
        if client is None:
            raise HistoryError("the Redis history store is not connected")

        async def ping(connection: Any) -> None:
            await connection.send_command("PING")
            await connection.read_response()

        try:
            await in_steps(client, self.timeout, ping)
        except Unanswered as exc:
            raise HistoryError(f"Redis at {self.address} does not answer: {exc.reason}") from exc.__cause__


def script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


def milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))
