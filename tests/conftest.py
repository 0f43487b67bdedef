from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from harness.servers import UvicornServer
from harness.services import PostgresServer, RedisServer
from starlette_ws.app import create_app
from starlette_ws.settings import Settings
from tests.services import start_postgres, start_redis


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests (`@pytest.mark.anyio`) run on asyncio, the loop uvicorn serves the app on."""
    return "asyncio"


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="session")
def server() -> Iterator[UvicornServer]:
    """Our app under a real uvicorn, shared by the tests that do not restart or reconfigure it."""
    with UvicornServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port (installed by scripts/system-deps.sh)."""
    server = start_redis()
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on a free loopback port, run as the postgres user."""
    server = start_postgres()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def shared_engines_running(request: pytest.FixtureRequest) -> None:
    """The shared redis-server and PostgreSQL are running when a test that uses them starts: an
    outage test stops them, and the next test in its worker (any order, under pytest-xdist) must
    not inherit the outage."""
    for name in ("redis_server", "postgres_server"):
        if name in request.fixturenames:
            engine: RedisServer | PostgresServer = request.getfixturevalue(name)
            engine.start()
