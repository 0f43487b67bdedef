"""`starlette_ws.members.MemberEndpoint`: once it has joined, its close goes out through the hub,
behind what the hub queued; a close the hub made (a slow client) is the one it reports."""

from __future__ import annotations

import anyio
import pytest
from starlette.applications import Starlette
from starlette.websockets import WebSocket

from starlette_ws.app import create_app
from starlette_ws.backends import MessageTooLarge
from starlette_ws.connection import CLOSED, TOO_SLOW
from starlette_ws.deny import MAX_REASON_BYTES
from starlette_ws.history import HistoryError
from starlette_ws.hubs import Hubs
from starlette_ws.members import MemberEndpoint
from starlette_ws.settings import Settings
from tests.unit.fakes import FakeSend, never, settle, socket

pytestmark = pytest.mark.anyio


def admitted(app: Starlette, send: FakeSend) -> tuple[MemberEndpoint, WebSocket]:
    websocket = socket(send, app=app)
    endpoint = MemberEndpoint(websocket.scope, never, send)
    assert endpoint.admit(websocket, {"client_id": 1}) == []
    return endpoint, websocket


async def joined(app: Starlette, send: FakeSend) -> tuple[MemberEndpoint, WebSocket]:
    endpoint, websocket = admitted(app, send)
    hubs: Hubs = app.state.hubs
    endpoint.hub = await hubs.acquire()
    endpoint.connection = await endpoint.hub.join("chat", websocket)
    return endpoint, websocket


async def test_its_close_goes_out_behind_what_the_hub_queued_then_it_leaves() -> None:
    with anyio.fail_after(5):
        send = FakeSend()
        endpoint, websocket = await joined(create_app(Settings()), send)
        assert endpoint.connection is not None and endpoint.hub is not None
        send.pause()
        endpoint.connection.send_text_nowait("a")
        endpoint.connection.send_text_nowait("b")
        await endpoint.close(websocket, 1000, "bye")  # queued: it does not wait for the client
        assert endpoint.closed_with == 1000 and send.closes == []
        send.resume()
        await settle()
        assert send.texts == ["a", "b"] and send.closes == [(1000, "bye")]
        assert endpoint.close_code(1005) == 1000
        hub = endpoint.hub
        await endpoint.on_disconnect(websocket, 1000)
        assert endpoint.connection.state is CLOSED and not hub.listening  # left, and its hub stopped


async def test_before_it_joins_its_close_goes_straight_to_the_socket() -> None:
    with anyio.fail_after(5):
        send = FakeSend()
        endpoint, websocket = admitted(create_app(Settings()), send)
        await endpoint.close(websocket, 1008, "refused")
        await endpoint.close(websocket, 1011, "again")  # the socket is closed: nothing more goes
        assert send.closes == [(1008, "refused")] and endpoint.closed_with == 1008
        await endpoint.on_disconnect(websocket, 1008)  # it never joined: nothing to leave


async def test_a_client_the_hub_closed_for_being_slow_is_reported_as_1013() -> None:
    with anyio.fail_after(5):
        send = FakeSend()
        endpoint, websocket = await joined(create_app(Settings(send_queue_bytes=10)), send)
        assert endpoint.connection is not None
        assert endpoint.close_code(1006) == 1006  # nobody closed it: what the client reported
        send.pause()
        endpoint.connection.send_text_nowait("a")
        endpoint.connection.send_text_nowait("x" * 11)
        send.resume()
        await settle()
        assert send.closes == [(1013, TOO_SLOW)]
        assert endpoint.closed_with is None and endpoint.close_code(1006) == 1013
        await endpoint.on_disconnect(websocket, 1006)


async def test_a_flood_is_closed_1008_with_the_limit_through_the_hub() -> None:
    with anyio.fail_after(5):
        send = FakeSend()
        endpoint, websocket = await joined(create_app(Settings(chat_rate_per_second=2, chat_rate_burst=3)), send)
        assert endpoint.connection is not None
        send.pause()
        endpoint.connection.send_text_nowait("queued")
        await endpoint.flooded(websocket)
        assert send.closes == []
        send.resume()
        await settle()
        assert send.texts == ["queued"] and send.closes == [(1008, "Rate limit: 2 messages/s, bursts of 3")]
        assert endpoint.close_code(1000) == 1008  # its own close: whatever the client says after
        await endpoint.on_disconnect(websocket, 1000)


@pytest.mark.parametrize("why", ["short", "x" * 300, "é" * 100])
async def test_a_line_too_large_for_the_engine_is_closed_1009_with_why_cut_to_fit(why: str) -> None:
    with anyio.fail_after(5):
        send = FakeSend()
        endpoint, websocket = await joined(create_app(Settings()), send)
        await endpoint.too_large(websocket, MessageTooLarge(why))
        await settle()
        ((code, reason),) = send.closes
        assert code == 1009 and why.startswith(reason) and reason
        assert len(reason.encode()) <= MAX_REASON_BYTES
        await endpoint.on_disconnect(websocket, 1009)


async def joined_as(kind: type[MemberEndpoint]) -> tuple[MemberEndpoint, WebSocket]:
    """An endpoint of `kind` admitted as client 1 and joined to the chat of a new app."""
    app, send = create_app(Settings()), FakeSend()
    websocket = socket(send, app=app)
    endpoint = kind(websocket.scope, never, send)
    endpoint.admit(websocket, {"client_id": 1})
    endpoint.hub = await app.state.hubs.acquire()
    endpoint.connection = await endpoint.hub.join("chat", websocket)
    return endpoint, websocket


class Goodbye(MemberEndpoint):
    """Notes what it finds when it says goodbye."""

    found: tuple[object, bool] | None = None

    async def on_leave(self) -> None:
        assert self.connection is not None and self.hub is not None
        self.found = (self.connection.state, self.hub.listening)


async def test_the_goodbye_comes_after_leaving_the_channel_and_before_the_hub_is_released() -> None:
    with anyio.fail_after(5):
        endpoint, websocket = await joined_as(Goodbye)
        hub = endpoint.hub
        assert hub is not None
        await endpoint.on_disconnect(websocket, 1000)
        assert isinstance(endpoint, Goodbye) and endpoint.found == (CLOSED, True)
        assert not hub.listening and len(hub) == 0


class FailingGoodbye(MemberEndpoint):
    """A goodbye that meets an engine error."""

    async def on_leave(self) -> None:
        raise HistoryError("Redis at 127.0.0.1:1 does not answer")


async def test_a_goodbye_that_fails_still_releases_the_hub() -> None:
    """Without the lifespan the hub stops with its last connection: an error in the goodbye must
    not keep it (and its engine connections) alive."""
    with anyio.fail_after(5):
        endpoint, websocket = await joined_as(FailingGoodbye)
        hub = endpoint.hub
        assert hub is not None
        with pytest.raises(HistoryError):
            await endpoint.on_disconnect(websocket, 1000)
        assert not hub.listening  # released: stopped with its last user
