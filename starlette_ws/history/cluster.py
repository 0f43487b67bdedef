"""Rooms' history and presence on a Redis Cluster: the Redis store's keys and scripts, each room
in one hash slot.

A room's keys and its shard channel carry the hash tag of the room's channel's partition
(`cluster_nodes.tag_of`), so the append script keeps, trims and SPUBLISHes an entry in one step
on the master that owns the room, and rooms spread over the masters by partition. The list of
rooms is one key of its own (in another slot): presence changes update it with a second script,
and `rooms()` asks each listed room's slot for its members.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette_ws.backends.cluster import ping_masters
from starlette_ws.backends.cluster_nodes import Nodes, tag_of
from starlette_ws.backends.redis_client import ERRORS, Unanswered
from starlette_ws.history.base import HistoryError, HistoryUncertain, room_channel
from starlette_ws.history.redis import RedisStore, milliseconds, script_sha
from starlette_ws.history.redis_lua import ABSENT, LISTED, LISTING, PRESENT, SHARDED_APPEND
from starlette_ws.history.redis_lua import MEMBERS as MEMBERS_SCRIPT


class ClusterStore(RedisStore):
    append_script = SHARDED_APPEND

    def __init__(self, url: str, prefix: str, history: int, seconds: float, **options: Any) -> None:
        super().__init__(url, prefix, history, seconds, **options)
        self.nodes = Nodes(url, self.timeout, self.pool_size, protocol=2)

    @staticmethod
    def address_of(url: str) -> str:
        return "the Redis Cluster"

    async def connect(self) -> None:
        try:
            await self.nodes.refresh()
        except ERRORS as exc:
            await self.disconnect()
            raise HistoryError(f"Redis Cluster is unreachable: {exc}") from exc

    async def disconnect(self) -> None:
        await self.nodes.close()

    async def ping(self) -> None:
        await ping_masters(self.nodes, "Redis Cluster", HistoryError)

    async def present(self, room: str, member: str, client_id: str, ttl: float) -> bool:
        args = [room, member, client_id, milliseconds(ttl)]
        arrived, until = await self._run(PRESENT, self._presence_keys(room), args)
        await self._run(LISTED, [self._rooms_key], [room, until])
        return bool(arrived)

    async def absent(self, room: str, member: str) -> bool:
        left, until = await self._run(ABSENT, self._presence_keys(room), [room, member])
        await self._run(LISTED, [self._rooms_key], [room, until])
        return bool(left)

    async def rooms(self) -> dict[str, list[str]]:
        names = await self._run(LISTING, [self._rooms_key], [])
        found = await asyncio.gather(*(self._run(MEMBERS_SCRIPT, self._presence_keys(room), [room]) for room in names))
        return {room: sorted(set(ids)) for room, ids in sorted(zip(names, found, strict=True)) if ids}

    @property
    def _rooms_key(self) -> str:
        return f"{self.prefix}rooms"

    def _key(self, kind: str, room: str) -> str:
        return f"{tag_of(room_channel(self.prefix, room))}{self.prefix}{kind}:{room}"

    def _channel(self, room: str) -> str:
        channel = room_channel(self.prefix, room)
        return tag_of(channel) + channel

    def _presence_keys(self, room: str) -> list[str]:
        return [self._key("presence", room), self._key("presence-ids", room)]

    async def _run(self, script: str, keys: list[str], args: list[Any], *, uncertain: bool = False) -> Any:
        """EVALSHA on the master of the keys' slot (EVAL when it lacks the script), following the
        cluster's redirections; a failure before the command was written means it did not run."""
        try:
            return await self.nodes.run(keys[0], "EVALSHA", script_sha(script), len(keys), *keys, *args, script=script)
        except Unanswered as exc:
            if uncertain and exc.sent:
                raise HistoryUncertain(f"sent to the Redis Cluster, then {exc.reason}") from exc.__cause__
            raise HistoryError(f"Redis Cluster failed: {exc.reason}") from exc.__cause__
        except ERRORS as exc:  # no master serves the slot now
            raise HistoryError(f"Redis Cluster failed: {exc}") from exc
