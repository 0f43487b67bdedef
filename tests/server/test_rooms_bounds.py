"""Rooms' resources under real uvicorn: a full history recovered in one reconnect, memory that
plateaus, PostgreSQL rows deleted after retention, one identity per client id across processes."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import psutil
import pytest
from websockets.sync.client import ClientConnection

from harness.servers import UvicornServer
from harness.services import PostgresServer, RedisServer
from tests.clients import next_json, until, ws_connect

OPEN_DOORS = {"ROOM_CONNECT_BURST": "10000", "ROOM_ADDRESS_BURST": "10000", "CHAT_RATE_PER_SECOND": "1000"}


def fill(server: UvicornServer, room: str, count: int, size: int) -> dict[str, Any]:
    """`count` messages of `size` characters said in `room`, each read back; the last one."""
    with ws_connect(server, f"/rooms/{room}/ws/1", max_size=None) as ws:
        next_json(ws)
        last: dict[str, Any] = {}
        for n in range(count):
            ws.send(f"{n:06d}" + "x" * (size - 6))
            last = until(ws, "message")
        return last


def test_a_client_reading_at_full_speed_recovers_the_whole_history_in_one_reconnect() -> None:
    """100 messages of 60 KB against a 1 MiB outbox: the replay waits for the client, not the outbox."""
    env = {"ROOM_HISTORY": "100", **OPEN_DOORS}
    with UvicornServer(env=env) as server:
        last = fill(server, "big", 100, 60_000)
        with ws_connect(server, f"/rooms/big/ws/2?since=0&epoch={last['epoch']}", max_size=None) as late:
            assert next_json(late)["type"] == "presence"
            offsets = [next_json(late)["offset"] for _ in range(100)]
        assert offsets == list(range(1, 101))


def rss_mb(server: UvicornServer) -> float:
    return float(psutil.Process(server.pid).memory_info().rss) / 2**20


def test_memory_rooms_past_retention_are_dropped_and_the_process_plateaus() -> None:
    env = {"ROOM_HISTORY_SECONDS": "1", "ROOM_CLEAN_SECONDS": "0.3", "MAX_MESSAGE_BYTES": "65536", **OPEN_DOORS}
    with UvicornServer(env=env) as server:
        after: list[float] = []
        for round_ in range(3):  # 20 rooms of 40 messages of 30 KB: 24 MB a round
            for n in range(20):
                fill(server, f"r{round_}-{n}", 40, 30_000)
            time.sleep(2)  # past retention, and cleaned
            after.append(rss_mb(server))
        assert after[2] - after[0] < 12, after  # without the cleaning: about 24 MB more a round


async def rows(url: str, prefix: str) -> dict[str, int]:
    connection = await asyncpg.connect(url)
    try:
        counts = {}
        for table in ("starlette_ws_rooms", "starlette_ws_entries", "starlette_ws_presence"):
            counts[table] = await connection.fetchval(f"SELECT count(*) FROM {table} WHERE prefix = $1", prefix)
        return counts
    finally:
        await connection.close()


def test_postgres_rows_go_after_retention_even_those_of_a_killed_process(postgres_server: PostgresServer) -> None:
    prefix = f"clean{time.monotonic_ns()}:"
    env = {
        "BROADCAST_URL": postgres_server.url,
        "CHANNEL_PREFIX": prefix,
        "ROOM_HISTORY_SECONDS": "1",
        "ROOM_CLEAN_SECONDS": "0.3",
        "PRESENCE_TTL": "1",
        **OPEN_DOORS,
    }
    with UvicornServer(env=env) as a, UvicornServer(env=env) as b:
        for n in range(30):
            fill(a, f"p{n}", 3, 10)
        with ws_connect(b, "/rooms/ghost/ws/9") as doomed:
            next_json(doomed)
            assert asyncio.run(rows(postgres_server.url, prefix))["starlette_ws_presence"] == 1
            b.stop(signal.SIGKILL)  # its member is never removed: only its expiry and the cleaning can
        deadline = time.monotonic() + 6
        while (found := asyncio.run(rows(postgres_server.url, prefix))) != dict.fromkeys(found, 0):
            assert time.monotonic() < deadline, found
            time.sleep(0.2)


@pytest.fixture
def two_on_redis(redis_server: RedisServer) -> Iterator[tuple[UvicornServer, UvicornServer]]:
    redis_server.start()  # running again if an earlier outage test left it stopped
    env = {"BROADCAST_URL": redis_server.url, "CHANNEL_PREFIX": f"tabs{time.monotonic_ns()}:", **OPEN_DOORS}
    with UvicornServer(env=env) as a, UvicornServer(env=env) as b:
        yield a, b


def next_not_presence(ws: ClientConnection) -> dict[str, Any]:
    while (message := next_json(ws))["type"] == "presence":
        pass
    return message


def test_one_client_id_in_two_processes_is_one_member(two_on_redis: tuple[UvicornServer, UvicornServer]) -> None:
    a, b = two_on_redis
    with ws_connect(a, "/rooms/tabs/ws/1") as watcher:
        until(watcher, "join", client_id=1)
        with ws_connect(a, "/rooms/tabs/ws/7") as here:
            assert until(watcher, "join")["client_id"] == 7
            with ws_connect(b, "/rooms/tabs/ws/7") as there:
                assert next_json(there) == {"type": "presence", "room": "tabs", "members": [1, 7]}
                here.send("marker 1")  # the next thing the watcher gets: no second join for 7
                assert next_not_presence(watcher)["text"] == "marker 1"
            here.send("marker 2")  # no leave while its tab in the other process was open
            assert next_not_presence(watcher)["text"] == "marker 2"
        leave = next_not_presence(watcher)
        assert (leave["type"], leave["client_id"]) == ("leave", 7)
