"""Rooms over Starlette's TestClient (memory://): offsets, join/leave/presence, recovery, gaps, the seam."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from starlette_ws.app import create_app
from starlette_ws.history import Replay
from starlette_ws.history.memory import MemoryStore
from starlette_ws.settings import Settings
from tests.clients import session_json as receive
from tests.clients import session_until as until


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(room_history=5))) as client:
        yield client


def store_of(client: TestClient) -> MemoryStore:
    store = client.app.state.hubs._shared  # type: ignore[attr-defined]
    assert isinstance(store, MemoryStore)
    return store


def test_a_room_numbers_its_messages_and_announces_joins_leaves_and_members(client: TestClient) -> None:
    with client.websocket_connect("/rooms/lobby/ws/1") as one:
        assert receive(one) == {"type": "presence", "room": "lobby", "members": [1]}
        join = receive(one)
        assert (join["type"], join["offset"], join["client_id"], join["room"]) == ("join", 1, 1, "lobby")
        with client.websocket_connect("/rooms/lobby/ws/2") as two:
            assert receive(two) == {"type": "presence", "room": "lobby", "members": [1, 2]}
            assert receive(two)["offset"] == 2 and receive(one)["offset"] == 2  # 2's join, to both
            assert client.get("/rooms/lobby/presence").json() == {"room": "lobby", "members": [1, 2]}
            two.send_text("hello")
            for ws in (one, two):
                message = receive(ws)
                assert (message["type"], message["offset"], message["text"], message["client_id"]) == (
                    "message",
                    3,
                    "hello",
                    2,
                )
                assert message["epoch"] == join["epoch"] and isinstance(message["time"], float)
        leave = receive(one)
        assert (leave["type"], leave["offset"], leave["client_id"]) == ("leave", 4, 2)
        assert client.get("/rooms/lobby/presence").json() == {"room": "lobby", "members": [1]}
    assert client.get("/rooms/lobby/presence").json() == {"room": "lobby", "members": []}


@pytest.mark.parametrize("path", ["/rooms/a b/ws/1", "/rooms/" + "x" * 65 + "/ws/1", "/rooms/ok/ws/1?since=-1"])
def test_bad_rooms_and_offsets_are_refused_with_403_json(client: TestClient, path: str) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(path):
        pass
    assert denied.value.status_code == 403
    assert denied.value.json()["detail"][0]["loc"][0] in ("path", "query")


def test_a_client_that_reconnects_with_since_gets_what_it_missed_once_in_order(client: TestClient) -> None:
    with client.websocket_connect("/rooms/r/ws/1") as one:
        join = until(one, "join")
        epoch, seen = join["epoch"], join["offset"]
    with client.websocket_connect("/rooms/r/ws/2") as two:
        until(two, "join")
        for n in range(3):
            two.send_text(f"m{n}")
        with client.websocket_connect(f"/rooms/r/ws/1?since={seen}&epoch={epoch}") as again:
            assert receive(again)["type"] == "presence"
            replayed = [receive(again) for _ in range(5)]  # 1's leave, 2's join, m0-m2
            assert [m["offset"] for m in replayed] == [2, 3, 4, 5, 6]
            assert [m.get("text") for m in replayed[2:]] == ["m0", "m1", "m2"]
            live = receive(again)
            assert (live["type"], live["offset"], live["client_id"]) == ("join", 7, 1)  # its own, live


def test_an_old_epoch_or_an_offset_older_than_kept_gets_a_gap_first(client: TestClient) -> None:
    with client.websocket_connect("/rooms/g/ws/1") as one:
        epoch = until(one, "join")["epoch"]
        for n in range(8):
            one.send_text(f"m{n}")
        until(one, "message")
    # offsets 1..9 said and 1's leave is 10; 5 kept (6..10): since=1 misses 2 to 5
    with client.websocket_connect(f"/rooms/g/ws/2?since=1&epoch={epoch}") as late:
        assert receive(late)["type"] == "presence"
        assert receive(late) == {"type": "gap", "room": "g", "offset": 1, "epoch": epoch, "missed": 4}
        assert [receive(late)["offset"] for _ in range(5)] == [6, 7, 8, 9, 10]
    with client.websocket_connect("/rooms/g/ws/3?since=9&epoch=0123abcd") as lost:
        assert receive(lost)["type"] == "presence"
        assert receive(lost) == {"type": "gap", "room": "g", "offset": 9, "epoch": epoch, "missed": None}
        assert [receive(lost)["offset"] for _ in range(5)] == [8, 9, 10, 11, 12]  # all that is kept (2's join, leave)


class SlowReplay:
    """A store whose replay is slow: others' entries are appended while it reads (before and after)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def replay(self, room: str, since: int | None, epoch: str | None) -> Replay:
        rest = '"type":"message","room":"%s","client_id":9,"text":"%s","time":0}'
        await self.store.append(room, rest % (room, "before the read"))  # replayed and held: sent once
        replay = await self.store.replay(room, since, epoch)
        await self.store.append(room, rest % (room, "after the read"))  # held only: sent live
        return replay


