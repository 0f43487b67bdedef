from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import asyncpg
import pytest

from starlette_ws.backends import BackendError, Event, MessageTooLarge, backend_for_url
from starlette_ws.backends.postgres import MAX_PAYLOAD, PostgresBackend
from tests.backends.support import Listener, run
from tests.services import PostgresServer, free_port

LOGGER = "starlette_ws.backends.postgres"


async def connected(url: str) -> PostgresBackend:
    backend = PostgresBackend(url)
    await backend.connect()
    return backend


async def nothing_within(listener: Listener, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        event = await listener.get(within=seconds)
        pytest.fail(f"unexpected {event}")


async def publish_until_heard(pub: PostgresBackend, listener: Listener, channel: str, message: str) -> float:
    """Publish every 50 ms until the listener gets `message`; how long that took."""
    started = time.monotonic()
    while True:
        await pub.publish(channel, message)  # the pool reconnects on its own: no error
        try:
            event = await listener.get(within=0.05)
        except TimeoutError:
            continue
        assert event.message == message
        while not listener.events.empty():
            listener.events.get_nowait()
        return time.monotonic() - started


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_both_url_schemes(postgres_url: str, scheme: str) -> None:
    url = scheme + postgres_url[postgres_url.index(":") :]
    backend = backend_for_url(url)
    assert isinstance(backend, PostgresBackend)

    async def main() -> None:
        await backend.connect()
        await backend.subscribe("s")
        listener = Listener(backend)
        try:
            await backend.publish("s", scheme)
            assert (await listener.get()).message == scheme
        finally:
            await listener.stop()
            await backend.disconnect()

    run(main())


def test_round_trip_between_two_processes(postgres_url: str) -> None:
    async def main() -> None:
        one, two = await connected(postgres_url), await connected(postgres_url)
        await one.subscribe("chat")
        await two.subscribe("chat")
        listeners = Listener(one), Listener(two)
        try:
            await one.publish("chat", "Client #1 says: hi")
            await two.publish("chat", "Client #2 says: hi back")
            for listener in listeners:
                assert (await listener.get()).message == "Client #1 says: hi"
                event = await listener.get()
                assert (event.channel, event.message) == ("chat", "Client #2 says: hi back")
        finally:
            for listener in listeners:
                await listener.stop()
            await one.disconnect()
            await two.disconnect()

    run(main())


@pytest.mark.parametrize(
    "channel",
    ['a"b; DROP TABLE x; --', "Mixed Case", "chat room", "café-漢字", "x" * 63, "'quoted'"],
)
def test_channel_names_are_quoted(postgres_url: str, channel: str) -> None:
    async def main() -> None:
        sub, pub = await connected(postgres_url), await connected(postgres_url)
        await sub.subscribe(channel)
        await sub.subscribe("other")
        listener = Listener(sub)
        try:
            await pub.publish(channel, "exact")
            await pub.publish(channel.lower(), "case differs") if channel != channel.lower() else None
            await pub.publish("other", "marker")
            assert [(await listener.get()).message for _ in range(2)] == ["exact", "marker"]
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()

    run(main())


@pytest.mark.parametrize("channel", ["", "x" * 64, "é" * 32, "nul\x00"])
def test_invalid_channel_names_are_refused(channel: str) -> None:
    async def main() -> None:
        backend = PostgresBackend("postgresql://127.0.0.1:1/none")
        with pytest.raises(ValueError, match="channel names"):
            await backend.subscribe(channel)
        with pytest.raises(ValueError, match="channel names"):
            await backend.publish(channel, "m")

    run(main())


def test_non_ascii_messages_round_trip(postgres_url: str) -> None:
    messages = ["héllo", "漢字かな", "emoji 🎉👍", "mixed ✓ \u202e rtl", "quotes ' \" \\ $1 %s", "line\nbreak\ttab"]

    async def main() -> None:
        sub, pub = await connected(postgres_url), await connected(postgres_url)
        await sub.subscribe("intl")
        listener = Listener(sub)
        try:
            for message in messages:
                await pub.publish("intl", message)
            assert [(await listener.get()).message for _ in messages] == messages
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()

    run(main())


def test_payload_limit(postgres_url: str) -> None:
    async def main() -> None:
        sub, pub = await connected(postgres_url), await connected(postgres_url)
        await sub.subscribe("big")
        listener = Listener(sub)
        try:
            with pytest.raises(MessageTooLarge, match=f"under {MAX_PAYLOAD} bytes"):
                await pub.publish("big", "x" * 8000)
            with pytest.raises(MessageTooLarge):  # 2,700 characters, 8,100 UTF-8 bytes
                await pub.publish("big", "漢" * 2700)
            await pub.publish("big", "x" * 7000)
            await pub.publish("big", "é" * 3999)  # 7,998 bytes: the largest that fits
            assert (await listener.get()).message == "x" * 7000
            assert (await listener.get()).message == "é" * 3999
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()

    run(main())


def test_too_large_is_refused_before_touching_the_server() -> None:
    async def main() -> None:
        backend = PostgresBackend("postgresql://127.0.0.1:1/never-connected")
        with pytest.raises(MessageTooLarge):
            await backend.publish("chat", "x" * 8000)

    run(main())


def test_unsubscribe_stops_delivery(postgres_url: str) -> None:
    async def main() -> None:
        sub, pub = await connected(postgres_url), await connected(postgres_url)
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
            await nothing_within(listener, 0.3)
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()

    run(main())


def test_cancelling_next_published_loses_nothing(postgres_url: str) -> None:
    async def main() -> None:
        sub, pub = await connected(postgres_url), await connected(postgres_url)
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


def test_disconnect_ends_a_pending_next_published(postgres_url: str) -> None:
    async def main() -> None:
        backend = await connected(postgres_url)
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
        backend = PostgresBackend(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
        started = time.monotonic()
        with pytest.raises(BackendError, match="unreachable"):
            await backend.connect()
        assert time.monotonic() - started < 1

    run(main())


def test_listen_connection_terminated_recovers(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def main() -> float:
        sub, pub = await connected(postgres_url), await connected(postgres_url)
        await sub.subscribe("chat")
        await sub.subscribe("room")
        listener = Listener(sub)
        admin = await asyncpg.connect(postgres_url)
        try:
            await pub.publish("chat", "before")
            assert (await listener.get()).message == "before"
            pids = await admin.fetch(
                "SELECT pid FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
            )
            assert len(pids) == 1  # the subscriber's LISTEN connection
            killed = time.monotonic()
            for row in pids:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", row["pid"])
            recovery = await publish_until_heard(pub, listener, "chat", "after")
            recovery = time.monotonic() - killed
            await pub.publish("room", "second channel too")
            assert (await listener.get()).message == "second channel too"
            return recovery
        finally:
            await admin.close()
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()

    recovery = run(main())
    print(f"delivery resumed {recovery:.2f} s after pg_terminate_backend")
    assert recovery < 1.0
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert any("is back after" in r.getMessage() for r in caplog.records if r.name == LOGGER)


@pytest.mark.parametrize("outage", [pytest.param(1.0, id="1s"), pytest.param(12.0, id="12s", marks=pytest.mark.slow)])
def test_recovers_after_postgres_restart(
    postgres_server: PostgresServer, postgres_url: str, outage: float, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def main() -> float:
        sub, pub = await connected(postgres_url), await connected(postgres_url)
        await sub.subscribe("chat")
        await sub.subscribe("gone")
        listener = Listener(sub)
        try:
            await pub.publish("chat", "before")
            assert (await listener.get()).message == "before"

            postgres_server.stop()
            deadline = time.monotonic() + outage
            while time.monotonic() < deadline:
                started = time.monotonic()
                with pytest.raises(BackendError, match="cannot publish"):
                    await pub.publish("chat", "during the outage")
                assert time.monotonic() - started < 0.5
                await asyncio.sleep(0.25)
            await sub.subscribe("late")
            await sub.unsubscribe("gone")

            postgres_server.start()
            recovery = await publish_until_heard(pub, listener, "chat", "after")
            await pub.publish("gone", "not any more")
            await pub.publish("late", "subscribed during the outage")
            assert (await listener.get()).message == "subscribed during the outage"
            return recovery
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()

    recovery = run(main(), timeout=outage + 20)
    print(f"delivery resumed {recovery:.2f} s after PostgreSQL restarted (outage {outage:.0f} s)")
    assert recovery < 3.0
    # Both backends hold a LISTEN connection and each logs losing it once, however long the
    # outage; only the one whose next_published is running reconnects (and says so).
    records = [r for r in caplog.records if r.name == LOGGER]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("Lost the LISTEN connection" in w for w in warnings), warnings
    assert sum("is back after" in r.getMessage() for r in records) == 1


def test_silent_listen_connection_is_replaced(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A LISTEN connection whose server process hangs (SIGSTOP) fails its health check."""
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def main() -> None:
        sub = PostgresBackend(postgres_url, timeout=0.5, health_check=0.3)
        await sub.connect()
        pub = await connected(postgres_url)
        await sub.subscribe("chat")
        listener = Listener(sub)
        admin = await asyncpg.connect(postgres_url)
        frozen: list[int] = []
        try:
            await pub.publish("chat", "before")
            assert (await listener.get()).message == "before"
            frozen = [
                row["pid"]
                for row in await admin.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
                )
            ]
            assert len(frozen) == 1
            os.kill(frozen[0], signal.SIGSTOP)
            await asyncio.sleep(1.0)  # a health check times out, a new connection LISTENs
            await pub.publish("chat", "to the new connection")
            assert (await listener.get()).message == "to the new connection"
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
            await admin.close()
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()

    run(main())
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Lost the LISTEN connection" in warnings[0], warnings


def test_disconnect_during_an_outage_ends_next_published_at_once(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    async def main() -> None:
        backend = await connected(postgres_url)
        await backend.subscribe("x")
        pending = asyncio.create_task(backend.next_published())
        postgres_server.stop()
        await asyncio.sleep(1.5)  # backing off by now, pauses near a second long
        started = time.monotonic()
        await backend.disconnect()
        with pytest.raises(BackendError, match="disconnected"):
            await pending
        assert time.monotonic() - started < 0.2

    run(main())
