"""What every cross-process backend promises, checked on Redis and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import anyio
import pytest

from harness.net import free_port
from harness.services import PostgresServer, RedisServer
from starlette_ws.backends import BackendError, Event
from tests.backends.support import Listener, connected, nothing_within, publish_until_heard


@dataclass(frozen=True)
class Engine:
    server: RedisServer | PostgresServer
    url: str
    unreachable_url: str
    logger: str
    lost: str  # what the outage warning says
    warnings_per_outage: int  # PostgreSQL: each backend holds a LISTEN connection and says it lost it


@pytest.fixture(params=["redis", "postgres"])
def engine(request: pytest.FixtureRequest) -> Engine:
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        return Engine(
            redis,
            request.getfixturevalue("redis_url"),
            f"redis://127.0.0.1:{free_port()}/0",
            "starlette_ws.backends.redis",
            "Lost Redis",
            1,
        )
    postgres: PostgresServer = request.getfixturevalue("postgres_server")
    return Engine(
        postgres,
        request.getfixturevalue("postgres_url"),
        f"postgresql://postgres@127.0.0.1:{free_port()}/none",
        "starlette_ws.backends.postgres",
        "Lost the LISTEN connection",
        2,
    )


@pytest.mark.anyio
async def test_round_trip_between_two_processes(engine: Engine) -> None:
    with anyio.fail_after(10):
        one, two = await connected(engine.url), await connected(engine.url)
        await one.subscribe("chat")
        await two.subscribe("chat")
        listeners = Listener(one), Listener(two)
        try:
            await one.publish("chat", "Client #1 says: hi")
            await two.publish("chat", "Client #2 says: héllo ✓ 漢字 🎉")
            for listener in listeners:
                assert (await listener.get()).message == "Client #1 says: hi"
                event = await listener.get()
                assert (event.channel, event.message) == ("chat", "Client #2 says: héllo ✓ 漢字 🎉")
        finally:
            for listener in listeners:
                await listener.stop()
            await one.disconnect()
            await two.disconnect()


@pytest.mark.anyio
async def test_unsubscribe_stops_delivery(engine: Engine) -> None:
    with anyio.fail_after(10):
        sub, pub = await connected(engine.url), await connected(engine.url)
        await sub.subscribe("a")
        await sub.subscribe("b")
        listener = Listener(sub)
        try:
            await pub.publish("a", "first")
            assert (await listener.get()).message == "first"
            await sub.unsubscribe("a")
            await pub.publish("a", "after unsubscribe")
            await pub.publish("b", "marker")
            assert (await listener.get()).message == "marker"
            await pub.publish("never-subscribed", "x")
            await nothing_within(listener, 0.3)
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()


@pytest.mark.anyio
async def test_cancelling_next_published_loses_nothing(engine: Engine) -> None:
    with anyio.fail_after(10):
        sub, pub = await connected(engine.url), await connected(engine.url)
        await sub.subscribe("c")
        try:
            events: asyncio.Queue[Event] = asyncio.Queue()  # what every listener got, in order
            for n in range(20):
                listener = Listener(sub, events)
                await asyncio.sleep(0.01 * (n % 3))  # cancelled while waiting, or just as it returns
                await listener.stop()
                await pub.publish("c", str(n))
            listener = Listener(sub, events)
            assert [(await listener.get()).message for _ in range(20)] == [str(n) for n in range(20)]
            await listener.stop()
        finally:
            await sub.disconnect()
            await pub.disconnect()


@pytest.mark.anyio
async def test_disconnect_ends_a_pending_next_published(engine: Engine) -> None:
    with anyio.fail_after(10):
        backend = await connected(engine.url)
        await backend.subscribe("x")
        pending = asyncio.create_task(backend.next_published())
        await asyncio.sleep(0.05)
        await backend.disconnect()
        with pytest.raises(BackendError, match="disconnected"):
            await asyncio.wait_for(pending, 2)
        with pytest.raises(BackendError):
            await backend.publish("x", "after disconnect")


@pytest.mark.anyio
async def test_connect_without_a_server_fails_fast(engine: Engine) -> None:
    with anyio.fail_after(10):
        started = time.monotonic()
        with pytest.raises(BackendError, match="unreachable"):
            await connected(engine.unreachable_url)
        assert time.monotonic() - started < 1


# 5 s: well past the point (about 1.5 s) where the backoff reaches its cap of a second
@pytest.mark.parametrize("outage", [pytest.param(1.0, id="1s"), pytest.param(5.0, id="5s", marks=pytest.mark.slow)])
@pytest.mark.anyio
async def test_recovers_after_a_restart(engine: Engine, outage: float, caplog: pytest.LogCaptureFixture) -> None:
    """The server is killed, stays away for `outage` seconds, and comes back on the same port.

    The same backend objects deliver again; a publish meanwhile fails fast with BackendError;
    channel changes made during the outage apply on reconnect; the outage is logged once.
    """
    caplog.set_level(logging.INFO, logger=engine.logger)
    with anyio.fail_after(outage + 20):
        sub, pub = await connected(engine.url), await connected(engine.url)
        await sub.subscribe("chat")
        await sub.subscribe("gone")
        listener = Listener(sub)
        try:
            await pub.publish("chat", "before")
            assert (await listener.get()).message == "before"

            engine.server.stop()
            await asyncio.sleep(0.1)  # the listener sees the socket close
            deadline = time.monotonic() + outage
            while time.monotonic() < deadline:
                started = time.monotonic()
                with pytest.raises(BackendError, match="cannot publish"):
                    await pub.publish("chat", "during the outage")
                assert time.monotonic() - started < 0.5
                await asyncio.sleep(0.25)
            await sub.subscribe("late")
            await sub.unsubscribe("gone")

            engine.server.start()
            recovery = await publish_until_heard(pub, listener, "chat", "after")
            await pub.publish("gone", "not any more")
            await pub.publish("late", "subscribed during the outage")
            assert (await listener.get()).message == "subscribed during the outage"
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()

    print(f"delivery resumed {recovery:.2f} s after {engine.logger} restarted (outage {outage:.0f} s)")
    assert recovery < 3.0
    records = [r for r in caplog.records if r.name == engine.logger]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == engine.warnings_per_outage and all(engine.lost in w for w in warnings), warnings
    assert sum("is back after" in r.getMessage() for r in records if r.levelno == logging.INFO) == 1


@pytest.mark.anyio
async def test_disconnect_during_an_outage_ends_next_published_at_once(engine: Engine) -> None:
    with anyio.fail_after(10):
        backend = await connected(engine.url)
        await backend.subscribe("x")
        pending = asyncio.create_task(backend.next_published())
        engine.server.stop()
        await asyncio.sleep(1.5)  # backing off by now, pauses near a second long
        started = time.monotonic()
        await backend.disconnect()
        with pytest.raises(BackendError, match="disconnected"):
            await pending
        assert time.monotonic() - started < 0.2
