"""GET /metrics over Starlette's TestClient: traffic, then a scrape that counts it.

The metric objects are process-wide, so every test compares two scrapes (before and after).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient, WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from harness.services import RedisServer
from starlette_ws.app import create_app
from starlette_ws.metrics import code_label, dead_pids
from starlette_ws.settings import Settings
from tests.apps import faulty_app
from tests.services import start_redis

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def change(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_echo_traffic_is_counted_and_the_open_gauge_returns_to_zero(client: TestClient) -> None:
    before = scrape(client)
    with client.websocket_connect("/ws") as ws:
        for text in ("a", "b", "c"):
            ws.send_text(text)
            assert ws.receive_text() == f"Message text was: {text}"
        during = scrape(client)
    after = scrape(client)
    assert value(during, "starlette_ws_connections_open", endpoint="echo") == 1
    assert value(after, "starlette_ws_connections_open", endpoint="echo") == 0
    assert change(before, after, "starlette_ws_messages_received_total", endpoint="echo") == 3
    assert change(before, after, "starlette_ws_messages_sent_total", endpoint="echo") == 3
    assert change(before, after, "starlette_ws_closes_total", endpoint="echo", code="1000") == 1


def test_items_sends_are_counted_per_endpoint(client: TestClient) -> None:
    before = scrape(client)
    with client.websocket_connect("/items/foo/ws?token=t&q=3") as ws:
        ws.send_text("hi")
        replies = [ws.receive_text() for _ in range(3)]
    after = scrape(client)
    assert replies[-1] == "Message text was: hi, for item ID: foo"
    assert change(before, after, "starlette_ws_messages_received_total", endpoint="items") == 1
    assert change(before, after, "starlette_ws_messages_sent_total", endpoint="items") == 3
    assert change(before, after, "starlette_ws_messages_sent_total", endpoint="echo") == 0


def test_chat_sends_through_the_hub_are_counted(client: TestClient) -> None:
    """The hub writes to chat sockets itself (inline or from its sender task): each write counts."""
    before = scrape(client)
    with client.websocket_connect("/ws/31") as one, client.websocket_connect("/ws/32") as two:
        one.send_text("hi")
        assert [one.receive_text(), one.receive_text()] == ["You wrote: hi", "Client #31 says: hi"]
        assert two.receive_text() == "Client #31 says: hi"
    after = scrape(client)
    assert change(before, after, "starlette_ws_messages_received_total", endpoint="chat") == 1
    # You wrote, two copies of "says", and "Client #32 left the chat" to #31 if #32 left first
    assert change(before, after, "starlette_ws_messages_sent_total", endpoint="chat") >= 3


def refuse(client: TestClient, path: str, headers: dict[str, str] | None = None) -> None:
    with pytest.raises(WebSocketDisconnect), client.websocket_connect(path, headers=headers or {}):
        pass  # pragma: no cover


def test_refused_handshakes_are_counted_by_reason_type(client: TestClient) -> None:
    before = scrape(client)
    refuse(client, "/items/foo/ws")  # neither cookie nor token
    refuse(client, "/items/foo/ws?token=t&q=abc")
    refuse(client, "/items/foo/ws?q=abc")  # two reasons: counted under both
    refuse(client, "/ws", headers={"origin": "http://evil.example"})
    refuse(client, "/ws/not-a-number")
    refuse(client, "/ws", headers={"host": "evil.example"})
    after = scrape(client)
    assert change(before, after, "starlette_ws_handshakes_refused_total", reason="missing") == 2
    assert change(before, after, "starlette_ws_handshakes_refused_total", reason="int_parsing") == 3
    assert change(before, after, "starlette_ws_handshakes_refused_total", reason="origin") == 1
    assert change(before, after, "starlette_ws_handshakes_refused_total", reason="host") == 1
    assert value(after, "starlette_ws_connections_open", endpoint="items") == 0


def close_code(ws: WebSocketTestSession) -> int:
    """Read up to the server's close frame; its code."""
    while (message := ws.receive())["type"] != "websocket.close":
        pass
    code: int = message["code"]
    return code


@pytest.fixture
def settings() -> Settings:
    return Settings(max_message_bytes=100, chat_rate_per_second=1, chat_rate_burst=2, send_queue_bytes=100)


def test_closes_are_counted_by_code(client: TestClient) -> None:
    before = scrape(client)
    with client.websocket_connect("/ws") as ws:
        ws.send_bytes(b"binary")
        assert close_code(ws) == 1003
    with client.websocket_connect("/ws") as ws:
        ws.send_text("x" * 101)
        assert close_code(ws) == 1009
    with client.websocket_connect("/ws/7") as ws:
        for _ in range(3):  # a burst of 2 allowed: the third closes with 1008
            ws.send_text("hi")
        assert close_code(ws) == 1008
    after = scrape(client)
    assert change(before, after, "starlette_ws_closes_total", endpoint="echo", code="1003") == 1
    assert change(before, after, "starlette_ws_closes_total", endpoint="echo", code="1009") == 1
    assert change(before, after, "starlette_ws_closes_total", endpoint="chat", code="1008") == 1
    assert change(before, after, "starlette_ws_closes_total", endpoint="echo", code="1000") == 0


