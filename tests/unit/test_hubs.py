"""`starlette_ws.hubs` on memory://: a hub per event loop, started by the lifespan or by the loop's
first connection and stopped by the last; the rooms that come with it, their admission, their
streams, and the timers that check and clean them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from prometheus_client import REGISTRY

from starlette_ws.backends.memory import MemoryBackend
from starlette_ws.connection import CLOSED
from starlette_ws.history import HistoryError, Position
from starlette_ws.history.memory import MemoryStore
from starlette_ws.hub import Hub
from starlette_ws.hubs import Busy, Hubs, Rooms
from starlette_ws.probe import ANSWERED
from starlette_ws.settings import Settings
from tests.unit.fakes import FakeSend, settle, socket

ROOM, CHANNEL = "r", "t:room:r"


def test_each_event_loop_gets_a_hub_of_its_own() -> None:
    """As under Starlette's TestClient without `with`: a loop per connection, each with its hub."""
    hubs = Hubs(Settings(send_queue_bytes=1000))
    loops = [asyncio.new_event_loop(), asyncio.new_event_loop()]
    try:
        first, second = (loop.run_until_complete(hubs.acquire()) for loop in loops)
        assert first is not second
        assert loops[0].run_until_complete(hubs.acquire()) is first  # the same loop: the same hub
        stores = [loop.run_until_complete(hubs.store()) for loop in loops]
        assert stores[0] is stores[1]  # memory://: one history for the whole app
        assert first.listening and second.listening
        for loop, hub, times in zip(loops, (first, second), (2, 1), strict=True):
            for _ in range(times):
                loop.run_until_complete(hubs.release(hub))
        assert not first.listening and not second.listening  # each stopped with its last connection
    finally:
        for loop in loops:
            loop.close()


@pytest.mark.anyio
async def test_connections_asking_at_once_share_one_hub_that_stops_with_the_last_of_them() -> None:
    hubs = Hubs(Settings(send_queue_bytes=1000))
    with anyio.fail_after(5):
        first, second, third = await asyncio.gather(hubs.acquire(), hubs.acquire(), hubs.acquire())
        assert first is second is third and first.listening
        rooms = await hubs.rooms(first)
        member = await first.join("chat", socket(FakeSend()))
        assert len(hubs) == 1
        await hubs.release(first)
        await hubs.release(first)
        assert first.listening and all(not task.done() for task in rooms._tasks)  # one connection left
        await hubs.release(first)
        assert not first.listening and len(hubs) == 0
        assert all(task.done() for task in rooms._tasks)  # its rooms' timers stopped with it
        assert member.state is CLOSED
        again = await hubs.acquire()  # the next connection in this loop starts a new one
        assert again is not first and again.listening
        await hubs.release(again)


@pytest.mark.anyio
async def test_the_lifespan_starts_the_loops_hub_and_rooms_and_only_it_stops_them() -> None:
    hubs = Hubs(Settings(send_queue_bytes=1000))
    with anyio.fail_after(5):
        await hubs.start()
        hub = await hubs.acquire()
        rooms = await hubs.rooms(hub)
        assert all(not task.done() for task in rooms._tasks)  # started by `start`, not on first use
        await hubs.release(hub)
        assert hub.listening  # the last connection left: the lifespan's hub runs on
        assert await hubs.acquire() is hub
        await hubs.release(hub)
        await hubs.stop()
        assert not hub.listening and all(task.done() for task in rooms._tasks)
        await hubs.stop()  # nothing left to stop: nothing happens


@pytest.mark.anyio
async def test_memory_hubs_listen_and_answer_with_or_without_a_hub() -> None:
    hubs = Hubs(Settings(send_queue_bytes=1000))
    assert hubs.listening and hubs.probed is ANSWERED  # in the process: nothing to reach
    with anyio.fail_after(5):
        await hubs.start()
        try:
            assert hubs.listening and hubs.probed.ok
        finally:
            await hubs.stop()
    assert hubs.listening and hubs.probed is ANSWERED


def test_an_engine_no_hub_has_reached_is_neither_listening_nor_probed() -> None:
    hubs = Hubs(
        Settings(broadcast_url="redis://127.0.0.1:1/0", send_queue_bytes=1000)
    )  # nothing connects before a hub starts
    assert not hubs.listening
    assert not hubs.probed.ok
    assert hubs.probed.error == "not connected: no hub runs in this process (run the app's lifespan)"


@pytest.mark.anyio
async def test_a_hubs_rooms_start_once_however_many_ask_at_once() -> None:
    hubs = Hubs(Settings(send_queue_bytes=1000))
    with anyio.fail_after(5):
        hub = await hubs.acquire()
        try:
            asked = await asyncio.gather(*(hubs.rooms(hub) for _ in range(5)))
            assert all(rooms is asked[0] for rooms in asked)
            assert await hubs.rooms(hub) is asked[0] and asked[0].hub is hub
            assert len(asked[0]._tasks) == 3  # one beat, one check, one clean
        finally:
            await hubs.release(hub)


@contextlib.asynccontextmanager
async def rooms_on(store: MemoryStore, **options: Any) -> AsyncIterator[Rooms]:
    """A started hub (its own memory bus) and rooms on `store`, stopped after."""
    hub = Hub(MemoryBackend(), 1 << 20)
    await hub.start()
    rooms = Rooms(hub, store, Settings(**options))
    try:
        yield rooms
    finally:
        await rooms.stop()
        await hub.stop()


def memory_store() -> MemoryStore:
    return MemoryStore("memory://", "t:", 100, 300.0)


