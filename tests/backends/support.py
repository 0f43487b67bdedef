"""Helpers for driving a backend from async tests: a listener task and what waits on it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator

import psutil
import pytest

from harness.services import Engine
from starlette_ws import engines
from starlette_ws.backends import Backend, Event


class Listener:
    """What the hub does: one task calling `next_published` forever, events into a queue."""

    def __init__(self, backend: Backend, events: asyncio.Queue[Event] | None = None) -> None:
        self.backend = backend
        self.events: asyncio.Queue[Event] = asyncio.Queue() if events is None else events
        self.task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            self.events.put_nowait(await self.backend.next_published())

    async def get(self, within: float = 5.0) -> Event:
        async with asyncio.timeout(within):
            return await self.events.get()

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def connected(url: str) -> Backend:
    backend = engines.Engine(url).backend()
    await backend.connect()
    return backend


async def nothing_within(listener: Listener, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        event = await listener.get(within=seconds)
        pytest.fail(f"unexpected {event}")


async def publish_until_heard(pub: Backend, listener: Listener, channel: str, message: str) -> float:
    """Publish every 50 ms until the listener gets `message`; how long that took."""
    started = time.monotonic()
    while True:
        await pub.publish(channel, message)
        try:
            event = await listener.get(within=0.05)
        except TimeoutError:
            continue
        assert event.message == message
        while not listener.events.empty():
            listener.events.get_nowait()
        return time.monotonic() - started


@contextlib.contextmanager
def paused(server: Engine) -> Iterator[None]:
    """SIGSTOP the server and every process it started (PostgreSQL's backends and workers), SIGCONT
    on exit: its sockets stay open, new connections wait in its backlog, and nothing answers."""
    stopped = [server.pid]
    os.kill(server.pid, signal.SIGSTOP)  # first: it starts no process after the list is read
    try:
        for child in psutil.Process(server.pid).children(recursive=True):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGSTOP)
                stopped.append(child.pid)
        yield
    finally:
        for pid in reversed(stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
