"""Contract part A (and B1, the rejection bodies) over a real uvicorn server and real sockets."""

from __future__ import annotations

import contextlib
import re
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed

from harness.servers import UvicornServer, errors_in
from tests.clients import play, reset, ws_connect
from tests.scenarios import ALL, Case


@pytest.mark.parametrize("case", ALL, ids=lambda case: case.id)
def test_scenario(server: UvicornServer, case: Case) -> None:
    outcome = play(server, case)
    if not case.refused:
        assert outcome.replies == case.replies
        return
    assert outcome.status == 403
    if case.refused_loc is not None:  # our refusals say why; an unknown path gets the bare 403
        assert outcome.detail()[0]["loc"] == list(case.refused_loc)


def test_normal_close_and_binary_frames_log_no_error(server: UvicornServer) -> None:
    mark = server.log_mark()
    for path in ("/ws", "/items/foo/ws?token=t", "/ws/9"):
        with ws_connect(server, path) as ws:
            ws.send("one")
            ws.recv(timeout=5)
        with ws_connect(server, path) as ws:
            ws.send(b"\x00binary")
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=5)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1003, "Text frames only")
    log = server.log_since(mark)
    assert "[accepted]" in log
    assert not errors_in(log), log


def test_chat_between_clients_and_departure(server: UvicornServer) -> None:
    with ws_connect(server, "/ws/101") as one, ws_connect(server, "/ws/102") as two:
        one.send("hello")
        assert [one.recv(timeout=5), one.recv(timeout=5)] == ["You wrote: hello", "Client #101 says: hello"]
        assert two.recv(timeout=5) == "Client #101 says: hello"
        two.close()
        assert one.recv(timeout=5) == "Client #102 left the chat"


def test_dead_client_does_not_stop_a_broadcast(server: UvicornServer) -> None:
    """A client whose TCP connection is reset mid-chat is dropped; the others still get everything."""
    with contextlib.ExitStack() as stack:
        live = [stack.enter_context(ws_connect(server, f"/ws/{n}")) for n in (201, 202)]
        with ws_connect(server, "/ws/203") as dead:
            reset(dead)
        for i in range(20):
            live[0].send(f"m{i}")
        received = [live[1].recv(timeout=5) for _ in range(21)]
        says = [line for line in received if "says" in line]
        assert says == [f"Client #201 says: m{i}" for i in range(20)]
        assert "Client #203 left the chat" in received


def page(server: UvicornServer, path: str) -> str:
    with urllib.request.urlopen(server.http_url + path, timeout=5) as response:
        assert response.status == 200
        return str(response.read().decode())


@pytest.mark.parametrize(
    ("path", "ws_path"),
    [("/echo", "/ws"), ("/items", "/items/ITEM_ID/ws"), ("/chat", "/ws/CLIENT_ID"), ("/", None)],
)
def test_pages_build_the_websocket_url_from_the_request(server: UvicornServer, path: str, ws_path: str | None) -> None:
    html = page(server, path)
    urls = re.findall(r'data-ws-url="([^"]*)"', html)
    assert urls == ([f"ws://127.0.0.1:{server.port}{ws_path}"] if ws_path else [])
    assert "localhost:8000" not in html
