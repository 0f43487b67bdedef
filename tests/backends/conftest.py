from __future__ import annotations

import pytest

from harness.services import PostgresServer, RedisServer


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server, running again if an earlier outage test left it stopped."""
    redis_server.start()
    return redis_server.url


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    postgres_server.start()
    return postgres_server.url
