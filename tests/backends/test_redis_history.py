from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from harness.services import RedisServer
from starlette_ws.history.base import HistoryError, HistoryUncertain, Position, payload, room_channel, unpack
from starlette_ws.history.redis import RedisStore
from tests.backends.support import paused


def rest(text: str) -> str:
    return json.dumps({"type": "message", "text": text}, separators=(",", ":"))[1:]


@pytest.fixture
def prefix() -> str:
    """A deployment of its own per test, on the shared server."""
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def store(url: str, prefix: str, history: int = 100, seconds: float = 300.0, **options: Any) -> RedisStore:
    created = RedisStore(url, prefix, history, seconds, **options)
    await created.connect()
    return created


@pytest.mark.anyio
async def test_offsets_per_room_and_payload(redis_url: str, prefix: str) -> None:
    with anyio.fail_after(10):
        rooms = await store(redis_url, prefix)
        try:
            a = [await rooms.append("a", rest(f"a{n}")) for n in range(3)]
            b = [await rooms.append("b", rest(f"b{n}")) for n in range(2)]
        finally:
            await rooms.disconnect()
    assert [entry.offset for entry in a] == [1, 2, 3]
    assert [entry.offset for entry in b] == [1, 2]
    assert re.fullmatch("[0-9a-f]{16}", a[0].epoch)
    assert len({entry.epoch for entry in a}) == 1
    for entry, text in zip(a, ("a0", "a1", "a2"), strict=True):
        assert entry.payload == payload(entry.offset, entry.epoch, rest(text))
        assert json.loads(entry.payload)["text"] == text


