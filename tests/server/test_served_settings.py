"""One settings source, over real servers: the protocol classes use the settings of the app they
serve (whatever the environment says), and the server command serves as `make run` did."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from starlette.applications import Starlette
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from harness.servers import CommandServer, UvicornServer
from starlette_ws.app import create_app
from starlette_ws.settings import Settings

HANDSHAKE_TIMEOUT = 0.5


def strict_app() -> Starlette:
    """The factory the first test serves: its settings are given here, not read from the environment."""
    return create_app(Settings(handshake_timeout=HANDSHAKE_TIMEOUT, ws_max_fragments=3))


def idle_for(port: int) -> float:
    """Seconds until the server closes a connection that sends nothing."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        started = time.monotonic()
        assert sock.recv(1) == b""
        return time.monotonic() - started


def test_the_protocols_use_the_served_apps_settings_not_the_environment() -> None:
    env = {"HANDSHAKE_TIMEOUT": "30", "WS_MAX_FRAGMENTS": "4096"}
    with UvicornServer("tests.server.test_served_settings:strict_app", env=env, args=["--factory"]) as server:
        assert HANDSHAKE_TIMEOUT - 0.1 < idle_for(server.port) < HANDSHAKE_TIMEOUT + 1
        with connect(f"{server.ws_url}/ws", open_timeout=5) as websocket:
            websocket.send(["a", "b"])  # three frames (websockets ends with an empty one): as many as allowed
            assert websocket.recv(timeout=5) == "Message text was: ab"
            websocket.send(["a", "b", "c"])
            with pytest.raises(ConnectionClosedError) as closed:
                websocket.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


@pytest.mark.parametrize("workers", [1, 2])
def test_the_command_serves_with_its_protocols_settings_and_metrics(workers: int, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"an earlier run's")
    env = {"HANDSHAKE_TIMEOUT": str(HANDSHAKE_TIMEOUT), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with CommandServer(env=env, workers=workers) as server:
        assert HANDSHAKE_TIMEOUT - 0.1 < idle_for(server.port) < HANDSHAKE_TIMEOUT + 1
        with connect(f"{server.ws_url}/ws", open_timeout=5, compression="deflate") as websocket:
            assert websocket.response is not None
            assert websocket.response.headers.get("Sec-WebSocket-Extensions") is None  # declined
            websocket.send("hi")
            assert websocket.recv(timeout=5) == "Message text was: hi"
        with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as response:
            assert b"starlette_ws_connections_open" in response.read()
        files = sorted(path.name for path in metrics_dir.iterdir())
        assert "counter_1.db" not in files  # emptied at start
        assert len([name for name in files if name.startswith("counter_")]) == workers
        log = server.log()
    assert log.count("Application startup complete.") == workers


def test_the_command_accepts_deflate_when_asked() -> None:
    with (
        CommandServer(args=["--ws-per-message-deflate"]) as server,
        connect(f"{server.ws_url}/ws", open_timeout=5, compression="deflate") as websocket,
    ):
        assert websocket.response is not None
        assert "permessage-deflate" in websocket.response.headers.get("Sec-WebSocket-Extensions", "")


def test_the_command_refuses_settings_that_cannot_work_before_serving() -> None:
    server = CommandServer(env={"ROOMS_TOKEN_SECRET": "s", "ROOMS_TOKEN_PUBLIC_KEY": "/nonexistent.pem"})
    with contextlib.suppress(RuntimeError), server:
        pytest.fail("the server started")
    assert "not both" in server.log()