@pytest.mark.anyio
async def test_admitting_lets_in_connects_at_once_and_refuses_past_connect_wait() -> None:
    with anyio.fail_after(5):
        async with rooms_on(memory_store(), room_connects_at_once=2, room_connect_wait=0.05) as rooms:
            loop = asyncio.get_running_loop()
            async with contextlib.AsyncExitStack() as first, contextlib.AsyncExitStack() as second:
                await first.enter_async_context(rooms.admitting())
                await second.enter_async_context(rooms.admitting())
                started = loop.time()
                with pytest.raises(Busy):
                    async with rooms.admitting():
                        raise AssertionError("a third place was given")
                assert loop.time() - started >= 0.04  # it waited for a place first

                entered = asyncio.Event()

                async def third() -> None:
                    async with rooms.admitting():
                        entered.set()

                waiting = asyncio.create_task(third())
                await settle()
                assert not entered.is_set()
                await first.aclose()  # a place comes free within the wait
                await waiting
                assert entered.is_set()
            async with rooms.admitting(), rooms.admitting():  # both places were given back
                pass


@pytest.mark.anyio
async def test_a_place_is_given_back_when_the_set_up_fails() -> None:
    with anyio.fail_after(5):
        async with rooms_on(memory_store(), room_connects_at_once=1, room_connect_wait=0.05) as rooms:
            with pytest.raises(HistoryError):
                async with rooms.admitting():
                    raise HistoryError("the store went away")
            async with rooms.admitting():
                pass


@pytest.mark.anyio
async def test_forget_drops_a_stream_with_its_last_member_and_its_presence_budget() -> None:
    with anyio.fail_after(5):
        async with rooms_on(memory_store(), room_presence_burst=1) as rooms:
            hub = rooms.hub
            send = FakeSend()
            one, two = [await hub.join(CHANNEL, socket(send)) for _ in range(2)]
            stream = rooms.stream(ROOM, CHANNEL)
            assert rooms.stream(ROOM, CHANNEL) is stream  # one per room
            stream.add(one)
            stream.add(two)
            await rooms.presence.announce(ROOM, CHANNEL, {"type": "join", "client_id": 1})  # the budget: spent
            await rooms.forget(CHANNEL, one)
            assert rooms.streams == {CHANNEL: stream} and list(stream.members) == [two]
            await rooms.forget(CHANNEL, two)
            assert rooms.streams == {}
            await rooms.forget(CHANNEL, two)  # no stream: nothing to do
            assert rooms.stream(ROOM, CHANNEL) is not stream  # a member here again: a new stream...
            await rooms.presence.announce(ROOM, CHANNEL, {"type": "join", "client_id": 2})
            assert not rooms.presence._coalescing  # ...and a new budget: announced at once
            await rooms.presence.announce(ROOM, CHANNEL, {"type": "join", "client_id": 3})
            assert set(rooms.presence._coalescing) == {ROOM}  # spent again


@pytest.mark.anyio
async def test_the_check_timer_sends_a_member_what_its_stream_missed() -> None:
    """The store publishes on a bus no hub hears: only the check finds the entries."""
    store = memory_store()
    with anyio.fail_after(5):
        async with rooms_on(store, room_check_seconds=0.02) as rooms:
            send = FakeSend()
            connection = await rooms.hub.join(CHANNEL, socket(send))
            stream = rooms.stream(ROOM, CHANNEL)
            epoch = (await store.replay(ROOM, None, None)).epoch
            stream.release(stream.add(connection), Position(0, epoch))
            for text in ("a", "b"):
                await store.append(ROOM, f'"type":"message","text":"{text}"}}')
            assert send.texts == []
            rooms.start()
            while len(send.texts) < 2:  # noqa: ASYNC110 - the check sets no event: what was sent is read
                await asyncio.sleep(0.01)
            assert [json.loads(text)["text"] for text in send.texts] == ["a", "b"]


class Uncleanable(MemoryStore):
    def __init__(self) -> None:
        super().__init__("memory://", "t:", 100, 300.0)
        self.cleans = 0

    async def clean(self) -> int:
        self.cleans += 1
        raise HistoryError("Redis at 127.0.0.1:1 does not answer")


def clean_errors() -> float:
    return REGISTRY.get_sample_value("starlette_ws_room_store_errors_total", {"operation": "clean"}) or 0.0


@pytest.mark.anyio
async def test_the_clean_timer_cleans_the_store_and_a_failure_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    store = memory_store()
    with anyio.fail_after(5):
        async with rooms_on(store, room_clean_seconds=0.01) as rooms:
            await store.replay(ROOM, None, None)  # the room exists, with neither entries nor members
            assert await store.top(ROOM) is not None
            rooms.start()
            while await store.top(ROOM) is not None:  # noqa: ASYNC110 - the cleaning sets no event
                await asyncio.sleep(0.01)

    failing = Uncleanable()
    errors = clean_errors()
    with caplog.at_level(logging.WARNING, logger="starlette_ws.hubs"), anyio.fail_after(5):
        async with rooms_on(failing, room_clean_seconds=0.01) as rooms:
            rooms.start()
            while failing.cleans < 2:  # noqa: ASYNC110 - the cleaning sets no event
                await asyncio.sleep(0.01)
            assert not any(task.done() for task in rooms._tasks)  # the timer goes on
    assert clean_errors() >= errors + 2
    assert caplog.messages[0] == "Cleaning the room store failed: Redis at 127.0.0.1:1 does not answer"
