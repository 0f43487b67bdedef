"""Rooms under a real uvicorn (memory://): numbering, presence, recovery after a drop, and the
seam between replay and live while someone keeps talking."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from harness.servers import UvicornServer
from tests.clients import Producer, next_json, until, ws_connect


@pytest.fixture(scope="module")
def rooms_server() -> Iterator[UvicornServer]:
    with UvicornServer(env={"ROOM_HISTORY": "1000", "CHAT_RATE_PER_SECOND": "1000"}) as server:
        yield server


def presence(server: UvicornServer, room: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.http_url}/rooms/{room}/presence", timeout=5) as response:
        value: dict[str, Any] = json.load(response)
        return value


def test_members_offsets_and_presence_over_uvicorn(rooms_server: UvicornServer) -> None:
    with ws_connect(rooms_server, "/rooms/u1/ws/1") as one:
        assert next_json(one) == {"type": "presence", "room": "u1", "members": [1]}
        assert "offset" not in until(one, "join")  # presence changes are not numbered
        with ws_connect(rooms_server, "/rooms/u1/ws/2") as two:
            assert next_json(two) == {"type": "presence", "room": "u1", "members": [1, 2]}
            assert until(one, "join", client_id=2)["room"] == "u1"
            assert presence(rooms_server, "u1") == {"room": "u1", "members": [1, 2]}
            two.send("hi")
            assert until(one, "message")["offset"] == 1 and until(two, "message")["offset"] == 1
        assert "offset" not in until(one, "leave", client_id=2)
        assert presence(rooms_server, "u1") == {"room": "u1", "members": [1]}


def test_a_client_that_drops_gets_all_ten_missed_messages_once_in_order(rooms_server: UvicornServer) -> None:
    with ws_connect(rooms_server, "/rooms/u2/ws/1") as one:
        until(one, "join", client_id=1)
        one.send("seen")
        seen = until(one, "message", text="seen")
    with ws_connect(rooms_server, "/rooms/u2/ws/2") as two:
        for n in range(10):
            two.send(f"m{n}")
        until(two, "message", text="m9")
        with ws_connect(rooms_server, f"/rooms/u2/ws/1?since={seen['offset']}&epoch={seen['epoch']}") as back:
            assert next_json(back)["type"] == "presence"
            missed = [next_json(back) for _ in range(10)]  # m0-m9: joins and leaves are not replayed
            assert [message["text"] for message in missed] == [f"m{n}" for n in range(10)]
            assert [message["offset"] for message in missed] == list(range(2, 12))
            assert next_json(back)["type"] == "join"  # then live: its own arrival


def test_reconnecting_while_another_client_talks_sees_every_offset_exactly_once(
    rooms_server: UvicornServer,
) -> None:
    """The seam under load: each reconnect asks for `since` = the offset of the last message it
    saw while the producer keeps appending; over every session, the offsets seen are 1..last with
    no gap and no repeat (joins and leaves, unnumbered, are not counted)."""
    seen: list[int] = []
    epoch = ""
    with ws_connect(rooms_server, "/rooms/u3/ws/2") as talker:
        producer = Producer(talker, [f"m{n}" for n in range(300)], pace=0.003)
        for _ in range(6):
            query = f"?since={seen[-1]}&epoch={epoch}" if seen else "?since=0"
            with ws_connect(rooms_server, f"/rooms/u3/ws/1{query}") as reader:
                assert next_json(reader)["type"] == "presence"
                deadline = time.monotonic() + 0.2
                while time.monotonic() < deadline:
                    try:
                        message = json.loads(reader.recv(timeout=0.5))
                    except TimeoutError:
                        break
                    assert message.get("type") != "gap", message
                    if message["type"] != "message":
                        continue
                    seen.append(message["offset"])
                    epoch = message["epoch"]
        producer.join(10)
        assert producer.sent == 300
        last = until(talker, "message", text="m299")["offset"]
    with ws_connect(rooms_server, f"/rooms/u3/ws/1?since={seen[-1]}&epoch={epoch}") as reader:
        assert next_json(reader)["type"] == "presence"
        while not seen or seen[-1] < last:
            message = next_json(reader)
            if message["type"] == "message":
                seen.append(message["offset"])
    assert seen == list(range(1, seen[-1] + 1))
