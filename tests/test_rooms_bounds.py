"""Rooms under a hostile or careless client, over Starlette's TestClient (memory://): one identity
per client id, canonical ids only, churn that neither evicts messages nor floods members."""

from __future__ import annotations

import json
from collections.abc import Iterator

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
