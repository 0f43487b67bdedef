"""What the endpoints and the hub share about a client's socket."""

from __future__ import annotations

import struct
from typing import Protocol, cast

from starlette import status
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from starlette_ws import metrics

# What a send to a client that is gone raises: Starlette's disconnect errors, a dropped transport,
# and uvicorn's RuntimeError for a send after it closed the socket itself (keepalive timeout).
GONE = (WebSocketDisconnect, RuntimeError, OSError)

# The scope extension through which our protocol (`protocol_ws.WebSocketProtocol`) takes a text
# frame as it is, to write with the connection's other frames of the loop iteration: a
# `FrameWriter` (the connection's transport).
SEND_FRAME = "starlette_ws.send_frame"


class FrameWriter(Protocol):
    def write_frame(self, frame: bytes) -> bool:
        """Take `frame` to write as it is; False when it must take the ordinary `send` (deflate,
        a paused or closing socket)."""
        ...


def text_frame(text: str) -> bytes:
    """The unfragmented, unmasked (server's) text frame of `text`, as RFC 6455 section 5.2 lays it out."""
    return framed(text.encode())


def framed(data: bytes) -> bytes:
    """The text frame of `data`, UTF-8 already."""
    length = len(data)
    if length < 126:
        return bytes((0x81, length)) + data
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length) + data
    return struct.pack("!BBQ", 0x81, 127, length) + data


class Text:
    """A text message for members: its ASGI message, its UTF-8 size and its frame, each made once
    however many members it goes to (nobody changes them)."""

    __slots__ = ("frame", "message", "size")

    def __init__(self, text: str) -> None:
        data = text.encode()
        self.message: Message = {"type": "websocket.send", "text": text}
        self.size = len(data)
        self.frame = framed(data)


class CountedWebSocket(WebSocket):
    """Starlette's `WebSocket`, counting the messages it sends, with a short way for text.

    While connected, `send_text` gives the server its message directly: Starlette's `send` would
    only check the state again and pick the branch. A send that fails the way Starlette reports
    (a dropped transport: 1006) fails the same; any other state takes Starlette's own path.
    `frames` is our protocol's direct way in (`SEND_FRAME`), None under any other server.
    """

    def __init__(self, scope: Scope, receive: Receive, send: Send, sent: metrics.Inc) -> None:
        super().__init__(scope, receive, send)
        self.send_to_server = send
        self.count_sent = sent.inc
        self.frames = cast(FrameWriter | None, (scope.get("extensions") or {}).get(SEND_FRAME))

    async def send(self, message: Message) -> None:
        await super().send(message)
        if message["type"] == "websocket.send":
            self.count_sent()

    async def send_text(self, data: str) -> None:
        if self.application_state is not WebSocketState.CONNECTED:
            await super().send_text(data)
            return
        try:
            await self.send_to_server({"type": "websocket.send", "text": data})
        except OSError:
            self.application_state = WebSocketState.DISCONNECTED
            raise WebSocketDisconnect(code=status.WS_1006_ABNORMAL_CLOSURE) from None
        self.count_sent()
