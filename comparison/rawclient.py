"""A minimal WebSocket client on a raw asyncio transport, for the throughput scenarios.

On a 2-core machine the ``websockets`` client costs more CPU per message than the servers
under test, so a load generator built on it measures itself. This client does only what
the scenarios need: the opening handshake, masked text frames out (the all-zero mask key,
which the protocol allows), unmasked frames in, and the closing handshake.
"""

import asyncio
import base64
import contextlib
import os
import struct
from collections import deque
from typing import cast
from urllib.parse import urlsplit

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


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


CLOSE_WAIT = 2.0  # seconds the closing handshake may take before the socket is dropped
CLOSE_FRAME = client_frame(OP_CLOSE, struct.pack("!H", 1000))


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
            status_line = bytes(self.buffer[: self.buffer.find(b"\r\n")])
            del self.buffer[: end + 4]
            if status_line.split(b" ")[1:2] != [b"101"]:
                self.opened.set_exception(ConnectionError(status_line.decode(errors="replace")))
                return
            self.upgraded = True
            self.opened.set_result(None)
        self.parse_frames()

    def parse_frames(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            opcode = buffer[0] & 0x0F
            size = buffer[1] & 0x7F
            start = 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size = struct.unpack_from("!H", buffer, 2)[0]
                start = 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size = struct.unpack_from("!Q", buffer, 2)[0]
                start = 10
            if len(buffer) < start + size:
                return
            payload = bytes(buffer[start : start + size])
            del buffer[: start + size]
            if opcode == OP_PING and self.transport is not None:
                self.transport.write(client_frame(OP_PONG, payload))
                continue
            self.inbox.append((opcode, payload))
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
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: RawWebSocket(request), host, port)
    try:
        await protocol.opened
    except BaseException:
        protocol.abort()
        raise
    return protocol
