"""A WebSocket client made of a bare socket, to play a client that stops reading (contract C2).

Library clients keep reading on their own; this one completes the handshake and then reads only
when told to, through a receive buffer made small before connecting.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct
from typing import Protocol


class HasPort(Protocol):
    @property
    def port(self) -> int: ...


class StalledClient:
    """A raw WebSocket client that completes the handshake and then never reads (contract C2).

    The receive buffer is made small before connecting, so the server's writes back up quickly.
    `reset()` kills it with a RST; `frames()` reads what the server managed to send, up to its
    close frame.
    """

    def __init__(self, server: HasPort, path: str, rcvbuf: int = 4096) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", server.port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            chunk = self.sock.recv(1)  # one byte at a time: nothing past the handshake is consumed
            if not chunk:
                raise ConnectionError("the server closed the connection during the handshake")
            self._buffer += chunk
        status_line = self._buffer.split(b"\r\n", 1)[0]
        if b" 101 " not in status_line:
            raise ConnectionError(f"handshake refused: {status_line!r}")
        self._buffer = b""

    def _read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def frames(self, timeout: float = 10.0) -> tuple[int, tuple[int, str] | None]:
        """Read every frame the server sent: (number of text frames, close frame or None)."""
        self.sock.settimeout(timeout)
        texts = 0
        try:
            while True:
                first, second = self._read(2)
                length = second & 0x7F
                if length == 126:
                    length = struct.unpack("!H", self._read(2))[0]
                elif length == 127:
                    length = struct.unpack("!Q", self._read(8))[0]
                payload = self._read(length)
                opcode = first & 0x0F
                if opcode == 0x8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    return texts, (code, payload[2:].decode(errors="replace"))
                if opcode == 0x1:
                    texts += 1
        except (EOFError, TimeoutError, OSError):
            return texts, None

    def reset(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
