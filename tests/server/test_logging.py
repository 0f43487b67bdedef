"""What the server logs, over real uvicorn servers: under uvicorn's own default logging config and
under the one `make run` passes (`--log-config`), with both of uvicorn's WebSocket implementations."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from websockets.exceptions import InvalidStatus

from harness.servers import ROOT, UvicornServer
from harness.services import RedisServer
from tests.clients import log_has, read_to_close, ws_connect

# time, level, logger: `2026-11-23 11:28:25,142 INFO     uvicorn.error: ...`
READABLE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: \S")
# Held the event loop for seconds under the old redaction regex. A WebSocket upgrade gets 8 KB: over
# that, websockets-sansio answers 414 (its request-line limit) without logging the URL.
HOSTILE = {"/x": "?=" + "?" * 60_000, "/ws": "?=" + "?" * 8_000}


def make_run_log_config() -> str:
    """The `--log-config` that `make run` passes to uvicorn."""
    commands = subprocess.run(["make", "-s", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = re.search(r"--log-config\s+(\S+)", commands)
    assert found, f"make run passes no --log-config:\n{commands}"
    return found[1]


CONFIGS = ["uvicorn-default", "make-run"]


def config_args(config: str) -> list[str]:
    return [] if config == "uvicorn-default" else ["--log-config", make_run_log_config()]


@pytest.fixture(
    scope="module",
    params=[(ws, config) for config in CONFIGS for ws in ("websockets-sansio", "wsproto")],
    ids=lambda param: "-".join(param),
)
def logged_server(request: pytest.FixtureRequest) -> Iterator[UvicornServer]:
    ws, config = request.param
    with UvicornServer(args=["--ws", ws, *config_args(config)]) as server:
        yield server


def request(port: int, target: str, upgrade: bool = False, timeout: float = 5) -> bytes:
    """A raw HTTP/1.1 GET (the target goes out byte for byte): the response's status line."""
    headers = f"Host: 127.0.0.1:{port}\r\n"
    if upgrade:
        key = base64.b64encode(os.urandom(16)).decode()
        headers += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        headers += f"Sec-WebSocket-Key: {key}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\n{headers}\r\n".encode())
        response = b""
        while b"\r\n" not in response:
            chunk = sock.recv(4096)
            if not chunk:
                break
            response += chunk
    return response.split(b"\r\n", 1)[0]


def test_token_values_are_redacted_whole_and_every_request_keeps_its_line(logged_server: UvicornServer) -> None:
    server, mark = logged_server, logged_server.log_mark()
    assert request(server.port, '/health?token=ab"SECRET1&q=1') == b"HTTP/1.1 200 OK"
    assert request(server.port, "/health?%74oken=ab'SECRET2") == b"HTTP/1.1 200 OK"
    assert request(server.port, '/items/foo/ws?token=ab"SECRET3', upgrade=True) == b"HTTP/1.1 101 Switching Protocols"
    assert b" 403 " in request(server.port, '/items/foo/ws?q=x&token=ab"SECRET4', upgrade=True)
    assert log_has(server, mark, '"WebSocket /items/foo/ws?q=x&token=[redacted]" 403')
    log = server.log_since(mark)
    assert "SECRET" not in log
    assert "Logging error" not in log
    assert '- "GET /health?token=[redacted]&q=1 HTTP/1.1" 200' in log
    assert '- "GET /health?%74oken=[redacted] HTTP/1.1" 200' in log
    assert '- "WebSocket /items/foo/ws?token=[redacted]" [accepted]' in log


def test_a_handshake_logs_one_line_and_no_error(logged_server: UvicornServer) -> None:
    server, mark = logged_server, logged_server.log_mark()
    with pytest.raises(InvalidStatus) as refused, ws_connect(server, "/items/foo/ws?q=x&token=t"):
        pass
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body or b"")["detail"][0]["loc"] == ["query", "q"]
    assert log_has(server, mark, '"WebSocket /items/foo/ws?q=x&token=[redacted]" 403')
    time.sleep(0.2)  # uvicorn logs its complaint once the app has returned
    refusal = server.log_since(mark).splitlines()
    mark = server.log_mark()
    with ws_connect(server, "/ws") as ws:
        ws.send("m")
        assert ws.recv(timeout=5) == "Message text was: m"
        assert log_has(server, mark, '"WebSocket /ws" [accepted]')
        time.sleep(0.2)
        accepted = server.log_since(mark).splitlines()
    for lines in (refusal, accepted):
        assert len(lines) == 1 and "ERROR" not in lines[0], lines


def test_a_hostile_url_is_logged_without_holding_the_server(logged_server: UvicornServer) -> None:
    server = logged_server
    took: dict[str, float] = {}

    def hostile(path: str, upgrade: bool) -> None:
        started = time.monotonic()
        request(server.port, path + HOSTILE[path], upgrade=upgrade, timeout=30)
        took[path] = time.monotonic() - started

    threads = [threading.Thread(target=hostile, args=args) for args in (("/x", False), ("/ws", True))]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    started = time.monotonic()
    server.health()  # answers 200, or raises
    health = time.monotonic() - started
    for thread in threads:
        thread.join(30)
    print(f"hostile URLs (HTTP 60 KB, WebSocket 8 KB): /health {health * 1000:.1f} ms, requests {took}")
    assert health < 1.0
    assert took.keys() == {"/x", "/ws"} and max(took.values()) < 1.0


def readable(line: str) -> bool:
    return READABLE.match(line) is not None


@pytest.mark.parametrize("config", CONFIGS)
def test_our_own_lines_carry_time_level_and_logger(config: str) -> None:
    with UvicornServer(app="tests.apps:faulty_app", args=config_args(config)) as server:
        with ws_connect(server, "/faulty") as ws:
            ws.send("boom")
            _, close = read_to_close(ws)
        assert close == (1011, "Internal error")
        assert log_has(server, 0, "RuntimeError: boom inside on_receive")
        lines = server.log().splitlines()
    ours = [line for line in lines if "Error in FaultyEndpoint for /faulty" in line]
    assert len(ours) == 1 and readable(ours[0]), lines
    assert " ERROR    starlette_ws: " in ours[0]
    if config == "make-run":  # every line an operator reads, uvicorn's too (a traceback continues its line)
        starts = [line for line in lines if not line.startswith((" ", "Traceback", "RuntimeError"))]
        assert all(readable(line) for line in starts), starts


def test_a_broker_outage_and_its_end_are_logged_under_make_runs_config(redis_server: RedisServer) -> None:
    redis_server.start()  # running again if an earlier outage test left it stopped
    env = {"BROADCAST_URL": redis_server.url}
    with UvicornServer(env=env, args=config_args("make-run")) as server, ws_connect(server, "/ws/1") as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "You wrote: hello"
        redis_server.stop()
        try:
            assert log_has(server, 0, "Lost Redis", timeout=10), server.log()
        finally:
            redis_server.start()
        assert log_has(server, 0, "is back after", timeout=10), server.log()
        lines = server.log().splitlines()
    lost = [line for line in lines if "Lost Redis" in line]
    back = [line for line in lines if "is back after" in line]
    assert len(lost) == 1 and readable(lost[0]) and " WARNING  starlette_ws.backends.redis: " in lost[0], lines
    assert len(back) == 1 and readable(back[0]) and " INFO     starlette_ws.backends.redis: " in back[0], lines
