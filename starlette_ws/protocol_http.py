"""The HTTP protocol (httptools) with a guard on request heads, the WebSocket handshake included;
see `starlette_ws.protocol` for what it refuses."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from starlette_ws.served import DEFAULTS, address, logger, settings_for

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
    handshake_timeout = DEFAULTS.handshake_timeout  # the served app's, from `connection_made` on
    head_timer: asyncio.TimerHandle | None = None
    head_bytes: int | None = None  # bytes received while a request head is unfinished
    head_size = 0  # the URL and headers parsed so far
    refusal: tuple[int, str, str] | None = None
    over_limit = False
    refused = False  # answered and closing: whatever else arrives is dropped

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.handshake_timeout = settings_for(self.config).handshake_timeout
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
