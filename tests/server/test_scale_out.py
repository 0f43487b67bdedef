"""The chat across two uvicorn processes through Redis and PostgreSQL (real servers)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import asyncpg
import pytest
from websockets.asyncio.client import connect
from websockets.sync.client import ClientConnection

from harness.servers import UvicornServer
from harness.services import PostgresServer, RedisServer
from tests.clients import read_to_close, ws_connect


@contextlib.contextmanager
def two_processes(broadcast_url: str) -> Iterator[tuple[UvicornServer, UvicornServer]]:
    env = {"BROADCAST_URL": broadcast_url}
    with UvicornServer(env=env) as a, UvicornServer(env=env) as b:
        yield a, b


@pytest.fixture(scope="module")
def redis_pair(redis_server: RedisServer) -> Iterator[tuple[UvicornServer, UvicornServer]]:
    redis_server.start()  # running again if an earlier outage test left it stopped
    with two_processes(redis_server.url) as pair:
        yield pair


@pytest.fixture(scope="module")
def postgres_pair(postgres_server: PostgresServer) -> Iterator[tuple[UvicornServer, UvicornServer]]:
    postgres_server.start()
    with two_processes(postgres_server.url) as pair:
        yield pair


@pytest.fixture(params=["redis", "postgres"])
def pair(request: pytest.FixtureRequest) -> tuple[UvicornServer, UvicornServer]:
    result: tuple[UvicornServer, UvicornServer] = request.getfixturevalue(f"{request.param}_pair")
    return result


def recv_all(ws: ClientConnection, count: int) -> list[str]:
    return [str(ws.recv(timeout=10)) for _ in range(count)]


def wait_for_subscribers(*servers: UvicornServer, count: int) -> None:
    deadline = time.monotonic() + 10
    while sum(int(str(s.health()["chat_connections"])) for s in servers) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def test_chat_spans_processes_and_you_wrote_stays_local(pair: tuple[UvicornServer, UvicornServer]) -> None:
    a, b = pair
    assert a.health()["broadcast"] == b.health()["broadcast"] != "memory"
    with ws_connect(a, "/ws/1") as one, ws_connect(b, "/ws/2") as two:
        with ws_connect(b, "/ws/3") as three:
            wait_for_subscribers(a, b, count=3)
            one.send("hello")
            assert recv_all(one, 2) == ["You wrote: hello", "Client #1 says: hello"]
            assert recv_all(two, 1) == recv_all(three, 1) == ["Client #1 says: hello"]
            two.send("back")
            assert recv_all(two, 2) == ["You wrote: back", "Client #2 says: back"]
            assert recv_all(one, 1) == recv_all(three, 1) == ["Client #2 says: back"]
        assert recv_all(one, 1) == recv_all(two, 1) == ["Client #3 left the chat"]


def chat_recovers(one: ClientConnection, two: ClientConnection, timeout: float = 20) -> float:
    """Send from one until two hears it again; the seconds that took."""
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < timeout:
        n += 1
        one.send(f"ping {n}")
        with contextlib.suppress(TimeoutError):
            while True:
                message = str(two.recv(timeout=0.5))
                if message.startswith("Client #1 says: ping"):
                    return time.monotonic() - started
    raise AssertionError(f"no broadcast got through within {timeout} s")


@pytest.mark.parametrize("outage", [1, 5])  # 5 s: retrying at the backoff's cap (a second) for a while
def test_chat_survives_a_redis_restart(
    redis_server: RedisServer, redis_pair: tuple[UvicornServer, UvicornServer], outage: float
) -> None:
    a, b = redis_pair
    with ws_connect(a, "/ws/1") as one, ws_connect(b, "/ws/2") as two:
        wait_for_subscribers(a, b, count=2)
        mark = a.log_mark()
        redis_server.stop()
        one.send("into the void")
        assert recv_all(one, 1) == ["You wrote: into the void"]  # the endpoint lives on
        time.sleep(outage)
        redis_server.start()
        took = chat_recovers(one, two)
        print(f"redis outage {outage} s: chat back {took:.2f} s after the restart")
        log = a.log_since(mark)
    assert "not sent" in log  # the failed publish is logged
    assert "Traceback" not in log


def test_chat_survives_a_killed_listen_connection(
    postgres_server: PostgresServer, postgres_pair: tuple[UvicornServer, UvicornServer]
) -> None:
    a, b = postgres_pair
    with ws_connect(a, "/ws/1") as one, ws_connect(b, "/ws/2") as two:
        wait_for_subscribers(a, b, count=2)
        assert asyncio.run(terminate_listeners(postgres_server.url)) == 2  # one per uvicorn process
        took = chat_recovers(one, two)
        print(f"postgres LISTEN connections killed: chat back after {took:.2f} s")


async def terminate_listeners(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        query = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%'"
        return len(await connection.fetch(query))
    finally:
        await connection.close()


def test_postgres_refuses_an_oversize_message_clearly(postgres_pair: tuple[UvicornServer, UvicornServer]) -> None:
    a, _ = postgres_pair
    with ws_connect(a, "/ws/1") as one:
        one.send("z" * 9000)
        messages, close = read_to_close(one)
    # an earlier test's client on the shared servers may still be announced as leaving
    assert [m for m in messages if not m.endswith(" left the chat")] == ["You wrote: " + "z" * 9000]
    assert close is not None and close[0] == 1009
    assert "8000" in close[1]


OWN_COPY = "(its own copy)"


async def join_and_leave(server: UvicornServer, client_id: int, heard: list[str]) -> None:
    # max_queue=None: this client leaves with the others' lines unread, and websockets stops
    # reading at 16 unread messages, so it would never read the server's close frame (10 s)
    async with asyncio.timeout(20), connect(f"{server.ws_url}/ws/{client_id}", max_queue=None) as ws:
        await ws.send("hi")
        while not (line := str(await ws.recv())).startswith(f"Client #{client_id} says"):
            heard.append(line)
        heard.append(OWN_COPY)


def test_many_clients_join_and_leave_at_once(pair: tuple[UvicornServer, UvicornServer]) -> None:
    a, b = pair
    marks = a.log_mark(), b.log_mark()
    heard: dict[int, list[str]] = {5000 + n: [] for n in range(200)}

    async def crowd() -> None:
        await asyncio.gather(*(join_and_leave(a if n % 2 else b, 5000 + n, heard[5000 + n]) for n in range(200)))

    try:
        asyncio.run(crowd())
    except TimeoutError:  # say what the client that waited in vain heard, and what the servers logged
        waited = [(client, lines) for client, lines in heard.items() if OWN_COPY not in lines]
        logs = "\n".join(server.log_since(mark)[-3000:] for server, mark in zip((a, b), marks, strict=True))
        raise AssertionError(f"no own copy within 20 s; heard: {waited[:3]}\nlogs:\n{logs}") from None
    deadline = time.monotonic() + 10
    while (a.health()["chat_connections"], b.health()["chat_connections"]) != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (a.health()["chat_connections"], b.health()["chat_connections"]) == (0, 0)
