"""The cluster engine on a real loopback cluster: sharded pub/sub, rooms in one slot each and
spread over every master, and a slot migrated under a subscriber and a store."""

from __future__ import annotations

import asyncio
import json
import uuid

import anyio
import pytest

from harness.services import RedisCluster
from starlette_ws.backends.cluster import ClusterBackend
from starlette_ws.backends.cluster_nodes import PARTITIONS, TAGS, tag_of, tagged
from starlette_ws.engines import Engine
from starlette_ws.history import room_channel, unpack
from starlette_ws.history.base import Position
from starlette_ws.history.cluster import ClusterStore
from tests.backends.support import Listener, connected
from tests.cluster.support import move_slot, owner_of, rest, slot_of

ROOMS = [
    "lobby", "general", "random", "team-a", "team-b", "support", "sales", "ops", "dev", "design",
    "qa", "hr", "music", "books", "games", "movies", "travel", "food", "sport", "news",
    "éte-☀", "漢字", "room-with-a-much-longer-name-than-most", "42",
]  # fmt: skip


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


async def store_on(cluster: RedisCluster, prefix: str) -> ClusterStore:
    store = Engine(cluster.url).store(prefix, 100, 300.0)
    assert isinstance(store, ClusterStore)
    await store.connect()
    return store


def test_partitions_spread_evenly_over_the_slots() -> None:
    """Partition i's tag hashes into the i-th of PARTITIONS equal ranges of slots, so masters that
    own equal ranges own equal numbers of partitions."""
    width = 16384 / PARTITIONS
    assert [int(slot_of(tag) / width) for tag in TAGS] == list(range(PARTITIONS))
    assert all(len(tag) <= 4 for tag in TAGS)


@pytest.mark.anyio
async def test_chat_on_channels_of_every_master_between_two_processes(redis_cluster: RedisCluster) -> None:
    channels = [f"chat-{n}" for n in range(24)]
    owners = {owner_of(redis_cluster, tagged(channel)).port for channel in channels}
    assert len(owners) == 3  # the channels live on every master
    with anyio.fail_after(20):
        one, two = await connected(redis_cluster.url), await connected(redis_cluster.url)
        listeners = Listener(one), Listener(two)
        try:
            for channel in channels:
                await one.subscribe(channel)
                await two.subscribe(channel)
            for channel in channels:
                await one.publish(channel, f"from one on {channel}")
                await two.publish(channel, f"from two on {channel} ✓")
            for listener in listeners:
                got = {(event.channel, event.message) for event in [await listener.get() for _ in range(48)]}
                assert got == {(c, f"from one on {c}") for c in channels} | {
                    (c, f"from two on {c} ✓") for c in channels
                }
            await two.unsubscribe(channels[0])
            await one.publish(channels[0], "only one hears this")
            assert (await listeners[0].get()).message == "only one hears this"
            await one.publish(channels[1], "both")
            assert (await listeners[1].get()).message == "both"
        finally:
            for listener in listeners:
                await listener.stop()
            await one.disconnect()
            await two.disconnect()


