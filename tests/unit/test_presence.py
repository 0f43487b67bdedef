"""A room's arrivals and departures past its presence rate coalesce into member lists, and none is lost."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import anyio
import pytest

from starlette_ws.history import RoomStore
from starlette_ws.hub import Hub
from starlette_ws.presence import Presence


class Published:
    """A hub that records what is published."""

    def __init__(self) -> None:
        self.texts: list[dict[str, Any]] = []

    async def publish(self, channel: str, text: str) -> None:
        self.texts.append(json.loads(text))


class SlowMembers:
    """A store whose member list answers when the test says so, as it was when it was asked."""

    def __init__(self) -> None:
        self.present: list[str] = []
        self.reading = asyncio.Event()
        self.answer = asyncio.Event()

    async def members(self, room: str) -> list[str]:
        snapshot = sorted(self.present)
        self.reading.set()
        await self.answer.wait()
        return snapshot


def change(kind: str, client_id: int) -> dict[str, Any]:
    return {"type": kind, "room": "r", "client_id": client_id, "time": 0.0}


@pytest.mark.anyio
async def test_a_change_while_the_member_list_is_read_gets_another_list() -> None:
    with anyio.fail_after(5):
        hub, store = Published(), SlowMembers()
        here = {"c"}  # the room's channel has members here: its announcements are rate-bounded
        rooms = Presence(cast(Hub, hub), cast(RoomStore, store), 30.0, 100.0, 1, here.__contains__)
        store.present = ["1"]
        await rooms.announce("r", "c", change("join", 1))  # within the burst: announced as it is
        store.present = ["1", "2"]
        await rooms.announce("r", "c", change("join", 2))  # past it: a member list, a little later
        await store.reading.wait()  # the list is being read...
        store.present = ["1", "2", "3"]
        await rooms.announce("r", "c", change("join", 3))  # ...when 3 arrives: it must not be lost
        store.answer.set()
        await asyncio.gather(*rooms._coalescing.values())
        assert hub.texts == [
            change("join", 1),
            {"type": "presence", "room": "r", "members": [1, 2]},  # as read
            {"type": "presence", "room": "r", "members": [1, 2, 3]},  # then once more, with 3
        ]
        await rooms.stop()
