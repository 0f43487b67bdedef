"""A room's stream against a real memory store and fake sockets: each member gets every entry
once, in order, or a gap; holes are filled from the store, other epochs announced."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from starlette_ws.connection import Connection
from starlette_ws.history import Position, pack
from starlette_ws.history.memory import MemoryStore
from starlette_ws.hub import seal
from starlette_ws.recovery import RoomStream, recent, removal
from tests.unit.fakes import FakeSend, socket

pytestmark = pytest.mark.anyio
ROOM = "r"


class Bus:
    """What the store publishes, kept so that a test decides what reaches the stream."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def publish(self, channel: str, message: str) -> None:
        self.published.append(message)


def store() -> tuple[MemoryStore, Bus]:
    bus = Bus()
    memory = MemoryStore("memory://", "t:", 100, 300.0)
    memory._bus = bus  # type: ignore[assignment]
    return memory, bus


def member_of(stream: RoomStream, at: Position) -> FakeSend:
    send = FakeSend()
    connection = Connection(socket(send), 1 << 20, lambda _: None)
    stream.release(stream.add(connection), at)
    return send


def texts(send: FakeSend) -> list[dict[str, Any]]:
    return [json.loads(text) for text in send.texts]


async def say(memory: MemoryStore, *lines: str) -> None:
    for line in lines:
        await memory.append(ROOM, f'"type":"message","text":"{line}"}}')


async def settled(stream: RoomStream) -> None:
    for _ in range(10):
        await asyncio.sleep(0)
    await stream.stop()


async def test_entries_in_order_go_out_once_and_what_a_member_has_is_dropped() -> None:
    memory, bus = store()
    stream = RoomStream(ROOM, memory)
    top = (await memory.replay(ROOM, None, None)).position
    send = member_of(stream, top)
    await say(memory, "a", "b")
    for text in bus.published + bus.published:  # each twice: the second copy is dropped
        stream.deliver(text)
    assert [(m["offset"], m["text"]) for m in texts(send)] == [(1, "a"), (2, "b")]


async def test_a_hole_is_filled_from_the_store_before_what_comes_after_it() -> None:
    memory, bus = store()
    stream = RoomStream(ROOM, memory)
    send = member_of(stream, (await memory.replay(ROOM, None, None)).position)
    await say(memory, "a", "b", "c", "d")
    stream.deliver(bus.published[0])
    stream.deliver(bus.published[3])  # 2 and 3 were lost on the way
    await settled(stream)
    assert [m["offset"] for m in texts(send)] == [1, 2, 3, 4]
    stream.deliver(bus.published[2])  # late: already filled
    assert [m["offset"] for m in texts(send)] == [1, 2, 3, 4]


async def test_members_at_one_position_share_one_read_and_a_new_epoch_is_a_gap_first() -> None:
    memory, bus = store()
    stream = RoomStream(ROOM, memory)
    old = Position(7, "0" * 16)  # a history the store no longer has
    sends = [member_of(stream, old) for _ in range(3)]
    reads = 0
    replay = memory.replay

    async def counted(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        return await replay(*args)

    memory.replay = counted  # type: ignore[method-assign,assignment]
    await say(memory, "a", "b")
    stream.deliver(bus.published[1])
    await settled(stream)
    assert reads == 1
    for send in sends:
        first, *rest = texts(send)
        assert first["type"] == "gap" and first["missed"] is None and first["offset"] == 7
        assert first["epoch"] != old.epoch and [m["offset"] for m in rest] == [1, 2]
        assert {m["epoch"] for m in rest} == {first["epoch"]}


async def test_check_fills_a_hole_at_the_end_without_a_next_entry() -> None:
    memory, bus = store()
    stream = RoomStream(ROOM, memory)
    send = member_of(stream, (await memory.replay(ROOM, None, None)).position)
    await say(memory, "a", "b")
    stream.deliver(bus.published[0])  # "b" never arrives
    await stream.check()
    await settled(stream)
    assert [m["text"] for m in texts(send)] == ["a", "b"]


async def test_a_joining_member_holds_until_released_then_skips_what_its_replay_had() -> None:
    memory, bus = store()
    stream = RoomStream(ROOM, memory)
    send = FakeSend()
    member = stream.add(Connection(socket(send), 1 << 20, lambda _: None))
    await say(memory, "a", "b")
    for text in bus.published:
        stream.deliver(text)
    stream.deliver(seal("0" * 16, 1, '{"type":"join","client_id":3}'))  # presence: unnumbered
    assert send.texts == []
    stream.release(member, Position(1, (await memory.top(ROOM) or Position(0, "")).epoch))  # it was sent "a"
    assert [m.get("text", m["type"]) for m in texts(send)] == ["b", "join"]


async def test_a_member_that_holds_past_its_bound_is_closed_with_1013() -> None:
    memory, _ = store()
    stream = RoomStream(ROOM, memory)
    send = FakeSend()
    connection = Connection(socket(send), 100, lambda _: None)
    stream.add(connection)
    stream.deliver(pack(1, "e" * 16, "x" * 101))
    await asyncio.sleep(0.01)
    assert send.closes == [(1013, "Try again later: not reading fast enough")]
    assert connection not in stream.members


@pytest.mark.contract("B30")
async def test_a_removal_closes_every_connection_of_the_client_and_none_other() -> None:
    """The server API's removal, as it arrives on the room's channel; one still joining is closed
    once released, after what it was sent first; a control message never reaches a client."""
    memory, _ = store()
    stream = RoomStream(ROOM, memory)
    top = (await memory.replay(ROOM, None, None)).position
    sends = [FakeSend() for _ in range(3)]
    connections = [Connection(socket(send), 1 << 20, lambda _: None) for send in sends]
    stream.release(stream.add(connections[0], 7), top)
    stream.release(stream.add(connections[1], 8), top)
    joining = stream.add(connections[2], 7)
    stream.deliver(seal("0" * 16, 1, removal(7)))
    stream.deliver(seal("0" * 16, 2, removal(99)))  # nobody here
    await asyncio.sleep(0.01)
    reason = f"Removed from room {ROOM!r} by the server"
    assert [send.closes for send in sends] == [[(4003, reason)], [], []]
    stream.release(joining, top)
    await asyncio.sleep(0.01)
    assert sends[2].closes == [(4003, reason)]
    assert all(send.texts == [] for send in sends)
    await settled(stream)


async def test_recent_keeps_the_newest_entries_within_the_budget() -> None:
    memory, _ = store()
    await say(memory, "a" * 10, "b" * 10, "c" * 10)
    replay = await memory.replay(ROOM, None, None)
    size = len(replay.entries[0].payload.encode())
    assert [json.loads(text)["text"][0] for text in recent(replay, 2 * size)] == ["b", "c"]
    assert recent(replay, size - 1) == []
