"""Room tokens under a real uvicorn: refusals as 403 with why and no token in the log, expiry at
`exp` with a lossless return, and a read-only member."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from harness.servers import UvicornServer
from tests.clients import closed_with, next_json, until, ws_connect

SECRET = "a-server-secret-that-is-long-enough-for-hs256"
pytestmark = pytest.mark.contract("B29")


def token(sub: int, exp: float, rooms: tuple[str, ...] = ("team-*",), read: tuple[str, ...] = ()) -> str:
    claims = {"sub": str(sub), "exp": int(exp), "rooms": list(rooms), "read": list(read)}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def server() -> Iterator[UvicornServer]:
    env = {"ROOMS_TOKEN_SECRET": SECRET, "ROOMS_TOKEN_AUDIENCE": "", "CHAT_RATE_PER_SECOND": "1000"}
    with UvicornServer(env=env, log_level="info") as server:
        yield server


def test_refusals_say_why_and_no_token_reaches_the_log(server: UvicornServer) -> None:
    now = time.time()
    cases = {
        "token_expired": token(7, now - 1),
        "token_signature": token(7, now + 60)[:-4] + "AAAA",
        "token_subject": token(8, now + 60),
        "room_not_permitted": token(7, now + 60, rooms=("other-*",)),
    }
    for reason, bad in cases.items():
        with pytest.raises(InvalidStatus) as refused, ws_connect(server, f"/rooms/team-a/ws/7?token={bad}"):
            pass
        response = refused.value.response
        assert response.status_code == 403
        assert [error["type"] for error in json.loads(response.body)["detail"]] == [reason]
    good = token(7, now + 60)
    with ws_connect(server, f"/rooms/team-a/ws/7?token={good}") as ws:
        until(ws, "join", client_id=7)
    log = server.log()
    assert "token=[redacted]" in log
    for sent in [good, *cases.values()]:
        assert sent.split(".")[2] not in log and sent.split(".")[1] not in log
    assert "Traceback" not in log


def test_a_member_is_closed_at_exp_and_comes_back_with_nothing_lost(server: UvicornServer) -> None:
    room = f"team-{time.monotonic_ns()}"
    exp = int(time.time()) + 2
    said: list[str] = []
    heard: list[dict[str, Any]] = []
    with ws_connect(server, f"/rooms/{room}/ws/2?token={token(2, time.time() + 60)}") as speaker:
        until(speaker, "presence")
        with ws_connect(server, f"/rooms/{room}/ws/1?token={token(1, exp)}") as member:
            until(member, "presence")
            stop = threading.Event()

            def talk() -> None:
                n = 0
                while not stop.is_set():
                    speaker.send(f"line {n}")
                    said.append(f"line {n}")
                    n += 1
                    time.sleep(0.02)

            talker = threading.Thread(target=talk)
            talker.start()
            try:
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        message = next_json(member)
                        if message["type"] == "message":
                            heard.append(message)
                closed_at = time.time()
                assert closed_with(closed.value) == (4001, "Token expired: connect again with a new token")
                assert exp <= closed_at < exp + 1  # within a second of its exp
                time.sleep(0.3)  # lines go on being said while it is away
                last = heard[-1]
                fresh = token(1, time.time() + 60)
                query = f"since={last['offset']}&epoch={last['epoch']}&token={fresh}"
                with ws_connect(server, f"/rooms/{room}/ws/1?{query}") as again:
                    time.sleep(0.3)
                    stop.set()
                    talker.join()
                    while len(heard) < len(said):
                        message = next_json(again)
                        assert message["type"] != "gap"
                        if message["type"] == "message":
                            heard.append(message)
            finally:
                stop.set()
                talker.join()
    assert [message["text"] for message in heard] == said  # every line once, in order
    assert [message["offset"] for message in heard] == list(range(1, len(said) + 1))


def test_a_read_only_member_hears_and_is_closed_with_1008_when_it_speaks(server: UvicornServer) -> None:
    room = f"news-{time.monotonic_ns()}"
    reader = token(3, time.time() + 60, rooms=(), read=("news-*",))
    writer = token(4, time.time() + 60, rooms=("news-*",))
    with ws_connect(server, f"/rooms/{room}/ws/4?token={writer}") as speaker:
        until(speaker, "presence")
        with ws_connect(server, f"/rooms/{room}/ws/3?token={reader}") as listener:
            until(speaker, "join", client_id=3)
            speaker.send("headline")
            assert until(listener, "message")["text"] == "headline"
            listener.send("reply")
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    next_json(listener)
            assert closed_with(closed.value) == (1008, f"Read-only: this token may not send in room {room!r}")
        seen = [next_json(speaker) for _ in range(2)]  # its own line, then 3's leave: nothing 3 said
        assert [(m["type"], m.get("text")) for m in seen] == [("message", "headline"), ("leave", None)]
