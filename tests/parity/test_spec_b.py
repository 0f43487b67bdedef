"""Contract part B (docs/behaviour.md), rows B1-B14: what the FastAPI reference does, and what
starlette-ws does instead.

Every test plays the same client against both servers and asserts both sides, so the comparison
report can cite it; it names the row it checks with `@pytest.mark.contract("B<n>")`. A test
that would leave the reference's chat broken for later tests runs against a private reference
server (`start_server`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import time
import urllib.request
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from harness.rawws import StalledClient
from harness.servers import UvicornServer, errors_in
from tests.clients import (
    Producer,
    Reader,
    drain,
    headers_of,
    log_has,
    read_replies,
    ws_connect,
)
from tests.parity.conftest import OURS, REFERENCE, StartServer
from tests.scenarios import ALL, Case

_ids = itertools.count(7000)
REFUSED = [case for case in ALL if case.refused and case.refused_loc is not None]
GRACEFUL = ["--timeout-graceful-shutdown", "3"]  # a stuck reference must not hold teardown


def refusal(server: UvicornServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as refused, ws_connect(server, path, headers):
        pass
    return refused.value.response.status_code, bytes(refused.value.response.body or b"")


@pytest.mark.contract("B1")
@pytest.mark.parametrize("case", REFUSED, ids=lambda case: case.id)
def test_rejection_body(reference: UvicornServer, ours: UvicornServer, case: Case) -> None:
    """Reference 403 with an empty body; ours 403 with a JSON error list."""
    assert refusal(reference, case.path, headers_of(case)) == (403, b"")
    status, body = refusal(ours, case.path, headers_of(case))
    assert status == 403
    detail = json.loads(body)["detail"]
    assert case.refused_loc is not None and detail[0]["loc"] == list(case.refused_loc)
    assert all(set(error) == {"type", "loc", "msg", "input"} for error in detail)


@pytest.mark.contract("B1")
def test_rejection_under_testclient() -> None:
    """TestClient side: the reference closes 1008 and says nothing useful for missing credentials; ours
    says why: the same 403 denial with the error list as over uvicorn, since TestClient offers the
    denial extension."""
    from uvicorn.importer import import_from_string

    from starlette_ws.app import create_app

    reference_app = import_from_string(REFERENCE)  # by name, as the servers load it

    def outcome(app: object, path: str) -> tuple[str, int, str]:
        with TestClient(app) as client:  # type: ignore[arg-type]
            try:
                with client.websocket_connect(path):
                    return ("accepted", 0, "")
            except WebSocketDenialResponse as denial:
                return ("denied", denial.status_code, denial.content.decode())
            except WebSocketDisconnect as closed:
                return ("closed", closed.code, str(closed.reason or ""))

    assert outcome(reference_app, "/items/foo/ws") == ("closed", 1008, "")
    kind, code, why = outcome(create_app(), "/items/foo/ws")
    assert (kind, code) == ("denied", 403)
    assert json.loads(why)["detail"][0]["loc"] == ["query", "token"]


@pytest.mark.contract("B3")
@pytest.mark.parametrize("path", ["/ws", "/items/foo/ws?token=t", "/ws/{id}"])
def test_binary_frame(start_server: StartServer, ours: UvicornServer, path: str) -> None:
    """The reference logs a server error and drops the TCP connection (the client sees 1006, no close
    frame); ours closes 1003 and logs nothing."""
    reference = start_server(REFERENCE, args=GRACEFUL)  # its chat keeps the dropped socket for good
    path = path.format(id=next(_ids))
    outcomes = {}
    for name, server in (("reference", reference), ("ours", ours)):
        mark = server.log_mark()
        with ws_connect(server, path) as ws:
            ws.send(b"\x00binary")
            messages, close, ended = drain(ws, quiet=5)
        outcomes[name] = (messages, close, ended)
        if name == "reference":
            assert log_has(server, mark, "KeyError: 'text'")
            assert "Exception in ASGI application" in server.log_since(mark)
        else:
            time.sleep(0.2)
            assert errors_in(server.log_since(mark)) == []
    assert outcomes["reference"] == ([], None, True)
    assert outcomes["ours"] == ([], (1003, "Text frames only"), True)


@pytest.mark.contract("B3")
def test_binary_frame_leaves_a_zombie_in_the_reference_chat(start_server: StartServer, ours: UvicornServer) -> None:
    """Consequence in the chat: the reference never removes the dropped client from its list, so the
    next broadcast fails on it and drops the sender too (the client after the zombie never hears the
    message); ours is unaffected."""
    reference = start_server(REFERENCE, args=GRACEFUL)
    zombie, sender, listener = next(_ids), next(_ids), next(_ids)
    seen = {}
    for name, server in (("reference", reference), ("ours", ours)):
        with ws_connect(server, f"/ws/{zombie}") as ws:
            ws.send(b"\x00binary")
            drain(ws, quiet=5)
        with ws_connect(server, f"/ws/{sender}") as one, ws_connect(server, f"/ws/{listener}") as two:
            one.send("anyone there?")
            seen[name] = (drain(one, quiet=0.5), drain(two, quiet=0.5))
    assert seen["reference"] == ((["You wrote: anyone there?"], None, True), ([], None, False))
    said = f"Client #{sender} says: anyone there?"
    assert seen["ours"] == ((["You wrote: anyone there?", said], None, False), ([said], None, False))


@pytest.mark.contract("B4")
def test_message_over_the_size_limit(reference: UvicornServer, ours: UvicornServer) -> None:
    """The reference takes up to uvicorn's 16 MiB and closes 1009 above it; ours closes 1009 above 64
    KiB (counted in UTF-8 bytes, not characters)."""
    limit, uvicorn_limit = 64 * 1024, 16 * 1024 * 1024
    at_limit = "é" * (limit // 2)  # 65,536 bytes in 32,768 characters
    over_limit = at_limit + "x"

    def replies(server: UvicornServer, texts: list[str]) -> list[object]:
        seen: list[object] = []
        with ws_connect(server, "/ws", max_size=None) as ws:
            for text in texts:
                try:
                    ws.send(text)
                    seen.append(len(str(ws.recv(timeout=30))) - len("Message text was: "))
                except ConnectionClosed as exc:
                    seen.append(None if exc.rcvd is None else exc.rcvd.code)
                    break
        return seen

    assert replies(reference, [at_limit, over_limit, "x" * uvicorn_limit, "x" * (uvicorn_limit + 1)]) == [
        len(at_limit),
        len(over_limit),
        uvicorn_limit,
        1009,
    ]
    assert replies(ours, [at_limit, over_limit]) == [len(at_limit), 1009]
    with ws_connect(ours, "/ws") as ws:
        ws.send(over_limit)
        assert drain(ws, quiet=5)[1:] == ((1009, f"Message over {limit} bytes"), True)


@pytest.mark.contract("B5")
@pytest.mark.parametrize("path", ["/ws", "/items/foo/ws?token=t", "/ws/{id}"])
def test_normal_client_close(reference: UvicornServer, ours: UvicornServer, path: str) -> None:
    """The reference logs "Exception in ASGI application" (an uncaught WebSocketDisconnect 1000) on echo
    and items, not on the chat, which catches it; ours logs no error anywhere."""
    path = path.format(id=next(_ids))
    logs = {}
    for name, server in (("reference", reference), ("ours", ours)):
        mark = server.log_mark()
        with ws_connect(server, path) as ws:
            ws.send("bye")
            read_replies(ws, 1)
        if name == "reference" and not path.startswith("/ws/"):
            log_has(server, mark, "WebSocketDisconnect: (1000")
        else:
            time.sleep(0.3)
        logs[name] = server.log_since(mark)
    if path.startswith("/ws/"):
        assert errors_in(logs["reference"]) == []
    else:
        assert "Exception in ASGI application" in logs["reference"]
        assert "WebSocketDisconnect: (1000, '')" in logs["reference"]
    assert "[accepted]" in logs["ours"]
    assert errors_in(logs["ours"]) == []


COUNT = 120  # messages of 60 KB: 7 MB, beyond what loopback buffers hold


def stall_the_chat(server: UvicornServer, kill: bool) -> tuple[Reader, Reader, StalledClient, int, bool]:
    """A client that stops reading joins first, two live clients after it; one of them talks.

    The talker sends `COUNT` messages from a thread, paced within the flood limit's burst. Once the
    listener has heard nothing for a second (it has everything, or the chat is stuck), the stalled
    client is killed with a RST (`kill`) or left as it is. Returns the talker's and the listener's
    readers, the stalled client, the talker's id and whether the talker is still connected.
    """
    stalled_id, talker_id, listener_id = next(_ids), next(_ids), next(_ids)
    stalled = StalledClient(server, f"/ws/{stalled_id}")
    with ws_connect(server, f"/ws/{talker_id}") as talker, ws_connect(server, f"/ws/{listener_id}") as listener:
        talking, listening = Reader(talker), Reader(listener)
        body = "x" * 60_000
        Producer(talker, [f"{i} {body}" for i in range(COUNT)], pace=0.005)
        listening.settle(quiet=1.0)
        if kill:
            stalled.reset()
            listening.settle(quiet=0.5)
            talking.settle(quiet=0.5)
        talker_open = not talking.ended.is_set()
    return talking, listening, stalled, talker_id, talker_open


def says(lines: list[str], sender: int) -> int:
    return sum(line.startswith(f"Client #{sender} says:") for line in lines)


@pytest.mark.contract("B6")
def test_client_dies_during_a_broadcast(start_server: StartServer, ours: UvicornServer) -> None:
    """The reference's loop is awaiting the dying client's send; the error aborts that broadcast for
    everyone after it in the list, and the *sender* is treated as the one who left. Ours drops the dead
    client; everyone else gets every message and the sender stays."""
    reference = start_server(REFERENCE, args=GRACEFUL)
    _, listening, _, talker, talker_open = stall_the_chat(reference, kill=True)
    assert says(listening.messages, talker) < COUNT  # the rest of the broadcast never came
    assert f"Client #{talker} left the chat" in listening.messages  # the sender was dropped
    assert not talker_open

    _, listening, _, talker, talker_open = stall_the_chat(ours, kill=True)
    assert says(listening.messages, talker) == COUNT
    assert f"Client #{talker} left the chat" not in listening.messages
    assert talker_open


@pytest.mark.contract("B7")
def test_one_slow_client(start_server: StartServer, ours: UvicornServer) -> None:
    """The reference's broadcast waits on the stalled socket and the live clients stop hearing anything;
    ours closes the slow client with 1013 and the live clients get every message."""
    reference = start_server(REFERENCE, args=GRACEFUL)
    _, listening, stalled, talker, _ = stall_the_chat(reference, kill=False)
    stalled.reset()  # unblock the reference before its teardown
    assert says(listening.messages, talker) < COUNT

    talking, listening, stalled, talker, talker_open = stall_the_chat(ours, kill=False)
    try:
        assert says(listening.messages, talker) == COUNT
        assert says(talking.messages, talker) == COUNT
        assert talker_open
        _, close = stalled.frames(timeout=10)
        assert close is not None and close[0] == 1013
    finally:
        stalled.reset()


@pytest.mark.contract("B8")
def test_more_than_one_process(start_server: StartServer) -> None:
    """Two reference processes do not see each other's chat; two of ours on one Redis do."""
    from tests.services import require, start_redis

    require("redis-server")
    redis = start_redis()
    try:
        heard = {}
        for name, app, env in (
            ("reference", REFERENCE, {}),
            ("ours", OURS, {"BROADCAST_URL": redis.url}),
        ):
            first, second = start_server(app, env=env), start_server(app, env=env)
            speaker, listener = next(_ids), next(_ids)
            with ws_connect(second, f"/ws/{listener}") as other, ws_connect(first, f"/ws/{speaker}") as ws:
                ws.send("across processes")
                read_replies(ws, 2)
                heard[name] = drain(other, quiet=1.0)[0]
        assert heard["reference"] == []
        assert heard["ours"] == [f"Client #{speaker} says: across processes"]
    finally:
        redis.close()


