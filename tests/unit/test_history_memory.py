"""The memory:// room store: offsets, trimming by count and age, replay and presence."""

from __future__ import annotations

import json

import anyio
import pytest

from starlette_ws.backends import Event
from starlette_ws.backends.memory import MemoryBackend, MemoryBus
from starlette_ws.history import Entry, Position, room_channel, unpack
from starlette_ws.history.memory import MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store(history: int = 100, seconds: float = 300.0, bus: MemoryBus | None = None) -> tuple[MemoryStore, Clock]:
    memory = MemoryStore("memory://", "t:", history, seconds, bus)
    clock = memory.clock = Clock()
    return memory, clock


def rest(text: str) -> str:
    return json.dumps({"type": "message", "text": text}, separators=(",", ":"))[1:]


def texts(entries: tuple[Entry, ...]) -> list[str]:
    return [json.loads(entry.payload)["text"] for entry in entries]


@pytest.mark.anyio
async def test_offsets_count_up_per_room_and_the_payload_starts_with_offset_and_epoch() -> None:
    with anyio.fail_after(5):
        memory, _ = store()
        first = await memory.append("a", rest("x"))
        second = await memory.append("a", rest("y"))
        other = await memory.append("b", rest("z"))
        assert (first.offset, second.offset, other.offset) == (1, 2, 1)
        epoch = first.epoch
        assert second.epoch == epoch and other.epoch != epoch  # each room has a history of its own
        assert second.payload == f'{{"offset":2,"epoch":"{epoch}","type":"message","text":"y"}}'
        assert json.loads(second.payload) == {"offset": 2, "epoch": epoch, "type": "message", "text": "y"}
        assert await memory.top("a") == Position(2, epoch) == second.position
        assert await memory.top("b") == other.position


@pytest.mark.anyio
async def test_append_publishes_on_the_rooms_channel_in_offset_order() -> None:
    with anyio.fail_after(5):
        bus = MemoryBus()
        backend = MemoryBackend("memory://", bus)
        await backend.connect()
        await backend.subscribe(room_channel("t:", "a"))
        memory, _ = store(bus=bus)
        for n in range(5):
            await memory.append("a", rest(str(n)))
        await memory.append("b", rest("elsewhere"))
        got = [await backend.next_published() for _ in range(5)]
        unpacked = [unpack(event.message) for event in got]
        epoch = (await memory.replay("a", None, None)).epoch
        assert [position for position, _ in unpacked] == [Position(n, epoch) for n in range(1, 6)]
        assert [json.loads(text)["offset"] for _, text in unpacked] == [1, 2, 3, 4, 5]
        assert got[0].message == f'#1:{epoch}\n{{"offset":1,"epoch":"{epoch}","type":"message","text":"0"}}'
        assert {event.channel for event in got} == {"t:room:a"}
        assert backend._events.empty()  # room b is another channel
        assert isinstance(got[0], Event)


@pytest.mark.anyio
async def test_history_keeps_the_last_entries_by_count_and_age() -> None:
    with anyio.fail_after(5):
        memory, clock = store(history=3, seconds=10)
        for n in range(5):
            await memory.append("a", rest(str(n)))
        replay = await memory.replay("a", None, None)
        assert [entry.offset for entry in replay.entries] == [3, 4, 5]
        assert replay.last == 5
        clock.now += 6
        await memory.append("a", rest("later"))
        clock.now += 6  # the first five are now 12 s old, the sixth 6 s
        replay = await memory.replay("a", None, None)
        assert [entry.offset for entry in replay.entries] == [6]
        clock.now += 6
        replay = await memory.replay("a", None, None)
        assert replay.entries == () and replay.last == 6


