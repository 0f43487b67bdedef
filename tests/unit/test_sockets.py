"""`starlette_ws.sockets.CountedWebSocket`: Starlette's socket, counting what it sends, with a
short path for text while connected that fails as Starlette's does."""

from __future__ import annotations

import re

import pytest
from prometheus_client import REGISTRY
from starlette.types import Message
from starlette.websockets import WebSocketDisconnect, WebSocketState

from starlette_ws import metrics
from starlette_ws.sockets import GONE, CountedWebSocket
from tests.unit.fakes import FakeSend

pytestmark = pytest.mark.anyio
ENDPOINT = "unit_sockets"  # a label of this module's own


async def never() -> Message:
    raise AssertionError("nothing is received here")


def sent() -> float:
    return REGISTRY.get_sample_value("starlette_ws_messages_sent_total", {"endpoint": ENDPOINT}) or 0.0


def counted(send: FakeSend) -> CountedWebSocket:
    scope = {"type": "websocket", "path": "/", "headers": []}
    return CountedWebSocket(scope, never, send, metrics.MESSAGES_SENT.labels(endpoint=ENDPOINT))


async def accepted(send: FakeSend) -> CountedWebSocket:
    websocket = counted(send)
    websocket.client_state = WebSocketState.CONNECTED  # the client's handshake, as `receive` would have it
    await websocket.accept()
    return websocket


async def test_only_messages_to_the_client_are_counted() -> None:
    send = FakeSend()
    before = sent()
    websocket = await accepted(send)
    assert sent() == before  # the handshake is not a message
    await websocket.send_bytes(b"\x00")
    await websocket.send_json({"a": 1})
    await websocket.close(1000, "bye")
    assert [message["type"] for message in send.sent] == [
        "websocket.accept",
        "websocket.send",
        "websocket.send",
        "websocket.close",
    ]
    assert sent() == before + 2


async def test_send_text_while_connected_hands_the_server_the_message_and_counts_it() -> None:
    send = FakeSend()
    websocket = await accepted(send)
    before = sent()
    await websocket.send_text("hé")
    await websocket.send_text("")
    assert send.sent[1:] == [{"type": "websocket.send", "text": "hé"}, {"type": "websocket.send", "text": ""}]
    assert sent() == before + 2
    assert websocket.application_state is WebSocketState.CONNECTED


async def test_a_dropped_transport_is_a_1006_disconnect_and_the_socket_is_disconnected() -> None:
    send = FakeSend()
    websocket = await accepted(send)
    before = sent()
    send.error = ConnectionResetError("reset by peer")
    with pytest.raises(WebSocketDisconnect) as caught:
        await websocket.send_text("lost")
    assert caught.value.code == 1006
    assert caught.value.__suppress_context__  # raised `from None`: the transport's error says nothing more
    assert websocket.application_state is WebSocketState.DISCONNECTED
    assert sent() == before
    send.error = None
    with pytest.raises(RuntimeError):  # disconnected: Starlette's own path refuses any further send
        await websocket.send_text("after")
    assert send.texts == []


async def test_another_error_of_the_server_is_raised_as_it_is() -> None:
    send = FakeSend()
    websocket = await accepted(send)
    before = sent()
    send.error = RuntimeError("Unexpected ASGI message 'websocket.send', after sending 'websocket.close'")
    with pytest.raises(RuntimeError, match="Unexpected ASGI message"):
        await websocket.send_text("late")
    assert sent() == before
    assert isinstance(send.error, GONE)  # what the hub takes for a client that is gone


async def test_not_connected_it_takes_starlettes_path() -> None:
    send = FakeSend()
    websocket = counted(send)
    before = sent()
    before_handshake = re.escape('Expected ASGI message "websocket.accept"')
    with pytest.raises(RuntimeError, match=before_handshake):
        await websocket.send_text("early")
    websocket = await accepted(send)
    await websocket.close(1000, "bye")
    with pytest.raises(RuntimeError, match="once a close message has been sent"):
        await websocket.send_text("late")
    assert send.texts == [] and sent() == before
