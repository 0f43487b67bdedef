"""The WebSocket protocol (websockets' sans-I/O implementation, uvicorn's default) and what it
needs: a transport whose close gives up, a frame cache, a lighter inbox; see `starlette_ws.protocol`."""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import Any, cast

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent, WebSocketScope
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import CloseCode, Frame
from websockets.protocol import State

from starlette_ws.served import DEFAULTS, address, logger, settings_for


class LingeringTransport(asyncio.Transport):
    """A connection's transport, except that `close()` gives up on unsent data after `linger`
    seconds: asyncio's own close waits for the buffer to drain, which a client that never reads
    never lets happen."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, linger: float) -> None:
        super().__init__()
        self.transport = transport
        self.loop = loop
        self.linger = linger
        self.abort_timer: asyncio.TimerHandle | None = None

    def close(self) -> None:
        self.transport.close()
        if self.abort_timer is None and self.transport.get_write_buffer_size():
            self.abort_timer = self.loop.call_later(self.linger, self.transport.abort)

    def forget(self) -> None:
        if self.abort_timer is not None:
            self.abort_timer.cancel()
            self.abort_timer = None

    def abort(self) -> None:
        self.transport.abort()

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def is_reading(self) -> bool:
        return self.transport.is_reading()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)


def text_frame(text: str) -> bytes:
    """An unfragmented, unmasked text frame (a server's), as RFC 6455 section 5.2 lays it out."""
    data = text.encode()
    length = len(data)
    if length < 126:
        return bytes((0x81, length)) + data
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length) + data
    return struct.pack("!BBQ", 0x81, 127, length) + data


class FrameCache:
    """The frame of the text last sent, by identity: a broadcast hands every member the same
    message, so its frame is built once (the text is held, so its identity cannot be reused)."""

    def __init__(self) -> None:
        self.last: tuple[str | None, bytes] = (None, b"")

    def text(self, text: str) -> bytes:
        last = self.last  # one read and one write of the pair: threads cannot mix two entries
        if last[0] is text:
            return last[1]
        frame = text_frame(text)
        self.last = (text, frame)
        return frame


FRAMES = FrameCache()


class Inbox:
    """The received messages of one connection: what uvicorn uses of an `asyncio.Queue`
    (`put_nowait`, `get`, `empty`) without its four deques and its `Event` (~2.5 KB), for one
    reader, the application; a second `get` while one waits is refused.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[ASGIReceiveEvent] | None = None  # made when first needed
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: ASGIReceiveEvent) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> ASGIReceiveEvent:
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("receive() is already waiting for this connection's next message")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else 0

    def replace_last(self, item: ASGIReceiveEvent) -> None:
        """Put `item` in place of the message queued last (there must be one)."""
        assert self._items, "no message to replace"
        self._items[-1] = item


class WebSocketProtocol(WebSocketsSansIOProtocol):
    transport: LingeringTransport
    queue: Inbox  # type: ignore[assignment]  # uvicorn's asyncio.Queue, replaced

    drain_timeout = DEFAULTS.ws_drain_timeout  # the served app's, from `connection_made` on
    max_fragments = DEFAULTS.ws_max_fragments
    write_paused = False
    drop_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        settings = settings_for(self.config)
        self.drain_timeout = settings.ws_drain_timeout
        self.max_fragments = settings.ws_max_fragments
        self.queue = Inbox()
        super().connection_made(LingeringTransport(cast(asyncio.Transport, transport), self.loop, self.drain_timeout))

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_drop_timer()
        queued = len(self.queue)
        super().connection_lost(exc)
        self.transport.forget()
        if len(self.queue) > queued:  # uvicorn queued a disconnect: with the code RFC 6455 gives it
            self.queue.replace_last(self.lost())

    def lost(self) -> ASGIReceiveEvent:
        """The disconnect the app hears when the connection ends: the code of the client's close
        frame (1005 when it carried none), or 1006 when no close frame came (RFC 6455, 7.1.5)."""
        received = self.conn.close_rcvd
        if received is None:
            return {"type": "websocket.disconnect", "code": int(CloseCode.ABNORMAL_CLOSURE), "reason": ""}
        return {"type": "websocket.disconnect", "code": int(received.code), "reason": received.reason}

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            # websockets refused the request itself (414, 431) and has its answer ready
            self.handshake_initiated = self.handshake_complete = self.close_sent = True
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    # Flow control: stop reading while the client does not read what we write.

    def pause_writing(self) -> None:
        super().pause_writing()
        self.write_paused = True
        self.transport.pause_reading()
        if self.drop_timer is None:
            self.drop_timer = self.loop.call_later(self.drain_timeout, self.drop)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.write_paused = False
        self.stop_drop_timer()
        if not self.read_paused:
            self.transport.resume_reading()

    def stop_drop_timer(self) -> None:
        if self.drop_timer is not None:
            self.drop_timer.cancel()
            self.drop_timer = None

    def drop(self) -> None:
        self.drop_timer = None
        logger.info("%s dropped: output left unread for %g s", self.describe(), self.drain_timeout)
        self.transport.abort()

    async def receive(self) -> ASGIReceiveEvent:
        try:
            return await super().receive()
        finally:  # the app took a message, so uvicorn resumed reading: not while writes wait
            if self.write_paused:
                self.transport.pause_reading()

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "websocket.send" and self.writes_plain_text():
            text = message.get("text")
            if text is not None and message.get("bytes") is None:
                self.transport.write(FRAMES.text(text))
                return
        try:
            await super().send(message)
        finally:  # a close resumes reading to hear the client's reply: not while writes wait
            if self.write_paused:
                self.transport.pause_reading()
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # uvicorn keeps the handshake's request and response (headers and all) for the whole
            # connection, and needs neither again: about 2 KB of every idle connection.
            self.request = self.response = None  # type: ignore[assignment]

    def writes_plain_text(self) -> bool:
        """Whether a text frame can go straight to the transport, as websockets would write it:
        open, writable, no fragmented message under way and no extension (deflate) to apply."""
        conn = self.conn
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and self.writable.is_set()
            and conn.state is State.OPEN
            and not conn.expect_continuation_frame
            and not conn.extensions
        )

    # Messages

    def handle_cont(self, event: Frame) -> None:
        if self.close_sent:
            return
        if len(self.frames) >= self.max_fragments:
            self.frames = []
            self.fail(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
            return
        super().handle_cont(event)

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type != "text" or self.close_sent:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            self.fail(CloseCode.INVALID_DATA, f"invalid UTF-8 at position {exc.start}")
            return
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def fail(self, code: int, reason: str) -> None:
        """Close for the client's fault: one log line, no traceback."""
        logger.info("%s closed %d: %s", self.describe(), code, reason)
        self.conn.fail(code, reason)
        self.handle_parser_exception()

    def shutdown(self) -> None:
        graceful = self.config.timeout_graceful_shutdown
        if graceful is not None:
            self.transport.linger = min(self.transport.linger, graceful / 2)
        super().shutdown()

    def describe(self) -> str:
        scope: WebSocketScope | None = getattr(self, "scope", None)  # set once the handshake is read
        if scope is None:
            return address(self.client)
        return f'{get_client_addr(scope)} - "WebSocket {get_path_with_query_string(scope)}"'