@pytest.mark.contract("B9")
def test_chat_flood_limit(reference: UvicornServer, ours: UvicornServer) -> None:
    """The reference fans out every message; ours closes the flooder with 1008 after its burst of 200
    (at far more than 50 messages/s), every message it let through still reaches the others, and echo is
    not limited."""
    flood = 260
    results = {}
    for name, server in (("reference", reference), ("ours", ours)):
        flooder, observer = next(_ids), next(_ids)
        with ws_connect(server, f"/ws/{observer}") as watch, ws_connect(server, f"/ws/{flooder}") as ws:
            listening = Reader(watch)
            started = time.monotonic()
            for i in range(flood):
                ws.send(f"f{i}")
            rate = flood / (time.monotonic() - started)
            mine, close, _ = drain(ws, quiet=1.0)
            listening.settle(quiet=0.5)
            results[name] = (mine, close, says(listening.messages, flooder), rate)
    mine, close, heard, rate = results["reference"]
    assert (sum(line.startswith("You wrote") for line in mine), close, heard) == (flood, None, flood)
    mine, close, heard, rate = results["ours"]
    assert rate > 50
    assert close is not None and close[0] == 1008 and "Rate limit" in close[1]
    let_through = sum(line.startswith("You wrote") for line in mine)
    assert 200 <= let_through < flood
    assert heard == let_through
    with ws_connect(ours, "/ws") as ws:
        for i in range(flood):
            ws.send(f"e{i}")
        assert len(read_replies(ws, flood)[0]) == flood


