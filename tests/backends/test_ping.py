"""`ping` on the broadcast backends and the room stores: one round trip, or the engine's error
(`BackendError`, `HistoryError`) within the timeout when the server is stopped (SIGSTOP)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import pytest

from harness.services import RedisServer
from starlette_ws.backends import BackendError
from starlette_ws.backends.redis import RedisBackend
from starlette_ws.engines import Engine
from starlette_ws.history import HistoryError
from starlette_ws.history.redis import RedisStore
from tests.backends.support import paused
from tests.services import start_redis

TIMEOUT = 0.3


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own: stopping it disturbs no other test."""
    server = start_redis()
    yield server
    server.close()


@pytest.fixture(params=["redis", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.mark.anyio
async def test_ping_answers_once_connected_and_refuses_before(url: str) -> None:
    backend = Engine(url).backend()
    store = Engine(url).store("ping:", 10, 60.0)
    with anyio.fail_after(10):
        with pytest.raises(BackendError, match="not connected"):
            await backend.ping()
        with pytest.raises(HistoryError, match="not connected"):
            await store.ping()
        await backend.connect()
        await store.connect()
        try:
            await backend.ping()
            await store.ping()
        finally:
            await backend.disconnect()
            await store.disconnect()


@pytest.mark.anyio
async def test_ping_to_a_stopped_redis_fails_within_the_timeout_and_answers_after(own_redis: RedisServer) -> None:
    backend = RedisBackend(own_redis.url, timeout=TIMEOUT)
    store = RedisStore(own_redis.url, "ping:", 10, 60.0, timeout=TIMEOUT)
    with anyio.fail_after(10):
        await backend.connect()
        await store.connect()
        try:
            with paused(own_redis):
                started = time.monotonic()
                with pytest.raises(BackendError, match=r"does not answer: no answer within 0\.3 s"):
                    await backend.ping()
                with pytest.raises(HistoryError, match=r"does not answer: no answer within 0\.3 s"):
                    await store.ping()
                elapsed = time.monotonic() - started
            await backend.ping()
            await store.ping()
        finally:
            await backend.disconnect()
            await store.disconnect()
    assert elapsed < 2 * TIMEOUT + 0.3
