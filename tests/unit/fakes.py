"""Small fakes the unit tests share: an ASGI send like uvicorn's, a socket on it, and the tasks left running."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import anyio
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketState

ANYIO = os.path.dirname(anyio.__file__) + os.sep


class FakeSend:
    """An ASGI send that, like uvicorn's, writes at once and waits only while the client is paused."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.paused: asyncio.Future[None] | None = None
        self.error: Exception | None = None

    async def __call__(self, message: Message) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append(message)
        if self.paused is not None:
            await self.paused

    def pause(self) -> None:
        self.paused = asyncio.get_running_loop().create_future()

    def resume(self) -> None:
        assert self.paused is not None
        self.paused.set_result(None)
        self.paused = None

    @property
    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]

    @property
    def closes(self) -> list[tuple[int, str]]:
        return [(m["code"], m["reason"]) for m in self.sent if m["type"] == "websocket.close"]


async def never() -> Message:
    """An ASGI receive for sockets whose client says nothing."""
    await asyncio.Event().wait()
    raise AssertionError


def socket(send: FakeSend, **scope: Any) -> WebSocket:
    """An accepted socket on `send`; `scope` adds to its ASGI scope (an `app`, say)."""
    websocket = WebSocket({"type": "websocket", "path": "/", "headers": [], **scope}, never, send)
    websocket.client_state = websocket.application_state = WebSocketState.CONNECTED
    return websocket


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def others() -> set[asyncio.Task[Any]]:
    """The tasks running besides the test's own, less the one anyio's pytest runner waits in while
    the test runs (its coroutine is anyio's; the code under test starts none from anyio)."""
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task() and not from_anyio(task)}


def from_anyio(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and code.co_filename.startswith(ANYIO)