@pytest.mark.anyio
async def test_each_room_lives_in_one_slot_and_24_rooms_reach_every_master(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    with anyio.fail_after(20):
        store = await store_on(redis_cluster, prefix)
        sub = await connected(redis_cluster.url)
        listener = Listener(sub)
        try:
            for room in ROOMS:
                await sub.subscribe(room_channel(prefix, room))
            for room in ROOMS:
                for n in range(3):
                    await store.append(room, rest(f"{room} {n}"))
                assert await store.present(room, f"m-{room}", "7", 30.0)
            heard = [await listener.get() for _ in range(3 * len(ROOMS))]
            replays = {room: await store.replay(room, 1, None) for room in ROOMS}
            listed = await store.rooms()
        finally:
            await listener.stop()
            await sub.disconnect()
            await store.disconnect()
    for room in ROOMS:
        tag = tag_of(room_channel(prefix, room))
        names = [store._key(kind, room) for kind in ("meta", "history", "presence", "presence-ids")]
        names.append(tag + room_channel(prefix, room))
        assert {slot_of(name) for name in names} == {slot_of(tag)}, room
        assert [json.loads(entry.payload)["text"] for entry in replays[room].entries] == [f"{room} 1", f"{room} 2"]
    masters = {owner_of(redis_cluster, tag_of(room_channel(prefix, room))).port for room in ROOMS}
    assert len(masters) == 3
    # every room's entries arrived on its channel, in offset order
    for room in ROOMS:
        offsets = [unpack(e.message)[0] for e in heard if e.channel == room_channel(prefix, room)]
        assert [position.offset for position in offsets if position] == [1, 2, 3]
    assert listed == {room: ["7"] for room in ROOMS}


@pytest.mark.anyio
async def test_presence_across_two_processes(redis_cluster: RedisCluster, prefix: str) -> None:
    with anyio.fail_after(10):
        one, two = await store_on(redis_cluster, prefix), await store_on(redis_cluster, prefix)
        try:
            assert await one.present("lobby", "tab-1", "7", 30.0)
            assert not await two.present("lobby", "tab-2", "7", 30.0)  # the same client, another tab
            assert await two.present("lobby", "x", "8", 30.0)
            assert await one.members("lobby") == ["7", "8"]
            assert not await one.absent("lobby", "tab-1")
            assert await two.absent("lobby", "tab-2")
            assert await one.rooms() == {"lobby": ["8"]}
            assert await one.absent("lobby", "x")
            assert await two.rooms() == {}
        finally:
            await one.disconnect()
            await two.disconnect()


@pytest.mark.anyio
async def test_a_history_gone_back_starts_a_new_epoch(redis_cluster: RedisCluster, prefix: str) -> None:
    """What a failover can do (acknowledged entries lost with their master), done by hand: the
    room's last offset below what a process was given. Its next append, or its check, starts a
    new epoch instead of giving those offsets again."""
    with anyio.fail_after(10):
        store = await store_on(redis_cluster, prefix)
        try:
            entries = [await store.append("r", rest(str(n))) for n in range(5)]
            seen = entries[-1].position
            meta = store._key("meta", "r")
            owner = owner_of(redis_cluster, meta)
            redis_cluster.cli(owner, "hset", meta, "last", "3")  # entries 4 and 5 are gone
            assert not await store.renew("r", Position(3, seen.epoch))  # not behind: nothing to do
            assert not await store.renew("r", Position(9, "another"))  # another history: nothing
            appended = await store.append("r", rest("after"), seen)
            assert appended.epoch != seen.epoch and appended.offset == 1
            redis_cluster.cli(owner, "hset", meta, "last", "0")
            assert await store.renew("r", appended.position)
            top = await store.top("r")
            assert top is None or top.epoch != appended.epoch
        finally:
            await store.disconnect()


@pytest.mark.anyio
async def test_a_slot_migrated_under_a_subscriber_and_a_store(redis_cluster: RedisCluster, prefix: str) -> None:
    """The server unsubscribes a shard channel whose slot moves (a pushed SUNSUBSCRIBE): the
    backend subscribes again on the new owner and counts it; the store follows MOVED."""
    room = "migrating"
    channel = room_channel(prefix, room)
    with anyio.fail_after(30):
        store = await store_on(redis_cluster, prefix)
        sub = await connected(redis_cluster.url)
        assert isinstance(sub, ClusterBackend)
        listener = Listener(sub)
        try:
            await sub.subscribe(channel)
            before = await store.append(room, rest("before"))
            assert unpack((await listener.get()).message)[0] == before.position
            source = owner_of(redis_cluster, tagged(channel))
            target = next(master for master in redis_cluster.masters() if master.port != source.port)
            await asyncio.to_thread(move_slot, redis_cluster, slot_of(tagged(channel)), target)
            assert owner_of(redis_cluster, tagged(channel)).port == target.port
            while sub.resubscribed == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            entry = await store.append(room, rest("after"))
            assert entry.offset == 2  # the keys moved with the slot
            event = await listener.get()
            assert unpack(event.message)[0] == entry.position
        finally:
            await listener.stop()
            await sub.disconnect()
            await store.disconnect()


@pytest.mark.anyio
async def test_subscribed_once_subscribe_returns(redis_cluster: RedisCluster) -> None:
    """With the listener running, each subscribe (on a master not yet connected to, or one that is)
    returns once the master confirmed it: a publish right after is heard, and none took long."""
    with anyio.fail_after(20):
        sub, pub = await connected(redis_cluster.url), await connected(redis_cluster.url)
        listener = Listener(sub)
        slowest = 0.0
        try:
            for n in range(30):
                started = asyncio.get_running_loop().time()
                await sub.subscribe(f"fresh-{n}")
                slowest = max(slowest, asyncio.get_running_loop().time() - started)
                await pub.publish(f"fresh-{n}", str(n))
                assert (await listener.get()).message == str(n)
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()
    assert slowest < 1.0, slowest


# redis-py, reconnecting a PubSub in place when the server killed it during a command, leaves the
# old connection's StreamWriter to the garbage collector (asyncio warns that it was not closed)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.anyio
async def test_subscriber_connections_killed_again_and_again(
    redis_cluster: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Every master closes its pub/sub clients (CLIENT KILL TYPE pubsub) every 0.1-0.3 s for 3 s
    while channels come and go: nothing escapes the listener, nothing is logged as a bug, and
    afterwards every channel still wanted is heard again."""
    kept = [f"kept-{n}" for n in range(12)]
    with anyio.fail_after(40):
        sub, pub = await connected(redis_cluster.url), await connected(redis_cluster.url)
        listener = Listener(sub)
        try:
            for channel in kept:
                await sub.subscribe(channel)
            deadline = asyncio.get_running_loop().time() + 3
            n = 0
            while asyncio.get_running_loop().time() < deadline:
                n += 1
                for master in redis_cluster.masters():
                    await asyncio.to_thread(redis_cluster.cli, master, "client", "kill", "type", "pubsub")
                await sub.subscribe(f"passing-{n}")
                await sub.unsubscribe(f"passing-{n - 1}")
                await asyncio.sleep(0.1 + 0.2 * (n % 2))
            assert not listener.task.done(), listener.task
            for channel in kept:
                while True:
                    await pub.publish(channel, "after")
                    try:
                        event = await listener.get(within=0.2)
                    except TimeoutError:
                        continue
                    if event.channel == channel:
                        break
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
