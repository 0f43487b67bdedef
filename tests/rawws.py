"""A WebSocket client made of a bare socket, to play a client that stops reading.

Library clients keep reading on their own; this one completes the handshake and then reads only
when told to, through a receive buffer made small before connecting.
"""

from __future__ import annotations

import base64
import os
import socket
import struct


def connect_stalled(port: int, path: str, rcvbuf: int = 4096) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        response += chunk
    if not response.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(response.decode(errors="replace"))
    return sock


def read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-frame")
        data += chunk
    return data


def drain_to_close(sock: socket.socket, timeout: float = 10) -> tuple[int, int | None]:
    """Read the server's frames until its close frame: (text frames seen, close code or None)."""
    sock.settimeout(timeout)
    frames = 0
    try:
        while True:
            first, second = read_exact(sock, 2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", read_exact(sock, 2))
            elif length == 127:
                (length,) = struct.unpack("!Q", read_exact(sock, 8))
            payload = read_exact(sock, length)
            if first & 0x0F == 0x8:
                return frames, struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            frames += 1
    except (ConnectionError, OSError):
        return frames, None