@pytest.mark.anyio
async def test_replay_after_an_offset_counts_what_is_missed() -> None:
    with anyio.fail_after(5):
        memory, _ = store(history=3)
        for n in range(1, 6):
            await memory.append("a", rest(str(n)))
        top = await memory.top("a")
        assert top is not None and top.offset == 5
        epoch = top.epoch
        # retained: 3, 4, 5
        replay = await memory.replay("a", 3, epoch)
        assert (texts(replay.entries), replay.missed, replay.epoch) == (["4", "5"], 0, epoch)
        replay = await memory.replay("a", 2, epoch)
        assert (texts(replay.entries), replay.missed) == (["3", "4", "5"], 0)
        replay = await memory.replay("a", 0, epoch)
        assert (texts(replay.entries), replay.missed) == (["3", "4", "5"], 2)
        replay = await memory.replay("a", 5, epoch)
        assert (replay.entries, replay.missed, replay.last) == ((), 0, 5)
        assert await memory.top("nobody-here") is None  # never written: no history yet
        replay = await memory.replay("nobody-here", 0, None)
        assert (replay.entries, replay.missed, replay.last) == ((), 0, 0)
        assert await memory.top("nobody-here") == Position(0, replay.epoch)  # a replay makes the room
        replay = await memory.replay("nobody-else", 0, epoch)  # another room's epoch: another history
        assert (replay.entries, replay.missed, replay.last) == ((), None, 0)


@pytest.mark.anyio
async def test_replay_with_another_epoch_or_an_offset_never_given_is_a_lost_history() -> None:
    with anyio.fail_after(5):
        memory, _ = store()
        await memory.append("a", rest("1"))
        await memory.append("a", rest("2"))
        epoch = (await memory.replay("a", None, None)).epoch
        other = store()[0]
        elsewhere = (await other.append("a", rest("1"))).epoch
        assert elsewhere != epoch  # a restarted store is another history
        replay = await memory.replay("a", 1, elsewhere)
        assert (texts(replay.entries), replay.missed, replay.epoch) == (["1", "2"], None, epoch)
        replay = await memory.replay("a", 7, epoch)
        assert (texts(replay.entries), replay.missed) == (["1", "2"], None)


@pytest.mark.anyio
async def test_presence_lists_client_ids_once_until_absent_or_expired() -> None:
    with anyio.fail_after(5):
        memory, clock = store()
        assert await memory.present("a", "m1", "7", ttl=30)  # client 7 arrives
        assert not await memory.present("a", "m2", "7", ttl=30)  # the same client twice: listed once
        assert await memory.present("a", "m3", "12", ttl=10)
        assert await memory.present("b", "m4", "3", ttl=30)
        assert await memory.members("a") == ["12", "7"]
        assert await memory.rooms() == {"a": ["12", "7"], "b": ["3"]}
        assert await memory.absent("b", "m4")  # client 3's last connection: it left
        assert not await memory.absent("b", "m4")  # not there any more
        clock.now += 11  # m3 not refreshed
        assert await memory.members("a") == ["7"]
        assert not await memory.present("a", "m1", "7", ttl=30)  # refreshed: not a new arrival
        clock.now += 25
        assert await memory.members("a") == ["7"]
        assert await memory.rooms() == {"a": ["7"]}
        assert await memory.members("nowhere") == []


@pytest.mark.anyio
async def test_a_client_id_leaves_with_its_last_connection() -> None:
    with anyio.fail_after(5):
        memory, _ = store()
        assert await memory.present("a", "m1", "7", ttl=30)
        assert not await memory.present("a", "m2", "7", ttl=30)
        assert not await memory.absent("a", "m1")  # its other tab is still there
        assert await memory.members("a") == ["7"]
        assert await memory.absent("a", "m2")
        assert await memory.members("a") == []
        assert not await memory.absent("nowhere", "m1")


@pytest.mark.anyio
async def test_clean_drops_rooms_with_neither_entries_nor_members_and_a_room_made_again_is_a_new_history() -> None:
    with anyio.fail_after(5):
        memory, clock = store(seconds=10)
        old = await memory.append("a", rest("1"))
        await memory.present("b", "m1", "7", ttl=30)
        assert await memory.clean() == 0  # a's entry is young, b has a member
        clock.now += 11
        assert await memory.clean() == 1  # a's entry is past retention: a goes, b stays
        assert await memory.top("a") is None and await memory.members("b") == ["7"]
        new = await memory.append("a", rest("2"))
        assert new.offset == 1 and new.epoch != old.epoch
        replay = await memory.replay("a", old.offset, old.epoch)
        assert (texts(replay.entries), replay.missed) == (["2"], None)
