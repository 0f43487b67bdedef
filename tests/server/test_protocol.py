"""Attacks at the protocol layer (`starlette_ws.protocol`), each from a raw socket over a real uvicorn:
contract rows B16-B20 (docs/behaviour.md), and B12's shutdown with clients that never read.

Every loop here is bounded in count and time; thresholds are made small through settings.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import struct
import time
from collections.abc import Iterator

import psutil
import pytest
from websockets.exceptions import InvalidStatus

from harness.rawws import StalledClient
from harness.servers import UvicornServer
from starlette_ws.protocol_ws import PING_BURST, TOO_MANY_PINGS
from tests.clients import ws_connect

DRAIN_TIMEOUT = 1.0
HANDSHAKE_TIMEOUT = 1.0
MAX_FRAGMENTS = 4096  # the default
MiB = 2**20


@pytest.fixture(scope="module")
def server() -> Iterator[UvicornServer]:
    env = {"WS_DRAIN_TIMEOUT": str(DRAIN_TIMEOUT), "HANDSHAKE_TIMEOUT": str(HANDSHAKE_TIMEOUT)}
    with UvicornServer(env=env, args=["--ws-max-size", "65536"]) as server:
        yield server


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A client frame, masked with a zero key (so the payload goes as it is)."""
    length = len(payload)
    if length < 126:
        size = bytes([0x80 | length])
    elif length < 65536:
        size = bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        size = bytes([0x80 | 127]) + struct.pack("!Q", length)
    return bytes([(0x80 if fin else 0) | opcode]) + size + b"\0\0\0\0" + payload


def rss(server: UvicornServer) -> int:
    assert server.process is not None
    return int(psutil.Process(server.process.pid).memory_info().rss)


def handshake_request(path: str, extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def answer(server: UvicornServer, request: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send `request` (maybe empty), read until the server closes: (what came, seconds it took)."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(timeout)
        sock.sendall(request)
        started = time.monotonic()
        received = b""
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                received += chunk
            return received, time.monotonic() - started
    return received, float("inf")  # still open


def test_a_flood_from_a_client_that_never_reads_is_bounded_and_dropped(server: UvicornServer) -> None:
    """uvicorn's default answers every ping (here: every echo) and never stops reading: +230 MiB in
    15 s measured. Here reading stops while the answers are not read, and the client is dropped
    after the drain timeout. (Pings themselves are limited: the next test.)"""
    client = StalledClient(server, "/ws")
    mark = server.log_mark()
    start_rss = peak_rss = rss(server)
    pings = memoryview(frame(0x1, b"p" * 125) * 500)  # echo, which is not rate-limited
    client.sock.setblocking(False)
    offset, dropped_after, started = 0, None, time.monotonic()
    try:
        while dropped_after is None and time.monotonic() - started < DRAIN_TIMEOUT + 5:
            try:
                offset = (offset + client.sock.send(pings[offset:])) % len(pings)
            except BlockingIOError:
                time.sleep(0.005)
                peak_rss = max(peak_rss, rss(server))
            except OSError:  # reset: the server dropped us
                dropped_after = time.monotonic() - started
    finally:
        client.reset()
    growth = (peak_rss - start_rss) / MiB
    print(f"flood: server RSS +{growth:.1f} MiB, dropped after {dropped_after} s")
    assert dropped_after is not None
    assert growth < 16
    assert "dropped: output left unread for 1 s" in server.log_since(mark)


def test_a_client_that_pings_faster_than_the_limit_is_closed_1008(server: UvicornServer) -> None:
    """Parsing back-to-back pings held the event loop for every other client (three flooders
    stalled it for 6 s); past its burst, a client that pings too fast is closed with 1008."""
    client = StalledClient(server, "/ws", rcvbuf=65536)
    try:
        client.sock.sendall(frame(0x9, b"p") * (PING_BURST + 50))
        _, close = client.frames(timeout=5)
    finally:
        client.reset()
    assert close == (1008, TOO_MANY_PINGS)
    with ws_connect(server, "/ws") as ws:  # a ping now and then is answered as ever
        ws.ping().wait(timeout=5)
        ws.send("still here")
        assert ws.recv(timeout=5) == "Message text was: still here"


def test_endless_empty_continuation_frames_close_1009(server: UvicornServer) -> None:
    """Empty continuation frames never add to a message's size, but each was kept."""
    client = StalledClient(server, "/ws", rcvbuf=65536)
    try:
        client.sock.sendall(frame(0x1, b"a", fin=False) + frame(0x0, fin=False) * (MAX_FRAGMENTS + 10))
        _, close = client.frames(timeout=5)
    finally:
        client.reset()
    assert close == (1009, "too many fragments")


def test_fragmented_message_under_the_bound_still_arrives(server: UvicornServer) -> None:
    with ws_connect(server, "/ws") as ws:
        ws.send(["a", *["b"] * 100, "c"])  # one message in 102 frames
        assert ws.recv(timeout=5) == "Message text was: a" + "b" * 100 + "c"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (handshake_request("/ws?" + "a" * 9000), b"414"),
        (handshake_request("/ws", "".join(f"X-H{n}: v\r\n" for n in range(130))), b"431"),
        (handshake_request("/ws", "X-Big: " + "b" * 9000 + "\r\n"), b"431"),  # refused by websockets itself
        (handshake_request("/ws", "".join(f"X-H{n}: {'v' * 1000}\r\n" for n in range(70))), b"431"),
    ],
    ids=["url-over-8k", "130-headers", "9k-header-line", "70k-head"],
)
def test_oversized_upgrade_is_answered_and_closed(server: UvicornServer, request_bytes: bytes, status: bytes) -> None:
    """The answer (414, 431) used to be logged but never written, and the socket stayed open."""
    received, took = answer(server, request_bytes)
    assert received.split(b"\r\n", 1)[0].split(b" ")[1] == status, received[:100]
    assert took < 2


