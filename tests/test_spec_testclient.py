"""Contract part A under Starlette's TestClient, and B1: a refusal is the same 403 with its JSON body."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.clients import over_testclient
from tests.scenarios import SINGLE_CLIENT, UNKNOWN, Case


@pytest.mark.parametrize("case", SINGLE_CLIENT, ids=lambda case: case.id)
def test_single_client_scenario(client: TestClient, case: Case) -> None:
    outcome = over_testclient(client, case)
    if case.refused:
        assert outcome.status == 403
        assert outcome.detail()[0]["loc"] == list(case.refused_loc or ())
    else:
        assert outcome.replies == case.replies


@pytest.mark.parametrize("case", UNKNOWN, ids=lambda case: case.id)
def test_unknown_path_is_closed_before_accept(client: TestClient, case: Case) -> None:
    assert not over_testclient(client, case).accepted


def test_refusal_lists_every_error_shaped_like_fastapi(client: TestClient) -> None:
    outcome = over_testclient(client, Case("x", "/items/foo/ws?q=1.5", replies=None))
    assert outcome.detail() == [
        {
            "type": "missing",
            "loc": ["query", "token"],
            "msg": "Field required: a 'session' cookie or a 'token' query parameter",
            "input": None,
        },
        {
            "type": "int_parsing",
            "loc": ["query", "q"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "input": "1.5",
        },
    ]


def test_chat_broadcast_reaches_everyone_and_departures_are_announced(client: TestClient) -> None:
    with client.websocket_connect("/ws/1") as one, client.websocket_connect("/ws/2") as two:
        one.send_text("hello")
        assert one.receive_text() == "You wrote: hello"
        assert one.receive_text() == "Client #1 says: hello"
        assert two.receive_text() == "Client #1 says: hello"
        two.send_text("hi")
        assert two.receive_text() == "You wrote: hi"
        assert two.receive_text() == "Client #2 says: hi"
        assert one.receive_text() == "Client #2 says: hi"
        two.close()
        assert one.receive_text() == "Client #2 left the chat"


def test_binary_frame_closes_with_1003(client: TestClient) -> None:
    for path in ("/ws", "/items/foo/ws?token=t", "/ws/5"):
        with client.websocket_connect(path) as ws:
            ws.send_bytes(b"\x00\x01")
            assert ws.receive() == {"type": "websocket.close", "code": 1003, "reason": "Text frames only"}