def test_the_seam_between_replay_and_live_has_no_gap_and_no_duplicate(client: TestClient) -> None:
    with client.websocket_connect("/rooms/s/ws/1") as one:
        join = until(one, "join")
        one.send_text("said before")
        until(one, "message")
    hubs = client.app.state.hubs  # type: ignore[attr-defined]
    hubs._shared = SlowReplay(store_of(client))
    for rooms in hubs._rooms.values():
        rooms.store = hubs._shared
    with client.websocket_connect(f"/rooms/s/ws/2?since={join['offset']}&epoch={join['epoch']}") as two:
        assert receive(two)["type"] == "presence"
        got = [receive(two) for _ in range(5)]
    offsets = [m["offset"] for m in got]
    assert offsets == [2, 3, 4, 5, 6]  # each once, in order, nothing missing
    assert [m.get("text") for m in got] == ["said before", None, "before the read", "after the read", None]
    assert [m["type"] for m in got] == ["message", "leave", "message", "message", "join"]


def test_rooms_without_the_lifespan_share_one_history_across_event_loops() -> None:
    """Each socket of a TestClient outside `with` runs in an event loop (and thread) of its own."""
    plain = TestClient(create_app(Settings()))
    with plain.websocket_connect("/rooms/x/ws/1") as one, plain.websocket_connect("/rooms/x/ws/2") as two:
        epoch = until(one, "join")["epoch"]
        assert receive(two) == {"type": "presence", "room": "x", "members": [1, 2]}
        until(one, "join")
        one.send_text("across loops")
        assert until(two, "message")["offset"] == 3
    with plain.websocket_connect(f"/rooms/x/ws/3?since=2&epoch={epoch}") as late:
        assert receive(late)["type"] == "presence"
        assert [receive(late)["offset"] for _ in range(3)] == [3, 4, 5]  # the message, two leaves
    assert plain.get("/rooms/x/presence").json() == {"room": "x", "members": []}


def test_the_rooms_page_lists_rooms_with_members_now_and_each_room_has_a_page(client: TestClient) -> None:
    assert "Nobody is in a room right now." in client.get("/rooms").text
    with client.websocket_connect("/rooms/busy/ws/41") as one:
        until(one, "join")
        listing = client.get("/rooms").text
        assert 'href="http://testserver/rooms/busy"' in listing and "41" in listing
    assert "busy" not in client.get("/rooms").text
    page = client.get("/rooms/busy")
    assert page.status_code == 200 and 'data-ws-url="ws://testserver/rooms/busy/ws/CLIENT_ID"' in page.text
    assert client.get("/rooms/not%20a%20room").status_code == 404
    assert client.get("/rooms/not%20a%20room/presence").status_code == 404


def test_a_member_stays_present_past_the_ttl_while_its_process_refreshes_it() -> None:
    app = create_app(Settings(presence_ttl=0.3))
    with TestClient(app) as short, short.websocket_connect("/rooms/beat/ws/5") as one:
        until(one, "join")
        time.sleep(0.8)  # over two TTLs: only the heartbeat (every TTL/3) keeps it
        assert short.get("/rooms/beat/presence").json()["members"] == [5]
        for rooms in app.state.hubs._rooms.values():  # the heartbeat stops refreshing it, as if its process died
            rooms.local.clear()
        store = store_of(short)
        store.clock = lambda: time.monotonic() + 1.0  # and a TTL has passed since its last refresh
        assert short.get("/rooms/beat/presence").json()["members"] == []


def test_a_room_client_that_floods_or_sends_too_much_is_closed_as_on_the_chat() -> None:
    app = create_app(Settings(chat_rate_per_second=0.001, chat_rate_burst=2, max_message_bytes=10))
    with TestClient(app) as limited:
        with limited.websocket_connect("/rooms/f/ws/1") as flood:
            until(flood, "join")
            for n in range(3):
                flood.send_text(f"m{n}")
            assert [until(flood, "message")["text"] for _ in range(2)] == ["m0", "m1"]
            assert flood.receive() == {
                "type": "websocket.close",
                "code": 1008,
                "reason": "Rate limit: 0.001 messages/s, bursts of 2",
            }
        with limited.websocket_connect("/rooms/f/ws/2") as big:
            until(big, "join")
            big.send_text("x" * 11)
            assert big.receive() == {"type": "websocket.close", "code": 1009, "reason": "Message over 10 bytes"}
