"""The shared endpoint loop, driven through the app's ASGI callable with a scripted receive and a
recording send: no server, so every message the app sends is seen exactly as the server gets it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, ClassVar

import anyio
import pytest
from prometheus_client import REGISTRY
from starlette.routing import WebSocketRoute
from starlette.types import Message
from starlette.websockets import WebSocket

from starlette_ws import metrics
from starlette_ws.app import create_app
from starlette_ws.endpoint import TextEndpoint
from starlette_ws.settings import Settings


class ProbeEndpoint(TextEndpoint):
    """Echoes; `boom` raises inside the handler, `bye` closes with 4000 (a private code: `other`),
    `bye, then boom` closes with 4000 and then raises."""

    handled: ClassVar[list[str]] = []
    ended: ClassVar[list[int]] = []

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        self.handled.append(data)
        if data == "boom":
            raise RuntimeError("boom inside on_receive")
        if data == "bye":
            await self.close(websocket, 4000, "bye")
            return
        if data == "bye, then boom":
            await self.close(websocket, 4000, "bye")
            raise RuntimeError("boom after our close")
        await websocket.send_text(f"echo: {data}")

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        self.ended.append(close_code)


app = create_app(Settings(max_message_bytes=100))
app.router.routes.append(WebSocketRoute("/probe", ProbeEndpoint))


def text(data: str) -> Message:
    return {"type": "websocket.receive", "text": data}


def disconnect(code: int = 1000) -> Message:
    return {"type": "websocket.disconnect", "code": code}


async def play(incoming: Iterable[Message], fail_sends: bool = False) -> list[Message]:
    """Play `incoming` after the handshake; what the app sent, in order."""
    ProbeEndpoint.handled, ProbeEndpoint.ended = [], []
    messages = iter([{"type": "websocket.connect"}, *incoming])
    sent: list[Message] = []

    async def receive() -> Message:
        return next(messages)  # the app never reads past the scripted disconnect

    async def send(message: Message) -> None:
        if fail_sends and message["type"] == "websocket.send":
            raise OSError("transport dropped")
        sent.append(message)

    scope = {"type": "websocket", "path": "/probe", "headers": [(b"host", b"testserver")], "query_string": b""}
    with anyio.fail_after(5):
        await app(scope, receive, send)
    assert sent[0]["type"] == "websocket.accept"
    return sent[1:]


def counts() -> tuple[float, float, dict[str, float]]:
    """Messages received and sent by the probe endpoint so far, and its closes per code label."""
    probe = metrics.counts_for("probe")
    assert isinstance(probe.received, metrics.Tally) and isinstance(probe.sent, metrics.Tally)
    closes = {}
    for code in ("1000", "1001", "1003", "1006", "1009", "1011", "other"):
        labels = {"endpoint": "probe", "code": code}
        closes[code] = REGISTRY.get_sample_value("starlette_ws_closes_total", labels) or 0.0
    return probe.received.pending, probe.sent.pending, closes


def closes_change(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {code: after[code] - before[code] for code in after if after[code] != before[code]}


@pytest.mark.anyio
async def test_text_is_echoed_and_counted_both_ways() -> None:
    received, sent, closes = counts()
    out = await play([text("a"), text("b"), disconnect(1000)])
    assert out == [{"type": "websocket.send", "text": "echo: a"}, {"type": "websocket.send", "text": "echo: b"}]
    after_received, after_sent, after_closes = counts()
    assert (after_received - received, after_sent - sent) == (2, 2)
    assert closes_change(closes, after_closes) == {"1000": 1}
    assert ProbeEndpoint.ended == [1000]


@pytest.mark.anyio
async def test_binary_closes_with_1003_and_what_follows_is_not_handled() -> None:
    _, _, closes = counts()
    out = await play([{"type": "websocket.receive", "bytes": b"\x00"}, text("late"), disconnect(1000)])
    assert out == [{"type": "websocket.close", "code": 1003, "reason": "Text frames only"}]
    assert ProbeEndpoint.handled == []
    assert closes_change(closes, counts()[2]) == {"1003": 1}


@pytest.mark.anyio
@pytest.mark.parametrize("data", ["x" * 101, "é" * 51])  # 101 bytes either way; 51 characters are under 100
async def test_a_text_over_the_size_limit_closes_with_1009(data: str) -> None:
    _, _, closes = counts()
    out = await play([text("x" * 100), text(data), text("late"), disconnect(1000)])
    assert out[0] == {"type": "websocket.send", "text": "echo: " + "x" * 100}
    assert out[1:] == [{"type": "websocket.close", "code": 1009, "reason": "Message over 100 bytes"}]
    assert ProbeEndpoint.handled == ["x" * 100]
    assert closes_change(closes, counts()[2]) == {"1009": 1}


@pytest.mark.anyio
async def test_a_handler_error_closes_with_1011_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    _, _, closes = counts()
    with caplog.at_level(logging.ERROR, logger="starlette_ws"):
        out = await play([text("boom"), text("late"), disconnect(1000)])
    assert out == [{"type": "websocket.close", "code": 1011, "reason": "Internal error"}]
    assert [record.getMessage() for record in caplog.records] == ["Error in ProbeEndpoint for /probe"]
    assert ProbeEndpoint.handled == ["boom"]
    assert closes_change(closes, counts()[2]) == {"1011": 1}


@pytest.mark.anyio
async def test_a_client_leaving_mid_stream_ends_the_loop_with_its_code() -> None:
    received, _, closes = counts()
    out = await play([text("a"), disconnect(1001), text("never read")])
    assert out == [{"type": "websocket.send", "text": "echo: a"}]
    assert counts()[0] - received == 1
    assert closes_change(closes, counts()[2]) == {"1001": 1}
    assert ProbeEndpoint.ended == [1001]


@pytest.mark.anyio
async def test_after_our_close_nothing_more_is_handled_but_it_is_counted() -> None:
    received, sent, closes = counts()
    out = await play([text("bye"), text("one"), text("two"), disconnect(4000)])
    assert out == [{"type": "websocket.close", "code": 4000, "reason": "bye"}]
    assert ProbeEndpoint.handled == ["bye"]
    after_received, after_sent, after_closes = counts()
    assert (after_received - received, after_sent - sent) == (3, 0)
    assert closes_change(closes, after_closes) == {"other": 1}


@pytest.mark.anyio
async def test_a_send_on_a_dropped_transport_ends_with_1006_quietly(caplog: pytest.LogCaptureFixture) -> None:
    _, sent, closes = counts()
    with caplog.at_level(logging.ERROR, logger="starlette_ws"):
        out = await play([text("a"), text("b"), disconnect(1006)], fail_sends=True)
    assert out == []  # no close frame for a client that is gone
    assert caplog.records == []
    assert ProbeEndpoint.handled == ["a"]
    assert counts()[1] == sent  # a send that failed is not counted
    assert closes_change(closes, counts()[2]) == {"1006": 1}


@pytest.mark.anyio
async def test_a_close_after_ours_sends_nothing_and_our_first_code_is_what_counts() -> None:
    _, _, closes = counts()
    out = await play([text("bye, then boom"), text("late"), disconnect(4000)])
    assert out == [{"type": "websocket.close", "code": 4000, "reason": "bye"}]  # no 1011 frame after it
    assert ProbeEndpoint.handled == ["bye, then boom"]
    assert closes_change(closes, counts()[2]) == {"other": 1}  # our 4000, not the 1011 that followed
