"""The hub's side of an engine problem: its listener never ends, leaving never raises."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import anyio
import pytest
from starlette.websockets import WebSocket

from starlette_ws import hub as hub_module
from starlette_ws.backends import Event
from starlette_ws.backends.memory import MemoryBackend
from starlette_ws.hub import Hub


class FaultyBackend(MemoryBackend):
    """The memory backend with bugs: `next_published` fails twice, `unsubscribe` always."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 2

    async def next_published(self) -> Event:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("a bug in next_published")
        return await super().next_published()

    async def unsubscribe(self, channel: str) -> None:
        raise RuntimeError("a bug in unsubscribe")


class Client:
    """What a hub connection uses of a WebSocket: the texts it was sent."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[str] = asyncio.Queue()

    async def send(self, message: dict[str, Any]) -> None:
        self.received.put_nowait(message["text"])

    async def close(self, code: int = 1000, reason: Any = None) -> None:
        pass


@pytest.mark.anyio
async def test_listener_outlives_an_unexpected_error_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(hub_module, "RELISTEN", 0.05)
    with anyio.fail_after(10):
        hub = Hub(FaultyBackend(), 1 << 20)
        await hub.start()
        stay, leave = Client(), Client()
        staying = await hub.join("chat", cast(WebSocket, stay))
        leaving = await hub.join("room", cast(WebSocket, leave))
        try:
            await asyncio.sleep(0.3)  # both failures are behind the listener
            await hub.publish("chat", "still heard")
            assert await asyncio.wait_for(stay.received.get(), 2) == "still heard"
            assert hub.listening
            await hub.leave(leaving)  # the last one in "room": unsubscribe fails, logged only
            await hub.broadcast(staying, "chat", "left the room")
            assert await asyncio.wait_for(stay.received.get(), 2) == "left the room"
        finally:
            await hub.stop()

    errors = [r for r in caplog.records if r.name == "starlette_ws.hub" and r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "Broadcast listener failed; listening again in 0.05 s",
        "Broadcast listener failed; listening again in 0.05 s",
        "Unsubscribing from 'room' failed",
    ]
    assert all(r.exc_info is not None for r in errors)  # with the traceback