@pytest.mark.anyio
async def test_two_processes_publish_in_offset_order(redis_url: str, raw: Redis, prefix: str) -> None:
    """Concurrent appends from two stores: each subscriber hears the room in offset order, and
    hears exactly what the appends returned."""
    with anyio.fail_after(10):
        first, second = await store(redis_url, prefix), await store(redis_url, prefix)
        pubsub = raw.pubsub()
        await pubsub.subscribe(room_channel(prefix, "lobby"))
        try:
            entries = await asyncio.gather(
                *(writer.append("lobby", rest(f"{n}")) for n in range(60) for writer in (first, second))
            )
            heard: list[str] = []
            while len(heard) < len(entries):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    heard.append(message["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # untyped in redis-py 5
            await first.disconnect()
            await second.disconnect()
    unpacked = [unpack(text) for text in heard]
    epoch = entries[0].epoch
    assert [position for position, _ in unpacked] == [Position(n, epoch) for n in range(1, 121)]
    assert [json.loads(text)["offset"] for _, text in unpacked] == list(range(1, 121))
    assert sorted(text for _, text in unpacked) == sorted(entry.payload for entry in entries)


@pytest.mark.anyio
async def test_replay_trimmed_by_count(redis_url: str, prefix: str) -> None:
    with anyio.fail_after(10):
        rooms = await store(redis_url, prefix, history=5)
        try:
            kept = [await rooms.append("r", rest(f"{n}")) for n in range(1, 9)][3:]
            epoch = kept[0].epoch
            everything = await rooms.replay("r", None, None)
            after_two = await rooms.replay("r", 2, epoch)
            after_five = await rooms.replay("r", 5, epoch)
            up_to_date = await rooms.replay("r", 8, epoch)
        finally:
            await rooms.disconnect()
    assert everything.entries == tuple(kept) and everything.missed == 0 and everything.last == 8
    assert after_two.entries == tuple(kept) and after_two.missed == 1  # offset 3 is gone
    assert after_five.entries == tuple(kept[2:]) and after_five.missed == 0
    assert up_to_date.entries == () and up_to_date.missed == 0 and up_to_date.epoch == epoch


@pytest.mark.anyio
async def test_replay_trimmed_by_age(redis_url: str, raw: Redis, prefix: str) -> None:
    with anyio.fail_after(10):
        rooms = await store(redis_url, prefix, seconds=0.3)
        try:
            old = [await rooms.append("r", rest(f"{n}")) for n in range(2)]
            await asyncio.sleep(0.4)
            new = await rooms.append("r", rest("new"))
            fresh = await rooms.replay("r", 0, new.epoch)
            assert await raw.xlen(f"{prefix}history:r") == 1  # trimmed when appending
            await asyncio.sleep(0.4)
            stale = await rooms.replay("r", 1, new.epoch)  # too old, though no append trimmed it
            stream_left = await raw.exists(f"{prefix}history:r")
        finally:
            await rooms.disconnect()
    assert old[-1].offset == 2
    assert fresh.entries == (new,) and fresh.missed == 2
    assert stale.entries == () and stale.missed == 2 and stale.last == 3
    assert stream_left == 0  # expired after `seconds` of silence


@pytest.mark.anyio
async def test_epoch_changes_when_redis_forgets(redis_url: str, raw: Redis, prefix: str) -> None:
    with anyio.fail_after(10):
        rooms = await store(redis_url, prefix)
        try:
            before = [await rooms.append("r", rest(f"{n}")) for n in range(3)]
            await raw.flushall()
            lost = await rooms.replay("r", 3, before[0].epoch)
            after = await rooms.append("r", rest("again"))
            stale = await rooms.replay("r", 1, before[0].epoch)
        finally:
            await rooms.disconnect()
    assert lost.epoch != before[0].epoch and lost.missed is None and lost.entries == () and lost.last == 0
    assert after.offset == 1 and after.epoch == lost.epoch  # the epoch the replay announced
    assert stale.missed is None and stale.entries == (after,)  # everything retained, from 1


@pytest.mark.anyio
async def test_new_epoch_drops_a_lost_historys_entries(redis_url: str, raw: Redis, prefix: str) -> None:
    """The offset and epoch gone (evicted, expired) but the stream not: its entries belong to
    the old epoch and are neither replayed nor mixed with the new offsets."""
    with anyio.fail_after(10):
        rooms = await store(redis_url, prefix, history=3)
        try:
            old = [await rooms.append("r", rest(f"{n}")) for n in range(5)]  # keeps 3, 4, 5
            await raw.delete(f"{prefix}meta:r")
            replayed = await rooms.replay("r", 5, old[0].epoch)
            new = await rooms.append("r", rest("new"))
            everything = await rooms.replay("r", None, None)
            after_nothing = await rooms.replay("r", 0, new.epoch)
        finally:
            await rooms.disconnect()
    assert replayed.missed is None and replayed.entries == () and replayed.last == 0
    assert new.offset == 1 and everything.entries == (new,)
    assert after_nothing.entries == (new,) and after_nothing.missed == 0  # not "3 missed" from old 4


@pytest.mark.anyio
async def test_presence_expires_and_rooms(redis_url: str, raw: Redis, prefix: str) -> None:
    with anyio.fail_after(10):
        rooms = await store(redis_url, prefix)
        try:
            assert await rooms.present("r", "m1", "alice", 0.3)  # arrived
            assert await rooms.present("r", "m2", "bob", 5)
            assert not await rooms.present("r", "m3", "bob", 5)  # bob's second tab: already here
            assert await rooms.present("s", "m4", "carol", 0.3)
            assert await rooms.members("r") == ["alice", "bob"]
            assert await rooms.rooms() == {"r": ["alice", "bob"], "s": ["carol"]}
            assert 0 < await raw.pttl(f"{prefix}presence:r") <= 5000
            assert 0 < await raw.pttl(f"{prefix}presence-ids:s") <= 300
            assert 0 < await raw.pttl(f"{prefix}rooms") <= 5000
            await asyncio.sleep(0.4)
            assert await rooms.members("r") == ["bob"]
            assert await rooms.members("s") == []
            assert await rooms.rooms() == {"r": ["bob"]}
            assert not await rooms.absent("r", "m2")  # bob is still here (m3)
            assert await rooms.members("r") == ["bob"]
            # a refresh may shorten, too; m3 is bob's only member now: "no other member had it"
            assert await rooms.present("r", "m3", "bob", 0.2)
            assert await rooms.absent("r", "m3")  # bob's last connection: bob left
            assert not await rooms.absent("r", "m3")  # not there any more
            assert await rooms.members("r") == []
            assert await rooms.rooms() == {}
            assert await raw.keys(f"{prefix}*") == []
        finally:
            await rooms.disconnect()


@pytest.mark.anyio
async def test_prefixes_are_separate(redis_url: str, raw: Redis, prefix: str) -> None:
    with anyio.fail_after(10):
        one, two = await store(redis_url, f"{prefix}one:"), await store(redis_url, f"{prefix}two:")
        try:
            await one.append("r", rest("one"))
            await one.append("r", rest("one"))
            assert (await two.append("r", rest("two"))).offset == 1
            assert [json.loads(e.payload)["text"] for e in (await two.replay("r", None, None)).entries] == ["two"]
            await one.present("r", "m1", "alice", 5)
            assert await two.members("r") == []
            assert await two.rooms() == {}
            assert await one.rooms() == {"r": ["alice"]}
        finally:
            await one.disconnect()
            await two.disconnect()
    assert room_channel(f"{prefix}one:", "r") != room_channel(f"{prefix}two:", "r")


@pytest.mark.anyio
async def test_scripts_loaded_again_after_a_restart(redis_server: RedisServer, redis_url: str, prefix: str) -> None:
    """A restarted server has no scripts cached: EVALSHA fails, EVAL runs it, once."""
    with anyio.fail_after(15):
        rooms = await store(redis_url, prefix)
        try:
            await rooms.append("r", rest("before"))
            redis_server.stop()
            redis_server.start()
            await asyncio.sleep(0.1)  # the loop sees the pooled connection closed, as in a server
            entry = await rooms.append("r", rest("after"))
            replayed = await rooms.replay("r", None, None)
        finally:
            await rooms.disconnect()
    assert entry.offset == 1 and replayed.entries == (entry,)


@pytest.mark.anyio
async def test_redis_down_raises_history_error(redis_server: RedisServer, redis_url: str, prefix: str) -> None:
    with anyio.fail_after(15):
        rooms = await store(redis_url, prefix, timeout=0.3)
        try:
            await rooms.append("r", rest("up"))
            with paused(redis_server):
                with pytest.raises(HistoryUncertain):  # sent, never answered
                    await rooms.append("r", rest("paused"))
                with pytest.raises(HistoryError):
                    await rooms.replay("r", None, None)
            redis_server.stop()
            with pytest.raises(HistoryError) as refused:
                await rooms.append("r", rest("down"))
            assert not isinstance(refused.value, HistoryUncertain)  # never reached a server
            for call in (rooms.replay("r", 0, None), rooms.members("r"), rooms.rooms(), rooms.absent("r", "m")):
                with pytest.raises(HistoryError):
                    await call
        finally:
            await rooms.disconnect()
        with pytest.raises(HistoryError):
            await store(redis_url, prefix)
