"""Chat and rooms on a Redis Cluster, two app processes under real uvicorn, through what a cluster
does in production: a master killed (its replica takes over), a manual failover, a slot resharded
while its room is busy, a master stopped. A member that never disconnects gets every line the
store keeps once and in order, or a `gap` that says what it missed (`order_problems`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import zlib
from collections.abc import Iterator

import pytest
from websockets.sync.client import connect

from harness.servers import UvicornServer
from harness.services import RedisCluster, RedisServer
from starlette_ws.backends.cluster_nodes import PARTITIONS, TAGS, tag_of
from starlette_ws.engines import Engine
from starlette_ws.history import room_channel
from tests.backends.support import paused
from tests.clients import receive
from tests.cluster.support import owned_by, owner_of, replica_of, rest, slot_of, taken_over
from tests.server.test_rooms_faults import (
    CHECK_SECONDS,
    ROOM_ENV,
    Member,
    Sender,
    caught_up,
    kept,
    new_room,
    numbered,
    open_ws,
    order_problems,
    positions,
)

PREFIX = ROOM_ENV["CHANNEL_PREFIX"]


@pytest.fixture(scope="module")
def servers(redis_cluster: RedisCluster) -> Iterator[tuple[UvicornServer, UvicornServer]]:
    """Processes A and B on the cluster, seeded by one node each (neither needs its seed later)."""
    seeds = [f"redis+cluster://127.0.0.1:{node.port}" for node in redis_cluster.nodes[:2]]
    env = ROOM_ENV
    with (
        UvicornServer(env={**env, "BROADCAST_URL": seeds[0]}) as a,
        UvicornServer(env={**env, "BROADCAST_URL": seeds[1]}) as b,
    ):
        yield a, b


def room_on(cluster: RedisCluster, master: RedisServer, name: str) -> str:
    """A new room whose slot is on `master`."""
    for n in range(10_000):
        room = new_room(f"{name}{n}-")
        if owner_of(cluster, tag_of(room_channel(PREFIX, room))).port == master.port:
            return room
    raise AssertionError("no room name found")


@contextlib.contextmanager
def busy(a: UvicornServer, b: UvicornServer, room: str) -> Iterator[tuple[Member, Sender]]:
    for server in (a, b):  # after an earlier test's outage, each takes room connections again
        deadline = time.monotonic() + 20
        while server.health()["status"] != "ok":
            assert time.monotonic() < deadline, server.health()
            time.sleep(0.1)
    member, sender = Member(a, room, 1), Sender(b, room)
    try:
        before = sender.talk("before", 5, 0.05)
        heard = member.wait(lambda seen: {e.get("text") for e in seen} >= set(before), 10)
        assert heard, (member.seen(), sender.fates(), sender.unsent)
        yield member, sender
    finally:
        sender.close()
        member.close()


def promised(member: Member, sender: Sender, b: UvicornServer, room: str) -> tuple[list[str], list[dict[str, object]]]:
    """What broke the promise for `member` (empty: nothing), and what the store keeps."""
    member.reader.settle(quiet=2 * CHECK_SECONDS, timeout=20)
    history = kept(b, room)
    caught_up(member, history)
    seen = member.seen()
    problems = order_problems(seen)
    if not member.still_connected():
        problems.append(f"the member was closed: {member.reader.close}")
    acknowledged = {text for text, fate in sender.fates().items() if "kept" in fate}
    got = {entry.get("text") for entry in seen}
    gaps = [entry for entry in seen if entry["type"] == "gap"]
    if not gaps and not acknowledged <= got:
        problems.append(f"acknowledged lines it never got, without a gap: {sorted(acknowledged - got)}")
    refused = sender.refused()
    if refused & got:
        problems.append(f"lines said not kept that reached it: {sorted(refused & got)}")
    return problems, history


def test_chat_and_24_rooms_across_two_processes(
    redis_cluster: RedisCluster, servers: tuple[UvicornServer, UvicornServer]
) -> None:
    a, b = servers
    assert a.health()["broadcast"] == "redis+cluster" and a.health()["status"] == "ok"
    with connect(a.ws_url + "/ws/1") as one, connect(b.ws_url + "/ws/2") as two:
        time.sleep(0.2)
        one.send("hello from A")
        two.send("hello from B")
        for ws in (one, two):
            texts, _, _ = receive(ws, 1.0, until_quiet=True)
            assert {t for t in texts if "says" in t} == {"Client #1 says: hello from A", "Client #2 says: hello from B"}
    rooms = [new_room(f"r{n}-") for n in range(24)]
    assert len({owner_of(redis_cluster, tag_of(room_channel(PREFIX, room))).port for room in rooms}) == 3
    members = [Member(a, room, 1) for room in rooms]
    senders = [Sender(b, room) for room in rooms]
    try:
        for sender in senders:
            sender.talk("line", 3, 0)
        for member in members:
            assert member.wait(lambda seen: len([e for e in seen if e["type"] == "message"]) == 3, 10), member.seen()
            assert order_problems(member.seen()) == []
            assert [e["text"] for e in member.lines()] == ["line 0", "line 1", "line 2"]
    finally:
        for sender in senders:
            sender.close()
        for member in members:
            member.close()


def test_a_killed_master_while_members_talk(whole: RedisCluster, servers: tuple[UvicornServer, UvicornServer]) -> None:
    """SIGKILL the master of a busy room (and of one of the seeds): its replica takes over in a
    few seconds; the member gets every line the store keeps, in order, or a gap; lines the sender
    was told were not kept reach nobody; both processes say they are healthy again."""
    a, b = servers
    victim = whole.masters()[0]
    room = room_on(whole, victim, "killed")
    with busy(a, b, room) as (member, sender):
        away = Member(a, room, 3)  # leaves now, comes back after the failover with its position
        assert away.wait(lambda seen: any(e.get("text") == "before 4" for e in seen), 10), away.seen()
        left_at = away.lines()[-1]
        away.close()
        victim.stop()
        killed = time.monotonic()
        sender.talk("during", 50, 0.1)
        while not (a.health()["status"] == b.health()["status"] == "ok"):
            assert time.monotonic() - killed < 20, (a.health(), b.health())
            time.sleep(0.2)
        healthy = time.monotonic() - killed
        after = sender.talk("after", 10, 0.05)
        problems, history = promised(member, sender, b, room)
        back = f"/rooms/{room}/ws/3?since={left_at['offset']}&epoch={left_at['epoch']}"
        with open_ws(a, back) as ws:
            texts, _, _ = receive(ws, 1.0, until_quiet=True)
    recovered = [json.loads(text) for text in texts]
    print(f"\nkilled master: both processes healthy {healthy:.1f} s after; {len(history)} lines kept")
    assert problems == []
    # the member that came back: every acknowledged line said while it was away, or a gap first
    acknowledged = {text for text, fate in sender.fates().items() if "kept" in fate} - {f"before {n}" for n in range(5)}
    got = {entry.get("text") for entry in recovered}
    told = [entry for entry in recovered if entry["type"] == "gap"]
    assert told or acknowledged <= got, sorted(acknowledged - got)
    assert order_problems([left_at, *recovered]) == []
    assert set(after) <= {entry["text"] for entry in history}
    fates = sender.fates()
    assert all(fates.get(text) for text in sender.said), "every line the sender said was answered"


def test_a_manual_failover_loses_nothing(whole: RedisCluster, servers: tuple[UvicornServer, UvicornServer]) -> None:
    a, b = servers
    master = whole.masters()[1]
    room = room_on(whole, master, "manual")
    replica = replica_of(whole, master)
    with busy(a, b, room) as (member, sender):
        assert whole.cli(replica, "cluster", "failover").strip() == "OK"
        sender.talk("during", 30, 0.05)
        taken_over(whole, replica, tag_of(room_channel(PREFIX, room)), asked=True)
        problems, history = promised(member, sender, b, room)
        seen = member.seen()
    assert problems == []
    assert [entry for entry in seen if entry["type"] == "gap"] == []
    assert positions(member.lines()) == positions(history)


def test_a_slot_resharded_while_its_room_is_busy(
    whole: RedisCluster, servers: tuple[UvicornServer, UvicornServer]
) -> None:
    """`redis-cli --cluster reshard` moves the slots of a busy room to another master, keys and
    all: the member misses nothing and the store keeps every line."""
    a, b = servers
    source, target = whole.masters()[:2]
    ids = {node.port: whole.cli(node, "cluster", "myid").strip() for node in (source, target)}
    low = min(int(r.split("-")[0]) for r in _ranges(whole, source))
    partition = next(p for p in range(PARTITIONS) if slot_of("{" + TAGS[p] + "}") >= low)
    room = next(r for r in (new_room(f"reshard{n}-") for n in range(100_000)) if _partition(r) == partition)
    moved = slot_of(tag_of(room_channel(PREFIX, room))) - low + 1
    with busy(a, b, room) as (member, sender):
        reshard = subprocess.Popen(
            [
                "redis-cli", "--cluster", "reshard", f"127.0.0.1:{source.port}",
                "--cluster-from", ids[source.port], "--cluster-to", ids[target.port],
                "--cluster-slots", str(moved), "--cluster-yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        sender.talk("during", 40, 0.05)
        _, errors = reshard.communicate(timeout=30)
        assert reshard.returncode == 0, errors
        after = sender.talk("after", 5, 0.05)
        problems, history = promised(member, sender, b, room)
        seen = member.seen()
    owned_by(whole, tag_of(room_channel(PREFIX, room)), target)
    assert problems == []
    assert [entry for entry in seen if entry["type"] == "gap"] == []
    assert positions(member.lines()) == positions(history)
    assert set(after) <= {entry["text"] for entry in history}
    assert len({entry["epoch"] for entry in numbered(seen)}) == 1


def test_a_stopped_master_makes_health_degraded_within_5_s(
    whole: RedisCluster, servers: tuple[UvicornServer, UvicornServer]
) -> None:
    """SIGSTOP a master: /health says degraded within 5 s, naming it, and ok again once its
    replica has taken over (the stopped node is then killed; `whole` brings it back as a replica)."""
    a, _ = servers
    victim = whole.masters()[2]
    mark = a.log_mark()
    with paused(victim):
        stopped = time.monotonic()
        while (body := a.health())["status"] == "ok":
            assert time.monotonic() - stopped < 10
            time.sleep(0.1)
        noticed = time.monotonic() - stopped
        assert f"127.0.0.1:{victim.port}" in body.get("engine_error", ""), body
        while a.health()["status"] != "ok":
            assert time.monotonic() - stopped < 20, a.health()
            time.sleep(0.2)
        back = time.monotonic() - stopped
        victim.stop()
    print(f"\nstopped master: /health degraded after {noticed:.1f} s, ok again after {back:.1f} s")
    assert noticed < 5
    assert "Traceback" not in a.log_since(mark)


def _ranges(cluster: RedisCluster, master: RedisServer) -> list[str]:
    me = cluster.cli(master, "cluster", "myid").strip()
    for row in cluster.cli(master, "cluster", "nodes").splitlines():
        fields = row.split()
        if fields[0] == me:
            return [served for served in fields[8:] if not served.startswith("[")]
    raise AssertionError("the node does not list itself")


def _partition(room: str) -> int:
    return zlib.crc32(room_channel(PREFIX, room).encode()) % PARTITIONS


async def append_as_a_stranger(url: str, room: str, texts: list[str]) -> None:
    """Lines appended by a process that was never given the room's entries (no `seen`)."""
    store = Engine(url).store(PREFIX, 1000, 300.0)
    await store.connect()
    try:
        for text in texts:
            await store.append(room, rest(text))
    finally:
        await store.disconnect()


