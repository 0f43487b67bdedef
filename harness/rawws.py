"""WebSocket clients made of a bare socket, doing only what the tests and benchmarks need.

- `StalledClient`: a blocking socket that completes the handshake and then reads only when told
  to, through a receive buffer made small before connecting: a client that stops reading
  (contract C2). Library clients keep reading on their own.
- `RawWebSocket` / `open_raw`: an asyncio protocol for the load generator. On a 2-core machine
  the `websockets` client costs more CPU per message than the servers under test, so a load
  generator built on it measures itself. Masked text frames out (the all-zero mask key, which
  the protocol allows), unmasked frames in, pings answered, the closing handshake.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from collections import deque
from typing import Protocol, cast
from urllib.parse import urlsplit

from harness import net

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
CLOSE_WAIT = 2.0  # seconds the closing handshake may take before the socket is dropped


def handshake(host: str, port: int, target: str) -> bytes:
    """The opening handshake's request for `target` (path and query)."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def status_line(response: bytes | bytearray) -> bytes:
    return bytes(response).split(b"\r\n", 1)[0]


def switched(response: bytes | bytearray) -> bool:
    """Whether the handshake's response is a 101 Switching Protocols."""
    return status_line(response).split(b" ")[1:2] == [b"101"]


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (mask key 0, so the payload goes out as it is)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return header + b"\0\0\0\0" + payload


def text_frame(text: str) -> bytes:
    return client_frame(OP_TEXT, text.encode())


CLOSE_FRAME = client_frame(OP_CLOSE, struct.pack("!H", 1000))


def take_frame(buffer: bytearray) -> tuple[int, bytes] | None:
    """Remove the first whole (unmasked) server frame from `buffer`: (opcode, payload), or None
    while the frame is still incomplete."""
    if len(buffer) < 2:
        return None
    size = buffer[1] & 0x7F
    start = 2
    if size == 126:
        if len(buffer) < 4:
            return None
        size, start = struct.unpack_from("!H", buffer, 2)[0], 4
    elif size == 127:
        if len(buffer) < 10:
            return None
        size, start = struct.unpack_from("!Q", buffer, 2)[0], 10
    if len(buffer) < start + size:
        return None
    opcode, payload = buffer[0] & 0x0F, bytes(buffer[start : start + size])
    del buffer[: start + size]
    return opcode, payload


class HasPort(Protocol):
    @property
    def port(self) -> int: ...


class StalledClient:
    """A raw WebSocket client that completes the handshake and then never reads (contract C2).

    The receive buffer is made small before connecting, so the server's writes back up quickly.
    `reset()` kills it with a RST; `frames()` reads what the server managed to send, up to its
    close frame.
    """

    def __init__(self, server: HasPort | int, path: str, rcvbuf: int = 4096, timeout: float = 5.0) -> None:
        port = server if isinstance(server, int) else server.port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((net.HOST, port))
            self.sock.sendall(handshake(net.HOST, port, path))
            response = b""
            while not response.endswith(b"\r\n\r\n"):
                chunk = self.sock.recv(1)  # one byte at a time: nothing past the handshake is consumed
                if not chunk:
                    raise ConnectionError("the server closed the connection during the handshake")
                response += chunk
            if not switched(response):
                raise ConnectionError(f"handshake refused: {status_line(response)!r}")
        except BaseException:
            self.sock.close()
            raise
        self._buffer = bytearray()

    def frames(self, timeout: float = 10.0) -> tuple[int, tuple[int, str] | None]:
        """Read every frame the server sent: (number of text frames, close frame or None)."""
        self.sock.settimeout(timeout)
        texts = 0
        try:
            while True:
                frame = take_frame(self._buffer)
                if frame is None:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        return texts, None
                    self._buffer += chunk
                    continue
                opcode, payload = frame
                if opcode == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    return texts, (code, payload[2:].decode(errors="replace"))
                if opcode == OP_TEXT:
                    texts += 1
        except OSError:  # TimeoutError included
            return texts, None

    def reset(self) -> None:
        net.reset(self.sock)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> StalledClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RawWebSocket(asyncio.Protocol):
    """Frames in arrive in ``inbox`` as (opcode, payload); ``recv`` waits for the next one."""

    def __init__(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.inbox: deque[tuple[int, bytes]] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            response = bytes(self.buffer[: end + 4])
            del self.buffer[: end + 4]
            if not switched(response):
                self.opened.set_exception(ConnectionError(status_line(response).decode(errors="replace")))
                return
            self.upgraded = True
            self.opened.set_result(None)
        self.parse_frames()

    def parse_frames(self) -> None:
        while (frame := take_frame(self.buffer)) is not None:
            opcode, payload = frame
            if opcode == OP_PING and self.transport is not None:
                self.transport.write(client_frame(OP_PONG, payload))
                continue
            self.inbox.append(frame)
        if self.inbox and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.lost.done():
            self.lost.set_result(None)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def send(self, frame: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame)

    async def recv(self) -> tuple[int, bytes]:
        while not self.inbox:
            if self.lost.done():
                raise ConnectionError("connection lost")
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return self.inbox.popleft()

    async def close(self) -> None:
        """Closing handshake; wait for the server to drop TCP first (its side keeps TIME_WAIT)."""
        if self.transport is None:
            return
        if not self.lost.done():
            self.transport.write(CLOSE_FRAME)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.lost), CLOSE_WAIT)
        self.transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def open_raw(url: str) -> RawWebSocket:
    """Connect to ``ws://host:port/path?query`` and complete the opening handshake.

    Not bounded in time by itself: callers wrap it in ``asyncio.timeout``.
    """
    parts = urlsplit(url)
    host = parts.hostname or net.HOST
    port = parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    request = handshake(host, port, target)
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: RawWebSocket(request), host, port)
    try:
        await protocol.opened
    except BaseException:
        protocol.abort()
        raise
    return protocol
