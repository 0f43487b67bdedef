"""The hub's delivery path against a fake ASGI send: inline, queued, bounded, closed, stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketState

from starlette_ws.backends import Event
from starlette_ws.hub import TOO_SLOW, Connection, Hub, opened, seal


class FakeSend:
    """An ASGI send that, like uvicorn's, writes at once and waits only while the client is paused."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.paused: asyncio.Future[None] | None = None
        self.error: Exception | None = None

    async def __call__(self, message: Message) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append(message)
        if self.paused is not None:
            await self.paused

    def pause(self) -> None:
        self.paused = asyncio.get_running_loop().create_future()

    def resume(self) -> None:
        assert self.paused is not None
        self.paused.set_result(None)
        self.paused = None

    @property
    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]

    @property
    def closes(self) -> list[tuple[int, str]]:
        return [(m["code"], m["reason"]) for m in self.sent if m["type"] == "websocket.close"]


def socket(send: FakeSend) -> WebSocket:
    async def receive() -> Message:
        await asyncio.Event().wait()
        raise AssertionError

    websocket = WebSocket({"type": "websocket", "path": "/", "headers": []}, receive, send)
    websocket.client_state = websocket.application_state = WebSocketState.CONNECTED
    return websocket


def connection(send: FakeSend, max_bytes: int = 1000) -> tuple[Connection, list[Connection]]:
    gone: list[Connection] = []
    return Connection(socket(send), max_bytes, gone.append), gone


def message(text: str) -> Message:
    return {"type": "websocket.send", "text": text}


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def others() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(5):
            await test()

    asyncio.run(bounded())


def test_an_idle_connection_sends_inline_without_a_task() -> None:
    async def main() -> None:
        send = FakeSend()
        conn, _ = connection(send)
        conn.deliver(message("a"), 1)
        conn.send("b")
        assert send.texts == ["a", "b"]  # written before `deliver` returned
        assert not others()

    run(main)


def test_a_send_that_suspends_is_finished_first_and_what_follows_queues_in_order() -> None:
    async def main() -> None:
        send = FakeSend()
        conn, _ = connection(send)
        send.pause()
        conn.send("a")  # starts, then waits for the client
        conn.send("b")
        conn.send("c")
        assert send.texts == ["a"] and conn.queued_bytes == 2
        await settle()
        assert send.texts == ["a"]
        send.resume()
        await settle()
        assert send.texts == ["a", "b", "c"] and conn.queued_bytes == 0
        assert not others()  # the sender task ends once the outbox is empty
        conn.send("d")
        assert send.texts == ["a", "b", "c", "d"]  # inline again

    run(main)


def test_a_client_past_its_outbox_bound_is_closed_1013_and_dropped() -> None:
    async def main() -> None:
        send = FakeSend()
        conn, gone = connection(send, max_bytes=10)
        send.pause()
        conn.send("a")
        conn.send("123456")
        conn.send("123456")  # 12 bytes waiting: over the bound
        assert conn.aborted_with == 1013 and not conn.open and gone == [conn]
        conn.send("after")
        send.resume()
        await settle()
        assert send.texts == ["a"]
        assert send.closes == [(1013, TOO_SLOW)]
        await conn.discard()
        assert not others()

    run(main)


def test_a_message_larger_than_the_bound_is_not_sent_even_to_an_idle_client() -> None:
    async def main() -> None:
        send = FakeSend()
        conn, _ = connection(send, max_bytes=10)
        conn.send("x" * 11)
        await settle()
        assert send.texts == [] and send.closes == [(1013, TOO_SLOW)]

    run(main)


def test_finish_sends_what_is_queued_then_closes_but_abort_drops_it() -> None:
    async def main() -> None:
        sends = FakeSend(), FakeSend()
        finished, _ = connection(sends[0])
        aborted, _ = connection(sends[1])
        for send, conn in zip(sends, (finished, aborted), strict=True):
            send.pause()
            conn.send("a")
            conn.send("b")
        finished.finish(1000, "bye")
        aborted.abort(1011, "stop")
        finished.send("too late")
        for send in sends:
            send.resume()
        await settle()
        assert sends[0].texts == ["a", "b"] and sends[0].closes == [(1000, "bye")]
        assert sends[1].texts == ["a"] and sends[1].closes == [(1011, "stop")]
        await finished.discard(grace=1)
        await aborted.discard()
        assert not others()

    run(main)