def test_endless_header_line_is_answered_431_without_waiting_for_its_end(server: UvicornServer) -> None:
    """httptools keeps a header line until its end: the head is bounded by the bytes received."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(5)
        sock.sendall(handshake_request("/ws")[:-2] + b"X-Endless: ")
        for _ in range(256):  # at most 1 MiB, until the server answers
            sock.sendall(b"e" * 4096)
            if select.select([sock], [], [], 0.001)[0]:
                break
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received += chunk
    assert received.startswith(b"HTTP/1.1 431 "), received[:100]


@pytest.mark.parametrize("request_bytes", [b"", handshake_request("/ws")[:30]], ids=["nothing", "half-a-head"])
def test_unfinished_handshake_is_closed_after_the_timeout(server: UvicornServer, request_bytes: bytes) -> None:
    received, took = answer(server, request_bytes)
    assert received == b""
    assert HANDSHAKE_TIMEOUT - 0.2 < took < HANDSHAKE_TIMEOUT + 2


def test_invalid_utf8_closes_1007_with_one_log_line(server: UvicornServer) -> None:
    client = StalledClient(server, "/ws", rcvbuf=65536)
    port = client.sock.getsockname()[1]
    mark = server.log_mark()
    try:
        client.sock.sendall(frame(0x1, b"ok \xff\xfe"))
        _, close = client.frames(timeout=5)
    finally:
        client.reset()
    time.sleep(0.2)
    log = server.log_since(mark)
    assert "Traceback" not in log
    assert [line for line in log.splitlines() if "1007" in line or "UTF-8" in line] == [
        f'INFO:     127.0.0.1:{port} - "WebSocket /ws" closed 1007: invalid UTF-8 at position 3'
    ]
    assert close == (1007, "invalid UTF-8 at position 3")


def test_connections_over_the_limit_are_refused_with_503_and_a_log_line() -> None:
    """uvicorn's --limit-concurrency alone lets WebSocket upgrades through."""
    with UvicornServer(args=["--limit-concurrency", "4"]) as server, contextlib.ExitStack() as stack:
        for n in range(3):
            stack.enter_context(ws_connect(server, f"/ws/{n}"))
        mark = server.log_mark()
        with pytest.raises(InvalidStatus) as refused, ws_connect(server, "/ws/99"):
            pass
        assert refused.value.response.status_code == 503
        time.sleep(0.2)
        assert "Refused 1 connection(s): 4 open connections is the limit" in server.log_since(mark)


MESSAGE = "x" * 60_000


@pytest.mark.parametrize("run", range(3))
def test_sigterm_with_non_reading_chat_clients_exits_within_the_graceful_timeout(run: int) -> None:
    """Stalled chat clients' close frames never leave; uvicorn waited the whole graceful timeout for
    them, cancelled tasks and exited after it (5.15-5.24 s of 5 s measured). Runs 0 and 2 let the
    hub cut them off first (1013 waiting behind their buffers), run 1 leaves them mid-send."""
    graceful = 2
    env = {"SEND_QUEUE_BYTES": str(64 * MiB)} if run == 1 else {}
    server = UvicornServer(env=env, args=["--timeout-graceful-shutdown", str(graceful)]).start()
    stalled = [StalledClient(server, f"/ws/{900 + n}") for n in range(3)]
    try:
        with ws_connect(server, "/ws/1") as sender:
            for _ in range(100):  # 6 MB: past the loopback buffers; inside the chat's burst of 200
                sender.send(MESSAGE)
            time.sleep(0.5)
            started = time.monotonic()
            code = server.stop(signal.SIGTERM, timeout=10)
            took = time.monotonic() - started
        log = server.log()
    finally:
        for client in stalled:
            client.reset()
        server.__exit__(None, None, None)
    print(f"SIGTERM run {run}: exited in {took:.2f} s")
    assert code in (0, -signal.SIGTERM)
    assert took < graceful
    assert "timeout graceful shutdown exceeded" not in log
    assert "Traceback" not in log