@pytest.mark.contract("B10")
def test_cookie_auth_from_a_foreign_page(reference: UvicornServer, ours: UvicornServer) -> None:
    """The reference accepts a foreign Origin carrying the victim's cookie (cross-site WebSocket
    hijacking); ours refuses it with HTTP 403 and still accepts its own page's Origin."""
    foreign = {"cookie": "session=victim", "origin": "http://evil.example"}
    with ws_connect(reference, "/items/foo/ws", foreign) as ws:
        ws.send("steal")
        assert read_replies(ws, 1)[0] == ["Session cookie or query token value is: victim"]
    status, body = refusal(ours, "/items/foo/ws", foreign)
    assert status == 403
    assert json.loads(body)["detail"][0]["loc"] == ["header", "origin"]
    own = {"cookie": "session=victim", "origin": ours.http_url}
    with ws_connect(ours, "/items/foo/ws", own) as ws:
        ws.send("mine")
        assert read_replies(ws, 1)[0] == ["Session cookie or query token value is: victim"]


@pytest.mark.contract("B11")
def test_token_in_the_query_string(reference: UvicornServer, ours: UvicornServer) -> None:
    """The reference's access log prints the token; ours redacts it."""
    secret = f"s3cr3t-{next(_ids)}"
    logs = {}
    for name, server in (("reference", reference), ("ours", ours)):
        mark = server.log_mark()
        with ws_connect(server, f"/items/foo/ws?q=1&token={secret}") as ws:
            ws.send("m")
            read_replies(ws, 3)
        assert log_has(server, mark, "/items/foo/ws")
        logs[name] = server.log_since(mark)
    assert f"token={secret}" in logs["reference"]
    assert secret not in logs["ours"]
    assert "token=[redacted]" in logs["ours"]


