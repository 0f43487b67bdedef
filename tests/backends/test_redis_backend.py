from __future__ import annotations

import asyncio
import logging
import time

import pytest

from starlette_ws.backends import BackendError, Event, backend_for_url
from starlette_ws.backends.redis import RedisBackend
from tests.backends.support import Listener, run
from tests.services import RedisServer, free_port

LOGGER = "starlette_ws.backends.redis"


async def connected(url: str) -> RedisBackend:
    backend = RedisBackend(url)
    await backend.connect()
    return backend


async def nothing_within(listener: Listener, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        event = await listener.get(within=seconds)
        pytest.fail(f"unexpected {event}")


def test_chosen_by_url_scheme() -> None:
    assert isinstance(backend_for_url("redis://127.0.0.1:6379/0"), RedisBackend)


def test_round_trip_between_two_processes(redis_url: str) -> None:
    async def main() -> None:
        one, two = await connected(redis_url), await connected(redis_url)
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

    run(main())


def test_subscribed_once_subscribe_returns(redis_url: str) -> None:
    """The subscription is confirmed by the server before subscribe() returns."""

    async def main() -> None:
        sub, pub = await connected(redis_url), await connected(redis_url)
        listener = Listener(sub)
        try:
            for n in range(50):
                await sub.subscribe(f"room-{n}")
                await pub.publish(f"room-{n}", str(n))
                assert (await listener.get()).message == str(n)
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()

    run(main())


def test_unsubscribe_stops_delivery(redis_url: str) -> None:
    async def main() -> None:
        sub, pub = await connected(redis_url), await connected(redis_url)
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

    run(main())


def test_subscribe_before_anyone_listens(redis_url: str) -> None:
    async def main() -> None:
        sub, pub = await connected(redis_url), await connected(redis_url)
        await sub.subscribe("early")
        await asyncio.sleep(0.1)
        await pub.publish("early", "queued in the socket until someone reads")
        listener = Listener(sub)
        try:
            assert (await listener.get()).message == "queued in the socket until someone reads"
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()

    run(main())


def test_cancelling_next_published_loses_nothing(redis_url: str) -> None:
    async def main() -> None:
        sub, pub = await connected(redis_url), await connected(redis_url)
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

    run(main())


def test_disconnect_ends_a_pending_next_published(redis_url: str) -> None:
    async def main() -> None:
        backend = await connected(redis_url)
        await backend.subscribe("x")
        pending = asyncio.create_task(backend.next_published())
        await asyncio.sleep(0.05)
        await backend.disconnect()
        with pytest.raises(BackendError, match="disconnected"):
            await asyncio.wait_for(pending, 2)
        with pytest.raises(BackendError):
            await backend.publish("x", "after disconnect")

    run(main())


def test_connect_without_a_server_fails_fast() -> None:
    async def main() -> None:
        backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0")
        started = time.monotonic()
        with pytest.raises(BackendError, match="unreachable"):
            await backend.connect()
        assert time.monotonic() - started < 1

    run(main())


@pytest.mark.parametrize("outage", [pytest.param(1.0, id="1s"), pytest.param(12.0, id="12s", marks=pytest.mark.slow)])
def test_recovers_after_redis_restart(
    redis_server: RedisServer, redis_url: str, outage: float, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis is killed, stays away for `outage` seconds, and comes back on the same port.

    The same backend objects deliver again; a publish meanwhile fails fast with BackendError;
    channel changes made during the outage apply on reconnect; the outage is logged once.
    """
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def main() -> float:
        sub, pub = await connected(redis_url), await connected(redis_url)
        await sub.subscribe("chat")
        await sub.subscribe("gone")
        listener = Listener(sub)
        try:
            await pub.publish("chat", "before")
            assert (await listener.get()).message == "before"

            redis_server.stop()
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

            redis_server.start()
            restarted = time.monotonic()
            while True:  # publish until the re-subscribed listener hears it
                await pub.publish("chat", "after")
                try:
                    event = await listener.get(within=0.05)
                    break
                except TimeoutError:
                    continue
            recovery = time.monotonic() - restarted
            assert event.message == "after"
            while not listener.events.empty():
                listener.events.get_nowait()
            await pub.publish("gone", "not any more")
            await pub.publish("late", "subscribed during the outage")
            assert (await listener.get()).message == "subscribed during the outage"
            return recovery
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()

    recovery = run(main(), timeout=outage + 15)
    print(f"delivery resumed {recovery:.2f} s after Redis restarted (outage {outage:.0f} s)")
    assert recovery < 3.0
    records = [r for r in caplog.records if r.name == LOGGER]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "Lost Redis" in warnings[0].getMessage()
    assert any("is back after" in r.getMessage() for r in records if r.levelno == logging.INFO)


def test_cancel_during_an_outage_then_recover(redis_server: RedisServer, redis_url: str) -> None:
    async def main() -> None:
        sub, pub = await connected(redis_url), await connected(redis_url)
        await sub.subscribe("chat")
        try:
            redis_server.stop()
            for _ in range(5):  # cancelled while reconnecting, each time
                listener = Listener(sub)
                await asyncio.sleep(0.15)
                await listener.stop()
            redis_server.start()
            listener = Listener(sub)
            while True:
                await pub.publish("chat", "back")
                try:
                    assert (await listener.get(within=0.1)).message == "back"
                    break
                except TimeoutError:
                    continue
            await listener.stop()
        finally:
            await sub.disconnect()
            await pub.disconnect()

    run(main())


def test_disconnect_during_an_outage_ends_next_published_at_once(redis_server: RedisServer, redis_url: str) -> None:
    async def main() -> None:
        backend = await connected(redis_url)
        await backend.subscribe("x")
        pending = asyncio.create_task(backend.next_published())
        redis_server.stop()
        await asyncio.sleep(1.5)  # backing off by now, pauses near a second long
        started = time.monotonic()
        await backend.disconnect()
        with pytest.raises(BackendError, match="disconnected"):
            await pending
        assert time.monotonic() - started < 0.2

    run(main())