@pytest.mark.parametrize("then", ["talk", "wait", "stranger"])
def test_a_history_gone_back_is_a_new_epoch_for_live_members(
    redis_cluster: RedisCluster, servers: tuple[UvicornServer, UvicornServer], then: str
) -> None:
    """What an unlucky failover does (the promoted replica had not received the last two lines),
    done by hand on the room's master: the room's last offset goes back by two. The member is
    sent a gap and the lines after it in a new epoch, whether the sender's next line finds it
    ("talk": the append sees the history behind what its process was given) or nobody says
    anything ("wait": the position check does), or a process that had not been given the lost
    lines appends first ("stranger": the member's process is given those offsets again) — never
    an offset twice."""
    a, b = servers
    room = new_room(f"goneback-{then}-")
    channel = room_channel(PREFIX, room)
    meta = f"{tag_of(channel)}{PREFIX}meta:{room}"
    with busy(a, b, room) as (member, sender):
        old_epoch = member.lines()[-1]["epoch"]
        redis_cluster.cli(owner_of(redis_cluster, meta), "hincrby", meta, "last", "-2")
        if then == "talk":
            sender.talk("after", 3, 0.05)
        elif then == "stranger":
            asyncio.run(append_as_a_stranger(redis_cluster.url, room, [f"stranger {n}" for n in range(3)]))
        assert member.wait(lambda seen: any(e["type"] == "gap" for e in seen), 10), member.seen()
        if then != "talk":
            sender.talk("after", 3, 0.05)
        assert member.wait(lambda seen: len([e for e in seen if e.get("text", "").startswith("after")]) == 3, 10)
        seen = member.seen()
    assert order_problems(seen) == []
    gap = next(entry for entry in seen if entry["type"] == "gap")
    assert gap["epoch"] != old_epoch and gap["missed"] is None
    after = [entry for entry in member.lines() if entry["text"].startswith("after")]
    first = 1 if then != "stranger" else after[0]["offset"]  # the stranger's later lines may open the new epoch
    assert [(e["epoch"], e["offset"]) for e in after] == [(gap["epoch"], n) for n in range(first, first + 3)]
