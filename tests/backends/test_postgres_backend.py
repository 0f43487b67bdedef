from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import anyio
import asyncpg
import pytest

from harness.services import PostgresServer
from starlette_ws.backends import MessageTooLarge, PublishUncertain
from starlette_ws.backends.postgres import MAX_PAYLOAD, PostgresBackend
from starlette_ws.engines import Engine
from tests.backends.support import Listener, connected, publish_until_heard
from tests.proxy import Proxy

LOGGER = "starlette_ws.backends.postgres"


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
@pytest.mark.anyio
async def test_both_url_schemes(postgres_url: str, scheme: str) -> None:
    url = scheme + postgres_url[postgres_url.index(":") :]
    backend = Engine(url).backend()
    assert isinstance(backend, PostgresBackend)
    with anyio.fail_after(10):
        await backend.connect()
        await backend.subscribe("s")
        listener = Listener(backend)
        try:
            await backend.publish("s", scheme)
            assert (await listener.get()).message == scheme
        finally:
            await listener.stop()
            await backend.disconnect()


@pytest.mark.parametrize(
    "channel",
    ['a"b; DROP TABLE x; --', "Mixed Case", "chat room", "café-漢字", "x" * 63, "'quoted'"],
)
@pytest.mark.anyio
async def test_channel_names_are_quoted(postgres_url: str, channel: str) -> None:
    with anyio.fail_after(10):
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


@pytest.mark.parametrize("channel", ["", "x" * 64, "é" * 32, "nul\x00"])
@pytest.mark.anyio
async def test_invalid_channel_names_are_refused(channel: str) -> None:
    with anyio.fail_after(10):
        backend = PostgresBackend("postgresql://127.0.0.1:1/none")
        with pytest.raises(ValueError, match="channel names"):
            await backend.subscribe(channel)
        with pytest.raises(ValueError, match="channel names"):
            await backend.publish(channel, "m")


@pytest.mark.anyio
async def test_non_ascii_messages_round_trip(postgres_url: str) -> None:
    messages = ["héllo", "漢字かな", "emoji 🎉👍", "mixed ✓ \u202e rtl", "quotes ' \" \\ $1 %s", "line\nbreak\ttab"]
    with anyio.fail_after(10):
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


@pytest.mark.anyio
async def test_payload_limit(postgres_url: str) -> None:
    with anyio.fail_after(10):
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


@pytest.mark.anyio
async def test_too_large_is_refused_before_touching_the_server() -> None:
    with anyio.fail_after(10):
        backend = PostgresBackend("postgresql://127.0.0.1:1/never-connected")
        with pytest.raises(MessageTooLarge):
            await backend.publish("chat", "x" * 8000)


async def listening_pids(admin: asyncpg.Connection) -> list[int]:
    """The server processes of the other connections that LISTEN (a subscriber's)."""
    query = "SELECT pid FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
    return [row["pid"] for row in await admin.fetch(query)]


@pytest.mark.anyio
async def test_listen_connection_terminated_recovers(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with anyio.fail_after(10):
        sub, pub = await connected(postgres_url), await connected(postgres_url)
        await sub.subscribe("chat")
        await sub.subscribe("room")
        listener = Listener(sub)
        admin = await asyncpg.connect(postgres_url)
        try:
            await pub.publish("chat", "before")
            assert (await listener.get()).message == "before"
            pids = await listening_pids(admin)
            assert len(pids) == 1  # the subscriber's LISTEN connection
            killed = time.monotonic()
            for pid in pids:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            recovery = await publish_until_heard(pub, listener, "chat", "after")
            recovery = time.monotonic() - killed
            await pub.publish("room", "second channel too")
            assert (await listener.get()).message == "second channel too"
        finally:
            await admin.close()
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()

    print(f"delivery resumed {recovery:.2f} s after pg_terminate_backend")
    assert recovery < 1.0
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert any("is back after" in r.getMessage() for r in caplog.records if r.name == LOGGER)


@pytest.mark.anyio
async def test_silent_listen_connection_is_replaced(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A LISTEN connection whose server process hangs (SIGSTOP) fails its health check."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    with anyio.fail_after(10):
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
            frozen = await listening_pids(admin)
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

    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Lost the LISTEN connection" in warnings[0], warnings


@pytest.mark.parametrize("in_the_window", ["health check", "unsubscribe", "subscribe"])
@pytest.mark.anyio
async def test_dying_connection_window_is_an_outage(
    postgres_server: PostgresServer, postgres_url: str, in_the_window: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Between PostgreSQL's FATAL message and the socket close, asyncpg refuses every operation
    with InternalClientError. A proxy holds the close back so the LISTEN connection's health
    check, UNLISTEN or LISTEN lands in that window: the backend must take it as a lost
    connection (logged once, replaced), never raise it to the hub."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Proxy(postgres_server.port, hold_close=2.0) as proxy, anyio.fail_after(10):
        proxied = postgres_url.replace(f":{postgres_server.port}/", f":{proxy.port}/")
        sub = PostgresBackend(proxied, health_check=0.3 if in_the_window == "health check" else 60)
        await sub.connect()
        pub = await connected(postgres_url)
        await sub.subscribe("chat")
        await sub.subscribe("room")
        listener = Listener(sub)
        admin = await asyncpg.connect(postgres_url)
        try:
            await pub.publish("chat", "before")
            assert (await listener.get()).message == "before"
            pids = await listening_pids(admin)
            assert len(pids) == 1
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pids[0])
            await asyncio.sleep(0.2)  # the FATAL message is in, the close is held back
            if in_the_window == "unsubscribe":
                await sub.unsubscribe("room")
            elif in_the_window == "subscribe":
                await sub.subscribe("late")
            else:
                await asyncio.sleep(0.5)  # a health check runs
            assert not listener.task.done(), listener.task
            await publish_until_heard(pub, listener, "chat", "after")
            if in_the_window == "subscribe":
                await pub.publish("late", "subscribed in the window")
                assert (await listener.get()).message == "subscribed in the window"
            await pub.publish("room", "room")
            await pub.publish("chat", "marker")
            expected = ["marker"] if in_the_window == "unsubscribe" else ["room", "marker"]
            assert [(await listener.get()).message for _ in expected] == expected
        finally:
            proxy.release()  # so that closing the new connection does not wait
            await admin.close()
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()
        assert proxy.closes_held >= 1

    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Lost the LISTEN connection" in warnings[0], warnings


@pytest.mark.anyio
async def test_a_notify_without_an_answer_is_uncertain(postgres_url: str) -> None:
    """The NOTIFY connection's server process hangs (SIGSTOP): pg_notify() went out, no answer
    came back, so the publish may still happen; the backend says so, within its timeout."""
    with anyio.fail_after(10):
        pub = PostgresBackend(postgres_url, timeout=0.5, pool_size=1)
        await pub.connect()
        admin = await asyncpg.connect(postgres_url)
        frozen: list[int] = []
        try:
            await pub.publish("chat", "first")  # opens the pool's only connection
            frozen = [
                row["pid"]
                for row in await admin.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT pg_notify%' AND pid <> pg_backend_pid()"
                )
            ]
            assert len(frozen) == 1
            os.kill(frozen[0], signal.SIGSTOP)
            started = time.monotonic()
            with pytest.raises(PublishUncertain, match=r"no answer within 0\.5 s"):
                await pub.publish("chat", "unanswered")
            assert time.monotonic() - started < 1.0
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
            await admin.close()
            await pub.disconnect()
