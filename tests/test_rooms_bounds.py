"""Rooms under a hostile or careless client, over Starlette's TestClient (memory://): one identity
per client id, canonical ids only, churn that neither evicts messages nor floods members."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from starlette_ws.app import create_app
from starlette_ws.settings import Settings
from tests.clients import session_json as receive
from tests.clients import session_until as until

OPEN_DOORS = {"room_connect_burst": 10_000, "room_address_burst": 10_000}


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(**OPEN_DOORS))) as client:  # type: ignore[arg-type]
        yield client


def test_two_connections_of_one_client_id_are_one_member(client: TestClient) -> None:
    with client.websocket_connect("/rooms/tabs/ws/1") as watcher:
        until(watcher, "join")
        with client.websocket_connect("/rooms/tabs/ws/7") as first:
            assert until(watcher, "join")["client_id"] == 7
            with client.websocket_connect("/rooms/tabs/ws/7") as second:
                assert receive(second) == {"type": "presence", "room": "tabs", "members": [1, 7]}
                first.send_text("still here")  # what the watcher gets next: no second join for 7
                assert receive(watcher)["type"] == "message"
            first.send_text("one tab closed")  # and no leave for 7 while its other tab is open
            after = receive(watcher)
            assert (after["type"], after["text"]) == ("message", "one tab closed")
            assert client.get("/rooms/tabs/presence").json()["members"] == [1, 7]
        leave = receive(watcher)
        assert (leave["type"], leave["client_id"]) == ("leave", 7)
        assert client.get("/rooms/tabs/presence").json()["members"] == [1]


@pytest.mark.parametrize("client_id", ["0001", "1.000", "+1", " 1", "1_000", "-1", "1e3", "9" * 20, "1" * 4300])
def test_a_room_client_id_has_one_spelling(client: TestClient, client_id: str) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(f"/rooms/ids/ws/{client_id}"):
        pass
    assert denied.value.status_code == 403
    assert denied.value.json()["detail"][0]["loc"] == ["path", "client_id"]


@pytest.mark.parametrize("client_id", ["0", "7", "9" * 19])
def test_canonical_room_client_ids_are_taken(client: TestClient, client_id: str) -> None:
    with client.websocket_connect(f"/rooms/ids/ws/{client_id}") as ws:
        assert receive(ws) == {"type": "presence", "room": "ids", "members": [int(client_id)]}


def test_churn_keeps_the_rooms_messages_and_coalesces_what_members_are_told() -> None:
    settings = Settings(room_history=100, **OPEN_DOORS)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as client, client.websocket_connect("/rooms/churn/ws/1") as member:
        until(member, "join")
        for n in range(100):
            member.send_text(f"m{n}")
        said = [until(member, "message") for _ in range(100)]
        for n in range(600):  # 600 arrivals and 600 departures
            with client.websocket_connect(f"/rooms/churn/ws/{1000 + n}") as passer:
                receive(passer)
        member.send_text("done")
        told = []
        while (message := receive(member))["type"] != "message":
            told.append(message["type"])
        # The rate (5/s, bursts of 20) lets a few through; the rest coalesce into member lists.
        assert len(told) < 100, len(told)
        assert set(told) <= {"join", "leave", "presence"}
        assert message["offset"] == 101  # churn took no offsets
        with client.websocket_connect(f"/rooms/churn/ws/2?since=0&epoch={said[0]['epoch']}") as late:
            assert receive(late)["type"] == "presence"
            assert receive(late)["missed"] == 1  # 101 said, 100 kept: only m0 went, and only for being old
            replayed = [receive(late) for _ in range(100)]
        assert [m["text"] for m in replayed] == [f"m{n}" for n in range(1, 100)] + ["done"]
        assert json.loads(client.get("/rooms/churn/presence").text)["members"] == [1]


def test_connects_past_the_set_up_places_are_refused_with_1013_and_no_member_is_closed() -> None:
    settings = Settings(room_connects_at_once=1, room_connect_wait=0.2, **OPEN_DOORS)  # type: ignore[arg-type]
    app = create_app(settings)
    with TestClient(app) as client, client.websocket_connect("/rooms/q/ws/1") as member:
        until(member, "join")
        store = app.state.hubs._shared
        present, stuck, free = store.present, threading.Event(), threading.Event()

        async def slow_present(*args: Any) -> bool:
            stuck.set()
            await asyncio.to_thread(free.wait, 10)
            return bool(await present(*args))

        store.present = slow_present
        done = threading.Event()

        def connect_slowly() -> None:
            with client.websocket_connect("/rooms/q/ws/2") as slow:
                receive(slow)
                done.wait(10)

        slow = threading.Thread(target=connect_slowly, daemon=True)
        slow.start()
        assert stuck.wait(5)  # the one place is taken by connection 2's set-up
        with client.websocket_connect("/rooms/q/ws/3") as refused:
            assert refused.receive() == {
                "type": "websocket.close",
                "code": 1013,
                "reason": "Too many room connections being set up: try again later",
            }
        free.set()
        store.present = present
        member.send_text("still here")
        assert until(member, "message")["text"] == "still here"
        done.set()
        slow.join(10)
