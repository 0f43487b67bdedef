"""`starlette_ws.presence`: who arrives and leaves (a real memory store), what is announced at once
and what coalesces into member lists, the heartbeat, and member ids as clients see them."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

import anyio
import pytest
from prometheus_client import REGISTRY

from starlette_ws.backends.memory import MemoryBackend
from starlette_ws.history import HistoryError, RoomStore
from starlette_ws.history.memory import MemoryStore
from starlette_ws.hub import Hub
from starlette_ws.presence import Presence, members_of
from tests.unit.fakes import FakeSend, settle, socket

pytestmark = pytest.mark.anyio


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


class Counting(MemoryStore):
    """The memory store, recording each `present` and failing it while `failing` is set."""

    def __init__(self) -> None:
        super().__init__("memory://", "t:", 100, 300.0)
        self.calls: list[tuple[str, str, str, float]] = []
        self.failing = False
        self.failed = 0

    async def present(self, room: str, member: str, client_id: str, ttl: float) -> bool:
        self.calls.append((room, member, client_id, ttl))
        if self.failing:
            self.failed += 1
            raise HistoryError("Redis at 127.0.0.1:1 does not answer")
        return await super().present(room, member, client_id, ttl)


def presence_on(store: RoomStore, hub: Hub | None = None, *, ttl: float = 30.0, burst: int = 2) -> Presence:
    return Presence(hub or Hub(MemoryBackend(), 1000), store, ttl, 50.0, burst, {"c"}.__contains__)


async def test_a_client_id_arrives_with_its_first_connection_and_leaves_with_its_last() -> None:
    store = MemoryStore("memory://", "t:", 100, 300.0)
    presence = presence_on(store)
    assert await presence.here("r", "tab-1", "7") is True
    assert await presence.here("r", "tab-2", "7") is False  # a second tab of the same client
    assert await presence.here("r", "other", "8") is True
    assert await presence.here("elsewhere", "tab-3", "7") is True  # rooms are counted apart
    assert await store.members("r") == ["7", "8"]
    assert presence.local == {
        "tab-1": ("r", "7"),
        "tab-2": ("r", "7"),
        "other": ("r", "8"),
        "tab-3": ("elsewhere", "7"),
    }
    assert await presence.gone("r", "tab-1") is False  # tab-2 is still there
    assert await store.members("r") == ["7", "8"]
    assert await presence.gone("r", "tab-2") is True
    assert await presence.gone("r", "tab-2") is False  # not there any more
    assert await store.members("r") == ["8"]
    assert set(presence.local) == {"other", "tab-3"}


async def listening_member() -> tuple[Hub, FakeSend]:
    hub = Hub(MemoryBackend(), 1 << 20)
    await hub.start()
    send = FakeSend()
    await hub.join("c", socket(send))
    return hub, send


def received(send: FakeSend) -> list[dict[str, Any]]:
    return [json.loads(text) for text in send.texts]


async def test_changes_within_the_burst_go_out_at_once_and_then_coalesce_into_a_member_list() -> None:
    with anyio.fail_after(5):
        hub, send = await listening_member()
        store = MemoryStore("memory://", "t:", 100, 300.0)
        presence = presence_on(store, hub, burst=2)
        try:
            for client_id in (1, 2, 3):
                await presence.here("r", f"m{client_id}", str(client_id))
                await presence.announce("r", "c", change("join", client_id))
            await settle()
            assert received(send) == [change("join", 1), change("join", 2)]  # the third waits
            await asyncio.gather(*presence._coalescing.values())
            await settle()
            assert received(send)[2:] == [{"type": "presence", "room": "r", "members": [1, 2, 3]}]
        finally:
            await presence.stop()
            await hub.stop()


async def test_a_room_with_no_members_here_announces_every_change_and_forget_renews_its_budget() -> None:
    with anyio.fail_after(5):
        hub, send = await listening_member()
        store = MemoryStore("memory://", "t:", 100, 300.0)
        members_here: set[str] = set()
        presence = Presence(hub, store, 30.0, 50.0, 1, members_here.__contains__)
        try:
            for client_id in (1, 2, 3):  # the last member here left: no budget to spend
                await presence.announce("r", "c", change("leave", client_id))
            members_here.add("c")
            await presence.announce("r", "c", change("join", 4))  # a new budget of 1
            presence.forget("r")
            await presence.announce("r", "c", change("join", 5))  # forgotten: a new budget again
            await settle()
            assert [text["client_id"] for text in received(send)] == [1, 2, 3, 4, 5]
            assert not presence._coalescing
            await presence.announce("r", "c", change("join", 6))  # its budget spent: coalesced
            (coalescing,) = presence._coalescing.values()
        finally:
            await presence.stop()
            await hub.stop()
        assert coalescing.cancelled()  # `stop` ended the list on its way


async def test_the_beat_refreshes_this_loops_members_until_they_are_gone() -> None:
    store = Counting()
    now = [0.0]
    store.clock = lambda: now[0]
    presence = presence_on(store, ttl=0.03)  # a beat every 10 ms (real time); the store's clock is the test's
    await presence.here("r", "a", "1")
    await presence.here("r", "b", "2")
    await presence.gone("r", "b")
    store.calls.clear()
    now[0] = 0.02  # within the ttl from `here`
    with anyio.fail_after(5):
        beating = asyncio.create_task(presence.beat())
        try:
            while not store.calls:  # noqa: ASYNC110 - the beat sets no event: its calls are read
                await asyncio.sleep(0.005)
            now[0] = 0.04  # past the ttl from `here`, within it from the beat's refresh
            assert await store.members("r") == ["1"]
            now[0] = 0.1  # and gone once the beats stop
            beating.cancel()
            assert await store.members("r") == []
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
    assert set(store.calls) == {("r", "a", "1", 0.03)}  # b left: it is not brought back


def store_errors() -> float:
    return REGISTRY.get_sample_value("starlette_ws_room_store_errors_total", {"operation": "present"}) or 0.0


async def test_a_failing_beat_stops_at_its_first_failure_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="starlette_ws.presence")
    store = Counting()
    presence = presence_on(store, ttl=0.03)
    for member in ("a", "b", "c"):
        await presence.here("r", member, member)
    store.calls.clear()
    store.failing = True
    errors = store_errors()
    with anyio.fail_after(5):
        beating = asyncio.create_task(presence.beat())
        try:
            while len(store.calls) < 3:  # noqa: ASYNC110 - the beat sets no event: its calls are read
                await asyncio.sleep(0.005)
            assert [member for _, member, _, _ in store.calls[:3]] == ["a", "a", "a"]  # one try per beat
            store.failing = False
            while store.calls[-1][1] != "c":  # noqa: ASYNC110 - the beat sets no event: its calls are read
                await asyncio.sleep(0.005)
            await asyncio.sleep(0)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
    failures = store.failed
    assert failures >= 3
    assert store_errors() == errors + failures
    lines = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert lines[0] == ("WARNING", "Room members not refreshed: Redis at 127.0.0.1:1 does not answer")
    assert lines[1] == ("INFO", f"Room members not refreshed: over ({failures - 1} more failures since the last line)")
    assert len(lines) == 2


def test_members_of_gives_client_ids_as_numbers() -> None:
    assert members_of(["0", "12", "9223372036854775807"]) == [0, 12, 9223372036854775807]
    assert members_of(["guest", "1a", ""]) == ["guest", "1a", ""]
    assert members_of(["²", "٣"]) == ["²", "٣"]  # digits, but not a client id's
    assert members_of([]) == []


@pytest.mark.anyio
async def test_stop_forgets_a_member_list_cancelled_before_it_ran() -> None:
    with anyio.fail_after(5):
        hub = Published()
        presence = presence_on(MemoryStore("memory://", "t:", 100, 300.0), cast(Hub, hub), burst=1)
        await presence.announce("r", "c", change("join", 1))
        await presence.announce("r", "c", change("join", 2))  # past the burst: a list is due
        assert "r" in presence._coalescing
        await presence.stop()  # before that list's task ever ran
        assert presence._coalescing == {} and presence._again == set()
