"""Contract B15 "foreign Host (DNS rebinding)": a page on a foreign name that resolves to this
server is refused by its Host.

Every connection goes to 127.0.0.1; only the Host (and Origin) header says which name the
browser used, so a raw client sends exactly the headers a rebound page's browser would.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from harness.servers import UvicornServer

SOCKETS = ["/ws", "/items/foo/ws?token=x", "/ws/4242"]
PAGES = ["/", "/echo", "/items", "/chat", "/health"]
REPLIES = {
    "/ws": "Message text was: hi",
    "/items/foo/ws?token=x": "Session cookie or query token value is: x",
    "/ws/4242": "You wrote: hi",
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    sock: socket.socket


def send_request(port: int, path: str, host: str | None, origin: str | None = None, upgrade: bool = True) -> Reply:
    """One request with exactly these headers; the body is read unless the upgrade succeeded."""
    lines = [f"GET {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if upgrade:
        key = base64.b64encode(os.urandom(16)).decode()
        lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    else:
        lines.append("Connection: close")
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)  # a hang fails with TimeoutError
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    reply = Reply(int(status_line.split()[1]), headers, body, sock)
    if reply.status != 101:
        length = int(headers.get("content-length", "-1"))
        while len(reply.body) != length and (chunk := sock.recv(4096)):
            reply.body += chunk
        sock.close()
    return reply


def answer(port: int, path: str, host: str | None, origin: str | None = None, upgrade: bool = True) -> Reply:
    """The reply, its connection closed: for pages, and for handshakes meant to be refused."""
    reply = send_request(port, path, host, origin, upgrade)
    reply.sock.close()
    return reply


def read_at_least(sock: socket.socket, data: bytes, count: int) -> bytes:
    while len(data) < count:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def echo(reply: Reply, text: str) -> str:
    """Send one short masked text frame on an upgraded connection; return the first frame back
    that answers it (on the chat, an earlier test's client may still be announced as leaving)."""
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    reply.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    data = reply.body
    while True:
        data = read_at_least(reply.sock, data, 2)
        assert data[0] == 0x81 and data[1] < 126, data  # one short unmasked text frame
        data = read_at_least(reply.sock, data, 2 + data[1])
        frame, data = data[2 : 2 + data[1]].decode(), data[2 + data[1] :]
        if not frame.endswith(" left the chat"):
            return frame


def upgraded(reply: Reply, expected: str) -> None:
    try:
        assert reply.status == 101, (reply.status, reply.body)
        assert echo(reply, "hi") == expected
    finally:
        reply.sock.close()


def assert_no_exception_logged(server: UvicornServer, mark: int) -> None:
    """uvicorn 0.54's websockets-sansio logs `ERROR: ASGI callable returned without completing
    handshake.` after every denial response (Kludex/uvicorn#3138), so only tracebacks count here."""
    log = server.log_since(mark)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log


@pytest.fixture(scope="module", params=["websockets-sansio", "wsproto", "websockets"])
def any_ws_server(request: pytest.FixtureRequest) -> Iterator[UvicornServer]:
    """Our app with the default settings, under each of uvicorn's WebSocket implementations."""
    with UvicornServer(args=["--ws", request.param]) as server:
        yield server


@pytest.fixture(scope="module")
def configured() -> Iterator[UvicornServer]:
    with UvicornServer(env={"ALLOWED_HOSTS": "chat.example, *.corp.example"}) as server:
        yield server


@pytest.mark.parametrize("path", SOCKETS)
def test_rebound_name_cannot_open_a_socket(any_ws_server: UvicornServer, path: str) -> None:
    """The rebinding page's own origin matches its Host, so only the Host check can refuse it."""
    server = any_ws_server
    mark = server.log_mark()
    evil = f"evil.example:{server.port}"
    reply = answer(server.port, path, evil, f"http://{evil}")
    assert reply.status == 400
    assert reply.headers["content-type"] == "application/json"
    assert json.loads(reply.body) == {
        "detail": [{"type": "host", "loc": ["header", "host"], "msg": f"Host not allowed: {evil}", "input": evil}]
    }
    assert_no_exception_logged(server, mark)


@pytest.mark.parametrize("path", PAGES)
def test_rebound_name_cannot_read_a_page(server: UvicornServer, path: str) -> None:
    evil = f"evil.example:{server.port}"
    reply = answer(server.port, path, evil, f"http://{evil}", upgrade=False)
    assert (reply.status, reply.body) == (400, b"Invalid host header")


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "[::1]", "LocalHost"])
@pytest.mark.parametrize("path", SOCKETS)
def test_this_machines_names_are_accepted_by_default(server: UvicornServer, name: str, path: str) -> None:
    host = f"{name}:{server.port}"
    upgraded(send_request(server.port, path, host, f"http://{host}"), REPLIES[path])


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "[::1]"])
def test_pages_answer_this_machines_names_and_point_their_socket_there(server: UvicornServer, name: str) -> None:
    host = f"{name}:{server.port}"
    reply = answer(server.port, "/echo", host, upgrade=False)
    assert reply.status == 200
    assert f"//{host}/ws".encode() in reply.body


def test_the_port_is_not_part_of_the_host_check(server: UvicornServer) -> None:
    """Behind a proxy the Host's port may be another; the Origin must still match it exactly."""
    upgraded(send_request(server.port, "/ws", "localhost:1", "http://localhost:1"), REPLIES["/ws"])
    upgraded(send_request(server.port, "/ws", "localhost"), REPLIES["/ws"])
    assert answer(server.port, "/ws", "evil.example").status == 400
    assert answer(server.port, "/ws", "evil.example:1").status == 400
    refused = answer(server.port, "/ws", f"localhost:{server.port}", "http://localhost:1")
    assert refused.status == 403
    assert json.loads(refused.body)["detail"][0]["type"] == "origin"


def test_a_handshake_without_host_is_refused(server: UvicornServer) -> None:
    reply = answer(server.port, "/ws", None)
    assert reply.status == 400
    assert json.loads(reply.body)["detail"][0]["msg"] == "Host header missing"


def test_allowed_hosts_setting(configured: UvicornServer) -> None:
    port = configured.port
    for name in ["chat.example", "CHAT.example", "a.corp.example", "b.a.corp.example"]:
        host = f"{name}:{port}"
        upgraded(send_request(port, "/ws/77", host, f"http://{host}"), "You wrote: hi")
        assert answer(port, "/chat", host, upgrade=False).status == 200
    for name in ["corp.example", "evil.example", "localhost", "127.0.0.1", "chat.example.evil.example"]:
        host = f"{name}:{port}"
        reply = answer(port, "/ws/77", host, f"http://{host}")
        assert (reply.status, json.loads(reply.body)["detail"][0]["input"]) == (400, host)
        assert answer(port, "/chat", host, upgrade=False).status == 400
