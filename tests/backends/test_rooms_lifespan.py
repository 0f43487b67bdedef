"""The lifespan connects the rooms' store with the chat's hub: a store the engine refuses is a
start-up error, not a 1011 on the first room connection; and the first room connection uses the
store the start-up connected."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import asyncpg
import pytest
from starlette.testclient import TestClient

from harness.servers import UvicornServer
from starlette_ws.app import create_app
from starlette_ws.history import HistoryError
from starlette_ws.settings import Settings
from tests.clients import session_json as receive
from tests.clients import session_until as until

CAUSE = "permission denied for schema public"


def sql(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(url)
        try:
            rows: list[asyncpg.Record] = await connection.fetch(query, *args)
            return rows
        finally:
            await connection.close()

    return asyncio.run(run())


def url_for(postgres_url: str, user: str, database: str) -> str:
    parts = urlsplit(postgres_url)
    return f"postgresql://{user}@{parts.hostname}:{parts.port}/{database}"


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """A database of its own, without the room tables; its schema `public` is PostgreSQL 15's:
    only its owner (the superuser) may CREATE there."""
    name = f"t_{secrets.token_hex(4)}"
    sql(postgres_url, f"CREATE DATABASE {name}")
    yield name
    sql(postgres_url, f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def role(postgres_url: str) -> Iterator[str]:
    """A login role that may connect and LISTEN, but not CREATE in `public`."""
    name = f"r_{secrets.token_hex(4)}"
    sql(postgres_url, f"CREATE ROLE {name} LOGIN")
    yield name
    sql(postgres_url, f"DROP ROLE {name}")


def sessions(postgres_url: str, *, user: str | None = None, database: str | None = None) -> int:
    query = "SELECT count(*) FROM pg_stat_activity WHERE (usename = $1 OR $1 IS NULL) AND (datname = $2 OR $2 IS NULL)"
    count: int = sql(postgres_url, query, user, database)[0][0]
    return count


def no_sessions_left(postgres_url: str, user: str, within: float = 3.0) -> bool:
    """Whether every session of `user` ends (a closed connection's backend exits soon after)."""
    deadline = time.monotonic() + within
    while sessions(postgres_url, user=user) > 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_store_the_engine_refuses_fails_the_start_up(postgres_url: str, database: str, role: str) -> None:
    """The chat's hub connects and LISTENs; the store may not create its tables: the lifespan
    fails, naming the cause, and closes the hub it had started."""
    app = create_app(Settings(broadcast_url=url_for(postgres_url, role, database)))
    with pytest.raises(HistoryError, match=f"cannot create the room tables .*: {CAUSE}"), TestClient(app):
        pass
    assert no_sessions_left(postgres_url, role)  # the hub's LISTEN connection too


def test_under_uvicorn_the_server_exits_and_logs_the_cause(postgres_url: str, database: str, role: str) -> None:
    server = UvicornServer(env={"BROADCAST_URL": url_for(postgres_url, role, database)}, start_timeout=10)
    with pytest.raises(RuntimeError, match="exited") as failed, server:
        pass
    assert CAUSE in str(failed.value)  # the log's tail
    assert "Application startup failed" in str(failed.value)
    assert no_sessions_left(postgres_url, role)


def test_the_first_room_connection_uses_the_store_the_lifespan_connected(postgres_url: str, database: str) -> None:
    """The room connection opens no store of its own: the only session it adds is the hub's
    NOTIFY connection, for its `join` (presence changes are broadcasts, not history)."""
    url = url_for(postgres_url, "postgres", database)
    tables = "SELECT to_regclass('starlette_ws_entries') IS NOT NULL"
    app = create_app(Settings(broadcast_url=url, room_check_seconds=60.0))  # no position check meanwhile
    with TestClient(app) as client:
        assert sql(url, tables)[0][0]  # created at start-up, before any room connection
        assert client.portal is not None
        store = client.portal.call(app.state.hubs.store)
        before = sessions(postgres_url, database=database)  # the hub's LISTEN, the store's one
        with client.websocket_connect("/rooms/lobby/ws/1") as one:
            assert receive(one) == {"type": "presence", "room": "lobby", "members": [1]}
            until(one, "join")
            one.send_text("hello")
            assert until(one, "message")["text"] == "hello"
            during = sessions(postgres_url, database=database)
        assert client.portal.call(app.state.hubs.store) is store
    assert during == before + 1  # no new pool: the store's connection is reused; + the hub's NOTIFY
