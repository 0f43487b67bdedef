"""uvicorn's protocols, made strict where one client could otherwise hold memory or a socket for good.

`HttpProtocol` (httptools) reads request heads, the WebSocket handshake included:

- a head must arrive within `HANDSHAKE_TIMEOUT` seconds, or the connection is closed;
- a URL over 8 KiB is answered 414, more than 128 headers or 64 KiB of head 431;
- at `--limit-concurrency` open connections a new one gets 503 (or, in a flood, is closed at once)
  and one log line a second says how many were refused (uvicorn's own check skips upgrades).

`WebSocketProtocol` (websockets' sans-I/O implementation, uvicorn's default) carries the sockets:

- while the client leaves our output unread (the write buffer over its high-water mark) nothing
  more is read from it, so a flood of pings cannot pile up pongs; a client that leaves it unread
  for `WS_DRAIN_TIMEOUT` seconds is dropped, and so is a closing one whose last bytes never leave;
- a message of more than `WS_MAX_FRAGMENTS` frames closes with 1009, as websockets' own client does;
- invalid UTF-8 in a text message closes with 1007 and one log line (it is the client's fault);
- a handshake websockets refuses itself (414, 431) is answered and closed;
- on shutdown, a close frame that cannot leave within half the graceful timeout is given up;
- a connection that ends without the client's close frame reaches the app as 1006, a close frame
  without a code as 1005 (uvicorn says 1005 for both once the handshake is done);
- an idle connection holds less: no handshake request and response once accepted, and an
  `Inbox` in place of the `asyncio.Queue` of received messages (about 4 KB less in all).

Serve with `uvicorn starlette_ws.app:app --http starlette_ws.protocol:HttpProtocol
--ws starlette_ws.protocol:WebSocketProtocol --limit-concurrency N` (`make run` does).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import httptools
from uvicorn._types import ASGIReceiveEvent, ASGISendEvent, WebSocketScope
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.frames import CloseCode, Frame
from websockets.protocol import State

from starlette_ws.settings import Settings

logger = logging.getLogger("uvicorn.error")  # uvicorn prints it, and the app's secret filter covers it

SETTINGS = Settings.from_environ()
MAX_URL_BYTES = 8 * 1024  # websockets' own limits on a request line and on the number of headers
MAX_HEADERS = 128
MAX_HEAD_BYTES = 64 * 1024
REFUSAL_LINGER = 1.0  # seconds a refused client has to send its request, or to read our answer
REFUSALS_WAITING = 32  # refused connections kept that long at once; past them, closed unanswered


def plain_response(status: int, phrase: str, body: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """A complete HTTP/1.1 response that closes the connection."""
    content = body.encode()
    lines = [f"HTTP/1.1 {status} {phrase}".encode()]
    lines += [name + b": " + value for name, value in headers]
    lines += [b"content-type: text/plain; charset=utf-8", b"content-length: %d" % len(content), b"connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + content


def address(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else ""


class RefusalLog:
    """At most one log line per `interval` seconds about connections refused for the limit: the
    first refusal at once, then how many more each interval, for as long as they come."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.count = 0
        self.timer: asyncio.TimerHandle | None = None

    def refused(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.count += 1
        if self.timer is None:
            self.flush(loop, limit)

    def flush(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.timer = None
        if self.count:
            logger.warning("Refused %d connection(s): %d open connections is the limit", self.count, limit)
            self.count = 0
            self.timer = loop.call_later(self.interval, self.flush, loop, limit)


REFUSALS = RefusalLog()


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing; `HttpProtocol.refusal` says what to answer."""


class HttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.handshake_timeout = SETTINGS.handshake_timeout
        self.head_timer: asyncio.TimerHandle | None = None
        self.head_bytes: int | None = None  # bytes received while a request head is unfinished
        self.head_size = 0  # the URL and headers parsed so far
        self.refusal: tuple[int, str, str] | None = None
        self.over_limit = False
        self.refused = False  # answered and closing: whatever else arrives is dropped

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limit = self.limit_concurrency
        if limit is None or len(self.connections) < limit:
            self.start_head()
            return
        REFUSALS.refused(self.loop, limit)
        if len(self.connections) < limit + REFUSALS_WAITING:
            self.over_limit = True  # answered when its request comes, so that the answer is read
            self.head_timer = self.loop.call_later(REFUSAL_LINGER, self.transport.close)
        else:  # a flood: keep no descriptor waiting
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.over_limit:
            self.refuse(503, "Service Unavailable", "Too many connections, try again later.\n")
            return
        self._unset_keepalive_if_required()
        if self.head_bytes is not None:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self.refusal is not None:
                self.refuse(*self.refusal)
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
        else:
            if self.head_bytes is not None and self.head_bytes > MAX_HEAD_BYTES:
                self.refuse(431, "Request Header Fields Too Large", f"Request head over {MAX_HEAD_BYTES} bytes.\n")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_size = 0
        if self.head_bytes is None:  # a request after the first: its bytes are counted from now
            self.start_head()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self.head_size += len(url)
        if len(self.url) > MAX_URL_BYTES:
            self.refusal = (414, "URI Too Long", f"URL over {MAX_URL_BYTES} bytes.\n")
            raise HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self.head_size += len(name) + len(value) + 4
        if len(self.headers) > MAX_HEADERS:
            self.refusal = (431, "Request Header Fields Too Large", f"More than {MAX_HEADERS} headers.\n")
            raise HeadTooLarge
        if self.head_size > MAX_HEAD_BYTES:
            self.refusal = (431, "Request Header Fields Too Large", f"Request head over {MAX_HEAD_BYTES} bytes.\n")
            raise HeadTooLarge

    def on_headers_complete(self) -> None:
        self.head_bytes = None
        self.stop_head_timer()
        super().on_headers_complete()

    def start_head(self) -> None:
        self.head_bytes = 0
        self.stop_head_timer()
        self.head_timer = self.loop.call_later(self.handshake_timeout, self.transport.close)

    def stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def refuse(self, status: int, phrase: str, body: str) -> None:
        """Answer and close, reading (and dropping) what the client still sends for a moment, so
        that our answer is not lost to a reset of a socket closed with unread data."""
        if status != 503:
            logger.info("%s - request refused: %d %s", address(self.client), status, phrase)
        self.refused = True
        self.head_bytes = None
        self.stop_head_timer()
        self.transport.write(plain_response(status, phrase, body, self.server_state.default_headers))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.head_timer = self.loop.call_later(REFUSAL_LINGER, self.transport.close)
        else:  # pragma: no cover - TLS
            self.transport.close()


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

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.queue = Inbox()
        self.drain_timeout = SETTINGS.ws_drain_timeout
        self.max_fragments = SETTINGS.ws_max_fragments
        self.write_paused = False
        self.drop_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
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
