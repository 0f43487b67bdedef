"""`/health` under a real uvicorn while its engine stalls: a Redis or PostgreSQL server stopped
with SIGSTOP keeps its sockets open, so nothing but the engine probe notices. The stall must show
(`"engine": "unreachable"`, `"status": "degraded"`) within 5 s, and clear within 5 s of SIGCONT,
with the default `ENGINE_PROBE_SECONDS` (2 s)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.servers import UvicornServer
from harness.services import Engine, PostgresServer, RedisServer
from tests.backends.support import paused
from tests.server.test_metrics import scrape
from tests.services import start_postgres, start_redis

WITHIN = 5.0  # seconds: a stall shows on /health this soon, and clears this soon after it ends
UP: tuple[str, frozenset[tuple[str, str]]] = ("starlette_ws_engine_up", frozenset())


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own: stopping it disturbs no other test."""
    server = start_redis()
    yield server
    server.close()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.close()


def engine_becomes(server: UvicornServer, state: str, since: float) -> tuple[float, dict[str, Any]]:
    """Poll /health until `"engine"` is `state` (or WITHIN + 1 s passed): how long after `since`, and the answer."""
    while True:
        health = server.health()
        elapsed = time.monotonic() - since
        if health["engine"] == state or elapsed > WITHIN + 1:
            return elapsed, health
        time.sleep(0.1)


def failures(server: UvicornServer) -> float:
    samples = scrape(server)
    return sum(value for (name, _), value in samples.items() if name == "starlette_ws_engine_probe_failures_total")


def stall(engine: Engine, broadcast_url: str) -> None:
    with UvicornServer(env={"BROADCAST_URL": broadcast_url}) as server:
        before = server.health()
        failed_before = failures(server)
        with paused(engine):
            detected, during = engine_becomes(server, "unreachable", time.monotonic())
            up_during = scrape(server).get(UP)
        resumed = time.monotonic()
        cleared, after = engine_becomes(server, "ok", resumed)
        up_after = scrape(server).get(UP)
        failed = failures(server) - failed_before
    print(
        f"\n{type(engine).__name__} stopped: on /health after {detected:.1f} s, cleared {cleared:.1f} s after SIGCONT"
    )
    assert (before["status"], before["engine"]) == ("ok", "ok") and "engine_error" not in before
    assert (during["status"], during["engine"]) == ("degraded", "unreachable")
    assert "no answer within 2 s" in during["engine_error"], during
    assert detected <= WITHIN
    assert (after["status"], after["engine"]) == ("ok", "ok") and "engine_error" not in after
    assert cleared <= WITHIN
    assert (up_during, up_after) == (0, 1)
    assert failed >= 1


def test_a_stopped_redis_shows_on_health_within_5_s_and_clears_within_5_s(own_redis: RedisServer) -> None:
    stall(own_redis, own_redis.url)


def test_a_stopped_postgres_shows_on_health_within_5_s_and_clears_within_5_s(own_postgres: PostgresServer) -> None:
    stall(own_postgres, own_postgres.url)
