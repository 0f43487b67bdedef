"""Contract part B rows (docs/behaviour.md) on starlette-ws alone, each over a real uvicorn server."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from websockets.exceptions import InvalidStatus

from harness.servers import UvicornServer
from tests.clients import read_to_close, ws_connect

LIMIT = 64 * 1024


@pytest.fixture(scope="module", params=["websockets-sansio", "wsproto"])
def limited_server(request: pytest.FixtureRequest) -> Iterator[UvicornServer]:
    """As `make run` serves it: uvicorn's own limit set to the app's."""
    with UvicornServer(args=["--ws", request.param, "--ws-max-size", str(LIMIT)]) as server:
        yield server


def test_message_at_the_limit_passes_and_over_it_closes_1009(limited_server: UvicornServer) -> None:
    with ws_connect(limited_server, "/ws") as ws:
        ws.send("é" * (LIMIT // 2))  # exactly the limit in UTF-8 bytes
        assert ws.recv(timeout=5) == "Message text was: " + "é" * (LIMIT // 2)
        ws.send("x" * (LIMIT + 1))
        _, close = read_to_close(ws)
    assert close is not None and close[0] == 1009


def test_app_enforces_its_own_limit_under_uvicorns_default() -> None:
    with UvicornServer(env={"MAX_MESSAGE_BYTES": "1000"}) as server, ws_connect(server, "/ws/77") as ws:
        ws.send("y" * 1000)
        assert ws.recv(timeout=5) == "You wrote: " + "y" * 1000
        ws.send("y" * 1001)
        _, close = read_to_close(ws)
    assert close == (1009, "Message over 1000 bytes")


def refusal(server: UvicornServer, path: str, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    with pytest.raises(InvalidStatus) as refused, ws_connect(server, path, headers):
        pass
    return refused.value.response.status_code, json.loads(refused.value.response.body or b"{}")


def test_origin_check_by_default_allows_only_the_own_host(server: UvicornServer) -> None:
    own = {"Origin": f"http://127.0.0.1:{server.port}"}
    with ws_connect(server, "/items/foo/ws", {**own, "cookie": "session=abc"}) as ws:
        ws.send("m")
        assert ws.recv(timeout=5) == "Session cookie or query token value is: abc"
    with ws_connect(server, "/ws") as ws:  # no Origin: not a browser
        ws.send("m")
        assert ws.recv(timeout=5) == "Message text was: m"
    status, body = refusal(server, "/items/foo/ws", {"Origin": "https://evil.example", "cookie": "session=abc"})
    assert status == 403
    assert body["detail"] == [
        {
            "type": "origin",
            "loc": ["header", "origin"],
            "msg": "Origin not allowed: https://evil.example",
            "input": "https://evil.example",
        }
    ]


def test_origin_allow_list() -> None:
    with UvicornServer(env={"ALLOWED_ORIGINS": "https://good.example"}) as server:
        with ws_connect(server, "/ws", {"Origin": "https://good.example"}) as ws:
            ws.send("m")
            assert ws.recv(timeout=5) == "Message text was: m"
        status, _ = refusal(server, "/ws", {"Origin": f"http://127.0.0.1:{server.port}"})
        assert status == 403


def test_token_never_reaches_the_log(server: UvicornServer) -> None:
    mark = server.log_mark()
    with ws_connect(server, "/items/foo/ws?q=1&token=s3cr3t-one") as ws:
        ws.send("m")
        ws.recv(timeout=5)
    with pytest.raises(InvalidStatus), ws_connect(server, "/items/foo/ws?q=x&%74oken=s3cr3t-two"):
        pass
    log = server.log_since(mark)
    assert "s3cr3t" not in log
    assert log.count("token=[redacted]") + log.count("%74oken=[redacted]") == 2, log
    assert "q=1" in log  # everything else is still logged


def test_chat_flood_is_closed_with_1008_and_echo_is_not_limited(server: UvicornServer) -> None:
    with ws_connect(server, "/ws/555") as chat, ws_connect(server, "/ws") as echo:
        for i in range(400):
            echo.send(str(i))
        assert [echo.recv(timeout=5) for _ in range(400)][-1] == "Message text was: 399"
        for i in range(400):
            chat.send(str(i))
        messages, close = read_to_close(chat)
    assert close == (1008, "Rate limit: 50 messages/s, bursts of 200")
    sent_back = [m for m in messages if m.startswith("You wrote: ")]
    assert 200 <= len(sent_back) < 400  # the burst passes; the flood does not


def test_error_in_a_handler_closes_1011_logs_once_and_others_carry_on() -> None:
    with UvicornServer(app="tests.apps:faulty_app") as server:
        with ws_connect(server, "/faulty") as bystander:
            with ws_connect(server, "/faulty") as ws:
                ws.send("boom")
                _, close = read_to_close(ws)
            assert close == (1011, "Internal error")
            bystander.send("still here")
            assert bystander.recv(timeout=5) == "still here"
        time.sleep(0.2)
        log = server.log()
    assert log.count("Traceback") == 1
    assert log.count("RuntimeError: boom inside on_receive") == 1
    assert "Exception in ASGI application" not in log


def test_graceful_shutdown_tells_every_client_and_nobody_leaves_twice() -> None:
    server = UvicornServer(args=["--timeout-graceful-shutdown", "3"]).start()
    outcomes: dict[str, tuple[list[str], tuple[int, str] | None]] = {}
    with contextlib.ExitStack() as stack:
        sockets = {
            "echo": stack.enter_context(ws_connect(server, "/ws")),
            "items": stack.enter_context(ws_connect(server, "/items/i/ws?token=t")),
            **{f"chat{n}": stack.enter_context(ws_connect(server, f"/ws/{n}")) for n in range(1, 4)},
        }
        assert server.health()["chat_connections"] == 3

        def read(name: str) -> None:
            outcomes[name] = read_to_close(sockets[name], timeout=10)

        readers = [threading.Thread(target=read, args=(name,)) for name in sockets]
        for reader in readers:
            reader.start()
        started = time.monotonic()
        # uvicorn re-raises the signal it caught once it has shut down cleanly
        assert server.stop(signal.SIGTERM, timeout=10) in (0, -signal.SIGTERM)
        stopped = time.monotonic() - started
        for reader in readers:
            reader.join(10)
    assert stopped < 3 + 2
    assert {name: close and close[0] for name, (_, close) in outcomes.items()} == dict.fromkeys(sockets, 1012)
    for messages, _ in outcomes.values():
        departures = [m for m in messages if m.endswith("left the chat")]
        assert len(departures) == len(set(departures))
    log = server.log()
    assert "Finished server process" in log
    assert "Traceback" not in log
