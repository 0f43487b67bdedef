"""Rooms across two uvicorn processes through Redis and PostgreSQL (real servers): one order per
room everywhere, presence from every process, and recovery in one process of what was said in
the other."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from harness.servers import UvicornServer
from harness.services import PostgresServer, RedisServer
from tests.clients import next_json, until, ws_connect
from tests.services import start_redis


def two_processes(broadcast_url: str) -> Iterator[tuple[UvicornServer, UvicornServer]]:
    env = {"BROADCAST_URL": broadcast_url, "CHANNEL_PREFIX": "scale-out:"}
    with UvicornServer(env=env) as a, UvicornServer(env=env) as b:
        yield a, b


@pytest.fixture(scope="module")
def redis_rooms(redis_server: RedisServer) -> Iterator[tuple[UvicornServer, UvicornServer]]:
    redis_server.start()  # running again if an earlier outage test in this worker left it stopped
    yield from two_processes(redis_server.url)


@pytest.fixture(scope="module")
def postgres_rooms(postgres_server: PostgresServer) -> Iterator[tuple[UvicornServer, UvicornServer]]:
    postgres_server.start()  # module-scoped: made before the autouse `shared_engines_running` runs
    yield from two_processes(postgres_server.url)


@pytest.fixture(params=["redis", "postgres"])
def rooms_pair(request: pytest.FixtureRequest) -> tuple[UvicornServer, UvicornServer]:
    result: tuple[UvicornServer, UvicornServer] = request.getfixturevalue(f"{request.param}_rooms")
    return result


def messages(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next `count` chat lines (type `message`), skipping everything else."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        message = next_json(ws)
        if message["type"] == "message":
            found.append(message)
    return found


def members(server: UvicornServer, room: str) -> list[int]:
    with urllib.request.urlopen(f"{server.http_url}/rooms/{room}/presence", timeout=5) as response:
        found: list[int] = json.load(response)["members"]
        return found


def test_one_order_presence_and_recovery_across_processes(rooms_pair: tuple[UvicornServer, UvicornServer]) -> None:
    a, b = rooms_pair
    room = f"x{time.monotonic_ns()}"
    with ws_connect(a, f"/rooms/{room}/ws/1") as one:
        until(one, "join", client_id=1)
        with ws_connect(b, f"/rooms/{room}/ws/2") as two:
            until(two, "join", client_id=2)
            assert members(a, room) == members(b, room) == [1, 2]  # every process sees both
            for n in range(5):
                (one if n % 2 else two).send(f"m{n}")
            heard = [messages(ws, 5) for ws in (one, two)]
            numbered = [[(m["offset"], m["text"]) for m in messages] for messages in heard]
            assert numbered[0] == numbered[1]  # one order, the same numbers, in both processes
            epoch, last = heard[0][-1]["epoch"], heard[0][-1]["offset"]
        seen = until(one, "leave", client_id=2)  # 2 left process b: announced in process a
        assert "offset" not in seen and last == 5  # offsets count the messages only
    deadline = time.monotonic() + 5
    while members(b, room) and time.monotonic() < deadline:  # 1 has left process a
        time.sleep(0.05)
    # the room as one process numbered it, recovered from the other
    with ws_connect(b, f"/rooms/{room}/ws/3?since=0&epoch={epoch}") as three:
        assert next_json(three) == {"type": "presence", "room": room, "members": [3]}
        replayed = [next_json(three) for _ in range(last)]  # the five messages; joins and leaves are not history
        offsets = [message["offset"] for message in replayed]
        assert offsets == list(range(1, last + 1))
        assert [(m["offset"], m["text"]) for m in replayed if m["type"] == "message"] == numbered[0]
        assert {m["epoch"] for m in replayed} == {epoch}
        until(three, "join", client_id=3)  # then live (1's leave, from process a, may come first)


def test_postgres_refuses_a_room_message_it_cannot_carry_with_1009(
    postgres_rooms: tuple[UvicornServer, UvicornServer],
) -> None:
    a, _ = postgres_rooms
    room = f"big{time.monotonic_ns()}"
    with ws_connect(a, f"/rooms/{room}/ws/1") as one:
        until(one, "join", client_id=1)
        one.send("z" * 9000)
        with pytest.raises(ConnectionClosed) as closed:
            until(one, "message")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert "8000" in closed.value.rcvd.reason or "8,000" in closed.value.rcvd.reason


TTL = 2.0  # PRESENCE_TTL in the fault tests: a dead process's members must be gone within it


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, restarted (without persistence) by the test."""
    server = start_redis()
    yield server
    server.close()


def test_a_killed_process_leaves_presence_within_the_ttl(redis_server: RedisServer) -> None:
    env = {"BROADCAST_URL": redis_server.url, "CHANNEL_PREFIX": "ghosts:", "PRESENCE_TTL": str(TTL)}
    room = f"g{time.monotonic_ns()}"
    with UvicornServer(env=env) as a, UvicornServer(env=env) as b, ws_connect(a, f"/rooms/{room}/ws/1") as one:
        until(one, "join", client_id=1)
        with ws_connect(b, f"/rooms/{room}/ws/2") as doomed:
            until(doomed, "join", client_id=2)
            assert members(a, room) == [1, 2]
            b.stop(signal.SIGKILL)  # no leave, no absent: only the expiry can remove it
            killed = time.monotonic()
            while members(a, room) != [1] and time.monotonic() - killed < TTL + 2:
                time.sleep(0.1)
            gone_after = time.monotonic() - killed
        assert members(a, room) == [1]
        assert gone_after <= TTL + 0.5, gone_after


def test_redis_restarted_mid_conversation_the_epoch_says_history_was_lost(own_redis: RedisServer) -> None:
    # it reconnects client 1 every 0.2 s until Redis is back: more than ROOM_CONNECT_BURST
    env = {"BROADCAST_URL": own_redis.url, "CHANNEL_PREFIX": "restart:", "ROOM_CONNECT_RATE": "1000"}
    room = f"r{time.monotonic_ns()}"
    with UvicornServer(env=env) as a:
        with ws_connect(a, f"/rooms/{room}/ws/1") as one:
            until(one, "join", client_id=1)
            one.send("before")
            said = until(one, "message", text="before")
        own_redis.stop()  # a crash, and no persistence: the history is gone
        own_redis.start()
        deadline = time.monotonic() + 10
        while True:  # the app's connections find the new server again
            with ws_connect(a, f"/rooms/{room}/ws/1?since={said['offset']}&epoch={said['epoch']}") as back:
                first = [next_json(back), next_json(back)]
                kinds = [message["type"] for message in first]
                if kinds == ["presence", "gap"] or time.monotonic() > deadline:
                    break
            time.sleep(0.2)
        assert kinds == ["presence", "gap"], first
        gap = first[1]
        assert gap["missed"] is None and gap["epoch"] != said["epoch"]  # never silence