def test_a_failed_send_drops_the_connection_inline_or_queued() -> None:
    async def main() -> None:
        send = FakeSend()
        conn, gone = connection(send)
        send.error = OSError("reset")
        conn.send("a")
        assert gone == [conn] and not conn.open
        assert conn.websocket.application_state is WebSocketState.DISCONNECTED

        send = FakeSend()
        conn, gone = connection(send)
        send.pause()
        conn.send("a")
        conn.send("b")
        send.error = OSError("reset")
        send.resume()
        await settle()
        assert gone == [conn] and send.texts == ["a"]
        assert not others()

    run(main)


class FakeBackend:
    """What was published, delivered only when the test says so."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.subscribing: asyncio.Future[None] | None = None

    @property
    def listening(self) -> bool:
        return True

    async def connect(self) -> None:
        pass

    async def disconnect(self) -> None:
        pass

    async def subscribe(self, channel: str) -> None:
        if self.subscribing is not None:
            await self.subscribing

    async def unsubscribe(self, channel: str) -> None:
        pass

    async def publish(self, channel: str, message: str) -> None:
        self.published.append((channel, message))

    async def next_published(self) -> Event:
        return await self.events.get()

    def deliver(self, index: int) -> None:
        self.events.put_nowait(Event(*self.published[index]))


def test_a_join_cancelled_while_subscribing_leaves_nothing() -> None:
    async def main() -> None:
        backend = FakeBackend()
        hub = Hub(backend, 1000)
        await hub.start()
        helpers = others()
        backend.subscribing = asyncio.get_running_loop().create_future()
        join = asyncio.create_task(hub.join("chat", socket(FakeSend())))
        await settle()
        join.cancel()
        await settle()
        assert others() == helpers  # no sender task left behind
        assert hub._channels == {} and len(hub) == 0
        await hub.stop()

    run(main)


def test_own_copy_is_matched_by_identity_not_text() -> None:
    """Two connections with the same client id send the same text: neither copy frees the other."""

    async def main() -> None:
        backend = FakeBackend()
        hub = Hub(backend, 1000)
        await hub.start()
        sends = FakeSend(), FakeSend()
        one = await hub.join("chat", socket(sends[0]))
        two = await hub.join("chat", socket(sends[1]))
        first = asyncio.create_task(hub.broadcast(one, "chat", "Client #1 says: hi"))
        await settle()
        second = asyncio.create_task(hub.broadcast(two, "chat", "Client #1 says: hi"))
        await settle()
        backend.deliver(1)  # the second connection's copy comes back first
        await settle()
        assert second.done() and not first.done()
        backend.deliver(0)
        await settle()
        assert first.done()
        for send in sends:  # clients get the plain text, once per publish
            assert send.texts == ["Client #1 says: hi", "Client #1 says: hi"]
        await hub.stop()
        assert not others()

    run(main)


def test_stop_ends_every_sender_even_one_waiting_for_its_client() -> None:
    async def main() -> None:
        hub = Hub(FakeBackend(), 1000)
        await hub.start()
        send = FakeSend()
        conn = await hub.join("chat", socket(send))
        send.pause()
        conn.send("a")
        conn.send("b")
        await hub.stop()
        assert not others() and not conn.open and len(hub) == 0
        assert send.texts == ["a"]

    run(main)


def test_the_envelope_is_fixed_size_and_only_a_hub_header_is_stripped() -> None:
    payload = seal("0123456789abcdef", 1, "Client #1 says: hi")
    tag, text = opened(payload)
    assert len(payload.encode()) - len(text.encode()) == 32
    assert (tag, text) == ("0123456789abcdef:00000000000001", "Client #1 says: hi")
    assert opened("Client #1 says: hi") == ("", "Client #1 says: hi")
