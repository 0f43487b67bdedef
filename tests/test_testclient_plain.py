"""The demos under `client = TestClient(app)` without `with`: FastAPI's "Testing WebSockets" idiom.

No lifespan runs, and every request and socket gets an event loop (and thread) of its own.
"""

from __future__ import annotations

import logging
import time

import pytest
import redis
from starlette.testclient import TestClient, WebSocketDenialResponse

from harness.net import free_port
from harness.services import RedisServer
from starlette_ws.app import create_app
from starlette_ws.settings import Settings

app = create_app(Settings())
client = TestClient(app)


@pytest.mark.parametrize(
    ("path", "heading"),
    [
        ("/", "<h1>starlette-ws</h1>"),
        ("/echo", "<h1>WebSocket Echo</h1>"),
        ("/items", "<h1>WebSocket Items</h1>"),
        ("/chat", "<h1>WebSocket Chat</h1>"),
    ],
)
def test_page(path: str, heading: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert heading in response.text


def test_health() -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "chat_connections": 0,
        "broadcast": "memory",
        "listening": True,
        "engine": "ok",
    }


def test_echo() -> None:
    with client.websocket_connect("/ws") as websocket:
        websocket.send_text("Hello WebSocket")
        assert websocket.receive_text() == "Message text was: Hello WebSocket"


def test_items_with_token_and_q() -> None:
    with client.websocket_connect("/items/foo/ws?token=some-token&q=3") as websocket:
        websocket.send_text("Hello")
        assert websocket.receive_text() == "Session cookie or query token value is: some-token"
        assert websocket.receive_text() == "Query parameter q is: 3"
        assert websocket.receive_text() == "Message text was: Hello, for item ID: foo"


def test_items_with_cookie() -> None:
    with client.websocket_connect("/items/foo/ws", headers={"cookie": "session=fakesession"}) as websocket:
        websocket.send_text("Hello")
        assert websocket.receive_text() == "Session cookie or query token value is: fakesession"
        assert websocket.receive_text() == "Message text was: Hello, for item ID: foo"


def test_items_without_credentials_is_refused() -> None:
    with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect("/items/foo/ws"):
        pass  # pragma: no cover
    assert refused.value.status_code == 403
    assert refused.value.json()["detail"][0]["loc"] == ["query", "token"]


def test_chat_two_clients_and_a_departure() -> None:
    for _ in range(2):  # a second session starts the chat again in new event loops
        with client.websocket_connect("/ws/1234") as one, client.websocket_connect("/ws/5678") as two:
            one.send_text("Hello from 1234")
            assert one.receive_text() == "You wrote: Hello from 1234"
            assert one.receive_text() == "Client #1234 says: Hello from 1234"
            assert two.receive_text() == "Client #1234 says: Hello from 1234"
            two.send_text("Hello from 5678")
            assert two.receive_text() == "You wrote: Hello from 5678"
            assert two.receive_text() == "Client #5678 says: Hello from 5678"
            assert one.receive_text() == "Client #5678 says: Hello from 5678"
            two.close()
            assert one.receive_text() == "Client #5678 left the chat"
    assert client.get("/health").json()["chat_connections"] == 0


def test_chat_session_after_the_first_clients_loop_ended() -> None:
    """The second client outlives the first one's event loop, and a third joins it."""
    with client.websocket_connect("/ws/1") as one:
        two = client.websocket_connect("/ws/2").__enter__()
        one.send_text("a")
        assert [one.receive_text(), one.receive_text(), two.receive_text()] == [
            "You wrote: a",
            "Client #1 says: a",
            "Client #1 says: a",
        ]
    assert two.receive_text() == "Client #1 left the chat"
    with client.websocket_connect("/ws/3") as three:
        two.send_text("b")
        assert [two.receive_text(), two.receive_text(), three.receive_text()] == [
            "You wrote: b",
            "Client #2 says: b",
            "Client #2 says: b",
        ]
    assert two.receive_text() == "Client #3 left the chat"
    two.__exit__(None, None, None)


def test_chat_with_an_unreachable_engine_closes_with_a_reason(caplog: pytest.LogCaptureFixture) -> None:
    unreachable = TestClient(create_app(Settings(broadcast_url=f"redis://127.0.0.1:{free_port()}/0")))
    assert unreachable.get("/chat").status_code == 200
    with caplog.at_level(logging.ERROR, logger="starlette_ws"), unreachable.websocket_connect("/ws/1") as websocket:
        assert websocket.receive() == {
            "type": "websocket.close",
            "code": 1011,
            "reason": "Broadcast backend not started: run the app's lifespan",
        }
    (record,) = [r for r in caplog.records if r.name == "starlette_ws"]
    assert "redis:// broadcast backend is not started and could not connect" in record.getMessage()
    assert "run the app's lifespan" in record.getMessage()
    assert unreachable.get("/health").json()["listening"] is False


def test_chat_over_redis_connects_on_first_use_and_closes_after_the_last(redis_server: RedisServer) -> None:
    redis_server.start()  # running again if an earlier outage test left it stopped
    with redis.Redis.from_url(redis_server.url) as admin:
        before = len(admin.client_list())
        over_redis = TestClient(create_app(Settings(broadcast_url=redis_server.url)))
        for _ in range(2):
            with over_redis.websocket_connect("/ws/1") as one:
                one.send_text("a")  # its own copy comes back through Redis: subscribed
                assert [one.receive_text(), one.receive_text()] == ["You wrote: a", "Client #1 says: a"]
                with over_redis.websocket_connect("/ws/2") as two:
                    two.send_text("b")
                    assert [two.receive_text(), two.receive_text()] == ["You wrote: b", "Client #2 says: b"]
                    assert one.receive_text() == "Client #2 says: b"
                    one.send_text("c")
                    assert [one.receive_text(), one.receive_text()] == ["You wrote: c", "Client #1 says: c"]
                    assert two.receive_text() == "Client #1 says: c"
                assert one.receive_text() == "Client #2 left the chat"
        deadline = time.monotonic() + 2
        while len(admin.client_list()) > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(admin.client_list()) == before
