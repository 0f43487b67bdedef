"""The WebSocket protocol (websockets' sans-I/O implementation, uvicorn's default) and what it
needs: a frame cache and a lighter inbox, over a transport whose close gives up and that joins
writes (`transport.LingeringTransport`); see `starlette_ws.protocol`.

Beside the ASGI `send`, it takes the app's text frames as they are (its transport's `write_frame`,
offered to the app in the scope's extensions under `sockets.SEND_FRAME`): the hub builds a broadcast's frame once,
and each member's frames of one loop iteration go out in one write at its end."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent, WebSocketScope
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import CloseCode, Frame
from websockets.http11 import Request
from websockets.protocol import State

from starlette_ws.ratelimit import TokenBucket
from starlette_ws.served import DEFAULTS, address, logger, settings_for
from starlette_ws.sockets import SEND_FRAME, text_frame
from starlette_ws.transport import LingeringTransport


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


PING_RATE = 10.0  # pings a second a client may send, on average (websockets' own client: one in 20 s)
PING_BURST = 100
TOO_MANY_PINGS = f"Too many pings: {PING_RATE:g}/s, bursts of {PING_BURST}"


class WebSocketProtocol(WebSocketsSansIOProtocol):
    transport: LingeringTransport
    queue: Inbox  # type: ignore[assignment]  # uvicorn's asyncio.Queue, replaced

    drain_timeout = DEFAULTS.ws_drain_timeout  # the served app's, from `connection_made` on
    max_fragments = DEFAULTS.ws_max_fragments
    write_paused = False
    pings: TokenBucket | None = None  # made at the first ping
    plain = False  # accepted with no extension (deflate): a text frame goes out as it is built
    drop_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        settings = settings_for(self.config)
        self.drain_timeout = settings.ws_drain_timeout
        self.max_fragments = settings.ws_max_fragments
        self.queue = Inbox()
        super().connection_made(LingeringTransport(cast(asyncio.Transport, transport), self.loop, self.drain_timeout))

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_drop_timer()
        self.transport.forget()  # the frames not yet written: nobody to write them to
        queued = len(self.queue)
        super().connection_lost(exc)
        self.transport.forget()  # the abort timer its close may have started
        if len(self.queue) > queued:  # uvicorn queued a disconnect: with the code RFC 6455 gives it
            self.queue.replace_last(self.lost())

    def lost(self) -> ASGIReceiveEvent:
        """The disconnect the app hears when the connection ends: the code of the client's close
        frame (1005 when it carried none), or 1006 when no close frame came (RFC 6455, 7.1.5)."""
        received = self.conn.close_rcvd
        if received is None:
            return {"type": "websocket.disconnect", "code": int(CloseCode.ABNORMAL_CLOSURE), "reason": ""}
        return {"type": "websocket.disconnect", "code": int(received.code), "reason": received.reason}

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none when websockets refused the handshake
        if scope is not None:
            scope["extensions"][SEND_FRAME] = self.transport

    # Whether the app's frames may go to the transport as they are (`LingeringTransport.direct`),
    # kept up to date where it changes rather than worked out for every frame: accepted without
    # an extension, not paused by flow control, no close frame sent (uvicorn sets `close_sent`
    # wherever it sends one), not disconnected. A close frame received is answered at once, and
    # then the transport is closing: it writes nothing more.

    _close_sent = False
    _disconnected = False

    @property
    def close_sent(self) -> bool:
        return self._close_sent

    @close_sent.setter
    def close_sent(self, value: bool) -> None:
        self._close_sent = value
        self.frames_direct()

    @property
    def disconnected(self) -> bool:
        return self._disconnected

    @disconnected.setter
    def disconnected(self, value: bool) -> None:
        self._disconnected = value
        self.frames_direct()

    def frames_direct(self) -> None:
        transport: LingeringTransport | None = getattr(self, "transport", None)
        if transport is None:  # uvicorn's __init__: no connection yet
            return
        direct = self.plain and not self.write_paused and not self._close_sent and not self._disconnected
        transport.direct = direct

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            # websockets refused the request itself (414, 431) and has its answer ready
            self.handshake_initiated = self.handshake_complete = self.close_sent = True
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    def handle_ping(self) -> None:
        """Answer with the pong websockets made, joined with the other writes of the loop
        iteration; a client that pings faster than PING_RATE (past PING_BURST) is closed with 1008:
        parsing back-to-back pings would hold the loop for every other client."""
        pong = b"".join(self.conn.data_to_send())
        if self.close_sent:
            return
        if self.pings is None:
            self.pings = TokenBucket(PING_RATE, PING_BURST)
        if not self.pings.take():
            self.fail(CloseCode.POLICY_VIOLATION, TOO_MANY_PINGS)
            return
        self.transport.write_soon(pong)

    # Flow control: stop reading while the client does not read what we write.

    def pause_writing(self) -> None:
        super().pause_writing()
        self.write_paused = True
        self.frames_direct()
        self.transport.pause_reading()
        if self.drop_timer is None:
            self.drop_timer = self.loop.call_later(self.drain_timeout, self.drop)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.write_paused = False
        self.frames_direct()
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
            self.plain = self.initial_response is None and not self.conn.extensions
            self.frames_direct()

    def writes_plain_text(self) -> bool:
        """Whether a text frame can go straight to the transport, as websockets would write it:
        open, writable, no fragmented message under way and no extension (deflate) to apply."""
        return self.transport.direct and self.conn.state is State.OPEN and not self.conn.expect_continuation_frame

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
