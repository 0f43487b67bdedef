"""Rooms over Starlette's TestClient (memory://): offsets, join/leave/presence, recovery, gaps, the seam,
errors and limits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from starlette_ws.app import create_app
from starlette_ws.history import HistoryError, HistoryUncertain, Replay
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
        assert (join["type"], join["client_id"], join["room"]) == ("join", 1, "lobby")
        assert "offset" not in join and "epoch" not in join and isinstance(join["time"], float)  # not history
        with client.websocket_connect("/rooms/lobby/ws/2") as two:
            assert receive(two) == {"type": "presence", "room": "lobby", "members": [1, 2]}
            for ws in (two, one):  # 2's join, to both
                assert {key: value for key, value in receive(ws).items() if key != "time"} == {
                    "type": "join",
                    "room": "lobby",
                    "client_id": 2,
                }
            assert client.get("/rooms/lobby/presence").json() == {"room": "lobby", "members": [1, 2]}
            two.send_text("hello")
            for ws in (one, two):
                message = receive(ws)
                assert (message["type"], message["offset"], message["text"], message["client_id"]) == (
                    "message",
                    1,  # offsets count messages only
                    "hello",
                    2,
                )
                assert isinstance(message["epoch"], str) and isinstance(message["time"], float)
            two.send_text("again")
            assert receive(one)["offset"] == 2
        leave = receive(one)
        assert (leave["type"], leave["client_id"], "offset" in leave) == ("leave", 2, False)
        assert client.get("/rooms/lobby/presence").json() == {"room": "lobby", "members": [1]}
    assert client.get("/rooms/lobby/presence").json() == {"room": "lobby", "members": []}


def test_two_tabs_of_one_client_are_one_member_joined_and_left_once(client: TestClient) -> None:
    with client.websocket_connect("/rooms/tabs/ws/9") as watcher:
        until(watcher, "join")
        with client.websocket_connect("/rooms/tabs/ws/7") as first:
            assert receive(first) == {"type": "presence", "room": "tabs", "members": [7, 9]}
            assert until(watcher, "join")["client_id"] == 7
            assert until(first, "join")["client_id"] == 7  # its own
            with client.websocket_connect("/rooms/tabs/ws/7") as second:
                assert receive(second) == {"type": "presence", "room": "tabs", "members": [7, 9]}
                second.send_text("from the second tab")  # nothing is announced between: no join
                assert until(watcher, "message")["text"] == "from the second tab"
                assert receive(first)["text"] == "from the second tab"
            first.send_text("second tab gone")  # no leave: client 7 is still here
            assert receive(watcher)["text"] == "second tab gone" == receive(first)["text"]
            assert client.get("/rooms/tabs/presence").json()["members"] == [7, 9]
        leave = receive(watcher)
        assert (leave["type"], leave["client_id"]) == ("leave", 7)


@pytest.mark.parametrize(
    "path",
    [
        "/rooms/a b/ws/1",
        "/rooms/" + "x" * 65 + "/ws/1",
        "/rooms/ok/ws/1?since=-1",
        "/rooms/ok/ws/1?epoch=XYZ",
        "/rooms/ok/ws/01",  # one spelling per client id
        "/rooms/ok/ws/+1",
        "/rooms/ok/ws/1_0",
        "/rooms/ok/ws/" + "9" * 20,
        "/rooms/ok/ws/alice",
    ],
)
def test_bad_rooms_client_ids_and_offsets_are_refused_with_403_json(client: TestClient, path: str) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(path):
        pass
    assert denied.value.status_code == 403
    assert denied.value.json()["detail"][0]["loc"][0] in ("path", "query")


def test_a_client_that_reconnects_with_since_gets_what_it_missed_once_in_order(client: TestClient) -> None:
    with client.websocket_connect("/rooms/r/ws/1") as one:
        until(one, "join")
        one.send_text("seen")
        seen = until(one, "message")
        epoch = seen["epoch"]
    with client.websocket_connect("/rooms/r/ws/2") as two:
        assert receive(two) == {"type": "presence", "room": "r", "members": [2]}
        assert receive(two)["text"] == "seen"  # without `since`: the newest kept messages
        until(two, "join")
        for n in range(3):
            two.send_text(f"m{n}")
        with client.websocket_connect(f"/rooms/r/ws/1?since={seen['offset']}&epoch={epoch}") as again:
            assert receive(again) == {"type": "presence", "room": "r", "members": [1, 2]}
            replayed = [receive(again) for _ in range(3)]  # m0-m2; joins and leaves are not replayed
            assert [m["offset"] for m in replayed] == [2, 3, 4]
            assert [m["text"] for m in replayed] == ["m0", "m1", "m2"]
            assert {m["epoch"] for m in replayed} == {epoch}
            live = receive(again)
            assert (live["type"], live["client_id"]) == ("join", 1)  # its own, live
            two.send_text("live")
            assert until(two, "message", text="live")["offset"] == 5 == receive(again)["offset"]


def test_without_since_a_client_gets_the_newest_messages_up_to_the_byte_budget() -> None:
    app = create_app(Settings(room_history=50, room_recent_bytes=400))
    with TestClient(app) as client:
        with client.websocket_connect("/rooms/recent/ws/1") as one:
            until(one, "join")
            for n in range(10):
                one.send_text(f"m{n}")
            said = [until(one, "message") for _ in range(10)]
        sizes = [len(json.dumps(m, separators=(",", ":")).encode()) for m in said]
        fits = next(n for n in range(10, -1, -1) if sum(sizes[10 - n :]) <= 400)
        assert 0 < fits < 10
        with client.websocket_connect("/rooms/recent/ws/2") as two:
            assert receive(two)["type"] == "presence"
            recent = [receive(two) for _ in range(fits)]
            assert [m["text"] for m in recent] == [f"m{n}" for n in range(10 - fits, 10)]  # oldest first
            assert receive(two)["type"] == "join"  # then live


def test_an_old_epoch_or_an_offset_older_than_kept_gets_a_gap_first(client: TestClient) -> None:
    with client.websocket_connect("/rooms/g/ws/1") as one:
        until(one, "join")
        for n in range(8):
            one.send_text(f"m{n}")
        said = [until(one, "message") for _ in range(8)]
        epoch = said[0]["epoch"]
    # offsets 1..8 said, 5 kept (4..8): since=1 misses 2 and 3
    with client.websocket_connect(f"/rooms/g/ws/2?since=1&epoch={epoch}") as late:
        assert receive(late)["type"] == "presence"
        assert receive(late) == {"type": "gap", "room": "g", "offset": 1, "epoch": epoch, "missed": 2}
        assert [receive(late)["offset"] for _ in range(5)] == [4, 5, 6, 7, 8]
        assert receive(late)["type"] == "join"
    with client.websocket_connect("/rooms/g/ws/3?since=7&epoch=0123abcd") as lost:
        assert receive(lost)["type"] == "presence"
        assert receive(lost) == {"type": "gap", "room": "g", "offset": 7, "epoch": epoch, "missed": None}
        assert [receive(lost)["offset"] for _ in range(5)] == [4, 5, 6, 7, 8]  # all that is kept
    with client.websocket_connect(f"/rooms/g/ws/4?since=8&epoch={epoch}") as current:
        assert receive(current)["type"] == "presence"
        assert receive(current)["type"] == "join"  # nothing missed: no gap, no replay


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


def use_store(client: TestClient, store: Any) -> None:
    hubs = client.app.state.hubs  # type: ignore[attr-defined]
    hubs._shared = store
    for rooms in hubs._rooms.values():
        rooms.store = store
        for stream in rooms.streams.values():
            stream.store = store


def test_the_seam_between_replay_and_live_has_no_gap_and_no_duplicate(client: TestClient) -> None:
    with client.websocket_connect("/rooms/s/ws/1") as one:
        until(one, "join")
        one.send_text("said before")
        epoch = until(one, "message")["epoch"]
    use_store(client, SlowReplay(store_of(client)))
    with client.websocket_connect(f"/rooms/s/ws/2?since=0&epoch={epoch}") as two:
        assert receive(two)["type"] == "presence"
        got = [receive(two) for _ in range(4)]
    assert [m.get("offset") for m in got] == [1, 2, 3, None]  # each once, in order, nothing missing
    assert [m.get("text") for m in got] == ["said before", "before the read", "after the read", None]
    assert [m["type"] for m in got] == ["message", "message", "message", "join"]


class FailingStore:
    """A store that keeps nothing: its appends fail (`error`), or every call does (`connect`)."""

    def __init__(self, store: MemoryStore, error: HistoryError, everything: bool = False) -> None:
        self.store = store
        self.error = error
        self.everything = everything

    def __getattr__(self, name: str) -> Any:
        if self.everything and name in ("present", "replay", "members"):
            raise self.error
        return getattr(self.store, name)

    async def append(self, room: str, rest: str, seen: Any = None) -> Any:
        raise self.error


@pytest.mark.parametrize(("error", "sent"), [(HistoryError("down"), False), (HistoryUncertain("lost"), None)])
def test_a_message_the_store_did_not_keep_is_an_error_to_its_sender_only(
    client: TestClient, error: HistoryError, sent: bool | None
) -> None:
    with client.websocket_connect("/rooms/e/ws/1") as one, client.websocket_connect("/rooms/e/ws/2") as two:
        until(one, "join")
        until(one, "join")  # 2's
        until(two, "join")
        store = store_of(client)
        use_store(client, FailingStore(store, error))
        two.send_text("lost?")
        assert receive(two) == {
            "type": "error",
            "room": "e",
            "text": "lost?",
            "sent": sent,
            "reason": "Room store not available: try again later",
        }
        use_store(client, store)
        two.send_text("kept")  # the connection stays open
        assert receive(two)["text"] == "kept" and receive(one)["text"] == "kept"  # one never saw the error


def test_a_store_that_fails_at_connect_closes_the_connection_1013(client: TestClient) -> None:
    use_store(client, FailingStore(store_of(client), HistoryError("down"), everything=True))
    with client.websocket_connect("/rooms/down/ws/1") as ws:
        assert ws.receive() == {
            "type": "websocket.close",
            "code": 1013,
            "reason": "Room store not available: try again later",
        }


def test_room_connects_past_the_rate_of_a_client_id_are_refused_429() -> None:
    app = create_app(Settings(room_connect_rate=0.001, room_connect_burst=2))
    with TestClient(app) as client:
        for _ in range(2):
            with client.websocket_connect("/rooms/rate/ws/1") as ws:
                until(ws, "join")
        with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/rooms/rate/ws/1"):
            pass
        assert denied.value.status_code == 429
        assert denied.value.json()["detail"][0]["type"] == "rate_limited"
        with client.websocket_connect("/rooms/rate/ws/2") as other:  # another client id: its own rate
            until(other, "join")


def test_past_the_presence_rate_arrivals_coalesce_into_one_member_list() -> None:
    app = create_app(Settings(room_presence_rate=5.0, room_presence_burst=1))
    with TestClient(app) as client, client.websocket_connect("/rooms/busy/ws/1") as one:
        until(one, "join")  # the room's one change this instant
        with client.websocket_connect("/rooms/busy/ws/2"), client.websocket_connect("/rooms/busy/ws/3"):
            assert receive(one) == {"type": "presence", "room": "busy", "members": [1, 2, 3]}


def test_rooms_without_the_lifespan_share_one_history_across_event_loops() -> None:
    """Each socket of a TestClient outside `with` runs in an event loop (and thread) of its own."""
    plain = TestClient(create_app(Settings()))
    with plain.websocket_connect("/rooms/x/ws/1") as one, plain.websocket_connect("/rooms/x/ws/2") as two:
        until(one, "join")
        assert receive(two) == {"type": "presence", "room": "x", "members": [1, 2]}
        assert until(one, "join")["client_id"] == 2
        one.send_text("across loops")
        message = until(two, "message")
        assert message["offset"] == 1
    with plain.websocket_connect(f"/rooms/x/ws/3?since=0&epoch={message['epoch']}") as late:
        assert receive(late) == {"type": "presence", "room": "x", "members": [3]}
        assert receive(late)["offset"] == 1  # the message; the leaves are not history
        assert (receive(late)["type"]) == "join"
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
            rooms.presence.local.clear()
        time.sleep(0.2)  # a refresh the beat (on the app's thread) was making meanwhile has been made
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