@pytest.mark.contract("B12")
def test_server_shutdown(start_server: StartServer) -> None:
    """Both close open sockets with 1012 on SIGTERM and exit; the reference logs "Exception in ASGI
    application" for its echo and items sockets, ours is told (1001 or 1012), closes within the graceful
    timeout and logs no error."""
    results = {}
    for name, app in (("reference", REFERENCE), ("ours", OURS)):
        server = start_server(app, args=GRACEFUL)
        with contextlib.ExitStack() as stack:
            clients = [
                stack.enter_context(ws_connect(server, path))
                for path in ("/ws", "/items/foo/ws?token=t", f"/ws/{next(_ids)}")
            ]
            for ws in clients:
                ws.send("before")
            time.sleep(0.2)
            mark = server.log_mark()
            started = time.monotonic()
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            closes = [drain(ws, quiet=10)[1] for ws in clients]
            server.process.wait(timeout=10)
            results[name] = (closes, time.monotonic() - started, server.log_since(mark))
    closes, elapsed, log = results["reference"]
    assert closes == [(1012, "")] * 3
    assert "Exception in ASGI application" in log
    closes, elapsed, log = results["ours"]
    assert all(close is not None and close[0] in (1001, 1012) for close in closes)
    assert elapsed < 3
    assert errors_in(log) == []


def get(server: UvicornServer, path: str) -> str:
    with urllib.request.urlopen(server.http_url + path, timeout=5) as response:
        return str(response.read().decode())


@pytest.mark.contract("B13")
@pytest.mark.parametrize("page", ["/echo", "/items", "/chat"])
def test_page_websocket_url(reference: UvicornServer, ours: UvicornServer, page: str) -> None:
    """The reference page hard-codes ws://localhost:8000 (dead when served from anywhere else); ours
    builds the URL from the request it was served for."""
    assert "ws://localhost:8000" in get(reference, page)
    html = get(ours, page)
    assert "localhost:8000" not in html
    assert f'data-ws-url="ws://127.0.0.1:{ours.port}/' in html


@pytest.mark.contract("B14")
@pytest.mark.parametrize("page", ["/echo", "/items", "/chat"])
def test_page_after_a_dropped_connection(reference: UvicornServer, ours: UvicornServer, page: str) -> None:
    """From the served page (the browser suite runs it): the reference page has no close handler at all;
    ours reconnects with backoff and says so."""
    theirs = get(reference, page)
    assert "onclose" not in theirs and 'addEventListener("close"' not in theirs
    html = get(ours, page)
    assert "Reconnecting" in html and "backoff" in html


@pytest.mark.contract("B2")
@pytest.mark.parametrize(("text", "reference_reads"), [("0-5", -5), ("0__1", 1), ("+0-9", -9)])
def test_sign_or_double_underscore_after_leading_zeros(
    reference: UvicornServer, ours: UvicornServer, text: str, reference_reads: int
) -> None:
    """Found by differential fuzzing; pydantic reads `0-5` as -5 and `0__1` as 1, we refuse both as not
    an integer."""
    path = f"/items/foo/ws?token=t&q={quote(text)}"
    with ws_connect(reference, path) as ws:
        ws.send("m")
        assert read_replies(ws, 3)[0][1] == f"Query parameter q is: {reference_reads}"
    status, body = refusal(ours, path)
    assert status == 403
    assert json.loads(body)["detail"][0]["type"] == "int_parsing"