def test_a_chat_client_past_its_outbox_is_counted_slow_and_closed_1013(client: TestClient) -> None:
    before = scrape(client)
    with client.websocket_connect("/ws/8") as ws:
        ws.send_text("y" * 95)  # "You wrote: yyy..." is more than the 100-byte outbox holds
        assert close_code(ws) == 1013
    after = scrape(client)
    assert change(before, after, "starlette_ws_chat_slow_clients_total") == 1
    assert change(before, after, "starlette_ws_closes_total", endpoint="chat", code="1013") == 1


def test_an_error_in_a_handler_is_counted_as_1011() -> None:
    with TestClient(faulty_app) as client:
        before = scrape(client)
        with client.websocket_connect("/faulty") as ws:
            ws.send_text("boom")
            assert close_code(ws) == 1011
        after = scrape(client)
    assert change(before, after, "starlette_ws_closes_total", endpoint="faulty", code="1011") == 1


def test_own_broadcasts_are_timed_from_publish_to_local_delivery() -> None:
    with TestClient(create_app()) as client:
        before = scrape(client)
        with client.websocket_connect("/ws/9") as ws:
            for text in ("a", "b"):
                ws.send_text(text)
                assert [ws.receive_text(), ws.receive_text()] == [f"You wrote: {text}", f"Client #9 says: {text}"]
        after = scrape(client)
    assert change(before, after, "starlette_ws_broadcast_delivery_seconds_count") == 2
    assert 0 < change(before, after, "starlette_ws_broadcast_delivery_seconds_sum") < 1.0
    assert change(before, after, "starlette_ws_messages_sent_total", endpoint="chat") == 4


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it stops and starts again."""
    server = start_redis()
    yield server
    server.close()


def wait_for(client: TestClient, ready: Callable[[Samples], bool], timeout: float = 5.0) -> Samples:
    deadline = time.monotonic() + timeout
    while not ready(samples := scrape(client)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return samples


OUTAGES = "starlette_ws_backend_outages_total"
RECONNECTS = "starlette_ws_backend_reconnects_total"
FAILURES = "starlette_ws_broadcast_publish_failures_total"
REASONS = ("not_sent", "uncertain", "error", "too_large", "busy")


def failures(before: Samples, after: Samples) -> float:
    return sum(change(before, after, FAILURES, reason=reason) for reason in REASONS)


def test_publishes_failed_outages_and_reconnects_are_counted(own_redis: RedisServer) -> None:
    with TestClient(create_app(Settings(broadcast_url=own_redis.url))) as client:
        before = scrape(client)
        with client.websocket_connect("/ws/10") as ws:
            ws.send_text("up")
            assert [ws.receive_text(), ws.receive_text()] == ["You wrote: up", "Client #10 says: up"]
            own_redis.stop()
            lost = wait_for(client, lambda s: change(before, s, OUTAGES, backend="redis") > 0)
            ws.send_text("down")
            assert ws.receive_text() == "You wrote: down"
            failed = wait_for(client, lambda s: failures(before, s) > 0)
            own_redis.start()
            back = wait_for(client, lambda s: change(before, s, RECONNECTS, backend="redis") > 0)
    assert change(before, lost, OUTAGES, backend="redis") == 1
    assert failures(before, failed) == 1
    assert change(before, back, RECONNECTS, backend="redis") == 1
    assert change(before, back, OUTAGES, backend="redis") == 1


def test_metrics_off_means_no_endpoint_and_no_counting() -> None:
    with TestClient(create_app()) as on:
        before = scrape(on)
        with TestClient(create_app(Settings(metrics=False))) as off:
            assert off.get("/metrics").status_code == 404
            with off.websocket_connect("/ws") as ws:
                ws.send_text("a")
                assert ws.receive_text() == "Message text was: a"
        after = scrape(on)
    assert change(before, after, "starlette_ws_messages_received_total", endpoint="echo") == 0
    assert change(before, after, "starlette_ws_closes_total", endpoint="echo", code="1000") == 0


def test_a_clients_own_close_codes_share_one_label(client: TestClient) -> None:
    before = scrape(client)
    for code in (4000, 4001, 3999):
        with client.websocket_connect("/ws") as ws:
            ws.close(code)
    after = scrape(client)
    assert change(before, after, "starlette_ws_closes_total", endpoint="echo", code="other") == 3
    assert [code_label(code) for code in (1000, 1013, 1015, 999, 1016, 4000)] == [
        "1000", "1013", "1015", "other", "other", "other",
    ]  # fmt: skip


def test_dead_workers_are_found_by_their_live_gauge_files() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    names = [
        f"gauge_livesum_{gone.pid}.db",
        "gauge_livesum_1.db",  # init: alive
        f"counter_{gone.pid}.db",  # counters stay: their totals must not go down
        f"gauge_all_{gone.pid}.db",
    ]
    assert dead_pids(names) == {gone.pid}
