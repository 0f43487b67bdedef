"""A member's connection against a fake ASGI send: inline, queued, bounded, closed, stopped."""

from __future__ import annotations

import anyio
import pytest
from starlette.websockets import WebSocketState

from starlette_ws.connection import CLOSED, CLOSING, TOO_SLOW, Connection, send_all
from starlette_ws.sockets import SEND_FRAME, CountedWebSocket, Text, text_frame
from tests.unit.fakes import FakeSend, never, others, settle, socket


def connection(send: FakeSend, max_bytes: int = 1000) -> tuple[Connection, list[Connection]]:
    gone: list[Connection] = []
    return Connection(socket(send), max_bytes, gone.append), gone


@pytest.mark.anyio
async def test_an_idle_connection_sends_inline_without_a_task() -> None:
    """Nothing here awaits, so nothing can hang: no time bound needed."""
    send = FakeSend()
    conn, _ = connection(send)
    assert conn.send_nowait(Text("a")) is False  # sent and counted by the ordinary send
    conn.send_text_nowait("b")
    assert send.texts == ["a", "b"]  # written before `deliver` returned
    assert not others()


@pytest.mark.anyio
async def test_a_send_that_suspends_is_finished_first_and_what_follows_queues_in_order() -> None:
    with anyio.fail_after(5):
        send = FakeSend()
        conn, _ = connection(send)
        send.pause()
        conn.send_text_nowait("a")  # starts, then waits for the client
        conn.send_text_nowait("b")
        conn.send_text_nowait("c")
        assert send.texts == ["a"] and conn.queued_bytes == 2
        assert len(others()) == 1  # the sender task that finishes "a", then sends the rest
        await settle()
        assert send.texts == ["a"]
        send.resume()
        await settle()
        assert send.texts == ["a", "b", "c"] and conn.queued_bytes == 0
        assert not others()  # the sender task ends once the outbox is empty
        conn.send_text_nowait("d")
        assert send.texts == ["a", "b", "c", "d"]  # inline again


@pytest.mark.anyio
async def test_a_client_past_its_outbox_bound_is_closed_1013_and_dropped() -> None:
    with anyio.fail_after(5):
        send = FakeSend()
        conn, gone = connection(send, max_bytes=10)
        send.pause()
        conn.send_text_nowait("a")
        conn.send_text_nowait("123456")
        conn.send_text_nowait("123456")  # 12 bytes waiting: over the bound
        assert conn.closed_with == 1013 and conn.state is CLOSED and gone == [conn]
        conn.send_text_nowait("after")
        send.resume()
        await settle()
        assert send.texts == ["a"]
        assert send.closes == [(1013, TOO_SLOW)]
        await conn.stop()
        assert not others()


@pytest.mark.anyio
async def test_a_message_larger_than_the_bound_is_not_sent_even_to_an_idle_client() -> None:
    with anyio.fail_after(5):
        send = FakeSend()
        conn, _ = connection(send, max_bytes=10)
        conn.send_text_nowait("x" * 11)
        await settle()
        assert send.texts == [] and send.closes == [(1013, TOO_SLOW)]


@pytest.mark.anyio
async def test_a_flushing_close_sends_what_is_queued_then_closes_but_one_without_flush_drops_it() -> None:
    with anyio.fail_after(5):
        sends = FakeSend(), FakeSend()
        flushed, flushed_gone = connection(sends[0])
        dropped, dropped_gone = connection(sends[1])
        for send, conn in zip(sends, (flushed, dropped), strict=True):
            send.pause()
            conn.send_text_nowait("a")
            conn.send_text_nowait("b")
        flushed.close(1000, "bye")
        dropped.close(1011, "stop", flush=False)
        flushed.send_text_nowait("too late")
        assert flushed.state is CLOSING and flushed_gone == []  # still a member until its close has gone
        assert dropped.state is CLOSED and dropped_gone == [dropped]  # left the hub at once
        assert (flushed.closed_with, dropped.closed_with) == (1000, 1011)
        for send in sends:
            send.resume()
        await settle()
        assert sends[0].texts == ["a", "b"] and sends[0].closes == [(1000, "bye")]
        assert sends[1].texts == ["a"] and sends[1].closes == [(1011, "stop")]
        assert flushed.state is CLOSED and flushed_gone == [flushed]
        await flushed.stop(grace=1)
        await dropped.stop()
        assert not others()


@pytest.mark.anyio
async def test_a_flushing_close_on_an_idle_connection_sends_the_close_from_a_task() -> None:
    with anyio.fail_after(5):
        send = FakeSend()
        conn, gone = connection(send)
        conn.close(1001, "going away")
        assert conn.state is CLOSING and send.closes == []  # the method never awaits
        await settle()
        assert send.closes == [(1001, "going away")] and conn.state is CLOSED and gone == [conn]
        assert not others()


@pytest.mark.anyio
async def test_a_closed_connection_starts_nothing_and_sends_nothing_more() -> None:
    """Once CLOSED (stopped, its send failed, or closed), no verb sends a frame or leaves a task."""

    with anyio.fail_after(5):
        send = FakeSend()
        conn, gone = connection(send)
        send.pause()
        conn.send_text_nowait("a")
        await conn.stop()
        conn.close(1011, "late", flush=False)
        conn.close(1000, "late")
        conn.send_text_nowait("late")
        await settle()
        assert send.texts == ["a"] and send.closes == [] and conn.closed_with is None
        assert conn.state is CLOSED and gone == [conn] and not others()

        send = FakeSend()
        conn, _ = connection(send)
        conn.close(1013, TOO_SLOW, flush=False)
        conn.close(1011, "again", flush=False)
        await settle()
        assert send.closes == [(1013, TOO_SLOW)] and conn.closed_with == 1013 and not others()


@pytest.mark.anyio
async def test_a_failed_send_drops_the_connection_inline_or_queued() -> None:
    with anyio.fail_after(5):
        send = FakeSend()
        conn, gone = connection(send)
        send.error = OSError("reset")
        conn.send_text_nowait("a")
        assert gone == [conn] and conn.state is CLOSED
        assert conn.websocket.application_state is WebSocketState.DISCONNECTED

        send = FakeSend()
        conn, gone = connection(send)
        send.pause()
        conn.send_text_nowait("a")
        conn.send_text_nowait("b")
        send.error = OSError("reset")
        send.resume()
        await settle()
        assert gone == [conn] and send.texts == ["a"]
        assert not others()


class Frames:
    """What our protocol offers through `SEND_FRAME`: takes frames while `taking`."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.taking = True

    def write_frame(self, frame: bytes) -> bool:
        if self.taking:
            self.frames.append(frame)
        return self.taking


class Count:
    def __init__(self) -> None:
        self.amounts: list[float] = []

    def inc(self, amount: float = 1) -> None:
        self.amounts.append(amount)


def direct(send: FakeSend, frames: Frames, count: Count, max_bytes: int = 1000) -> Connection:
    scope = {"type": "websocket", "path": "/", "headers": [], "extensions": {SEND_FRAME: frames}}
    websocket = CountedWebSocket(scope, never, send, count)
    websocket.client_state = websocket.application_state = WebSocketState.CONNECTED
    return Connection(websocket, max_bytes, lambda connection: None)


@pytest.mark.anyio
async def test_under_our_protocol_the_frame_built_once_goes_in_as_it_is_and_the_caller_counts_it() -> None:
    send, frames, count = FakeSend(), Frames(), Count()
    conn = direct(send, frames, count)
    text = Text("héllo")
    assert text.frame == text_frame("héllo") and text.size == 6
    assert conn.send_nowait(text, counted=False) is True
    assert frames.frames == [text.frame] and frames.frames[0] is text.frame  # the very bytes, no copy
    assert send.sent == [] and count.amounts == []  # not counted: the caller counts a broadcast at once
    conn.send_text_nowait("own")  # a message of its own counts itself
    assert frames.frames[1] == text_frame("own") and count.amounts == [1]
    frames.taking = False  # paused, closing, or deflate: the ordinary send, counted when it is done
    assert conn.send_nowait(Text("plain")) is False
    assert send.texts == ["plain"] and count.amounts == [1, 1]
    assert not others()


@pytest.mark.anyio
async def test_behind_a_queued_send_frames_wait_their_turn_in_the_outbox() -> None:
    with anyio.fail_after(5):
        send, frames, count = FakeSend(), Frames(), Count()
        conn = direct(send, frames, count)
        frames.taking = False
        send.pause()
        conn.send_text_nowait("a")  # suspends: a sender task finishes it
        frames.taking = True
        assert conn.send_nowait(Text("b")) is False  # queued behind "a", not written past it
        assert frames.frames == [] and conn.queued_bytes == 1
        send.resume()
        await settle()
        assert send.texts == ["a", "b"] and frames.frames == []
        assert conn.send_nowait(Text("c")) is True  # idle again: straight in
        await conn.stop()


@pytest.mark.anyio
async def test_a_frame_over_the_bound_is_never_taken_and_closes_with_1013() -> None:
    with anyio.fail_after(5):
        send, frames, count = FakeSend(), Frames(), Count()
        conn = direct(send, frames, count, max_bytes=4)
        assert conn.send_nowait(Text("12345")) is False
        assert frames.frames == [] and conn.state is CLOSED
        await settle()
        assert send.closes == [(1013, TOO_SLOW)]


@pytest.mark.anyio
async def test_a_broadcast_is_counted_once_for_the_members_that_took_it_directly() -> None:
    with anyio.fail_after(5):
        count = Count()
        taking, refusing = Frames(), Frames()
        refusing.taking = False
        members = [direct(FakeSend(), taking, count), direct(FakeSend(), taking, count)]
        members.append(direct(FakeSend(), refusing, count))
        send_all(members, Text("hi"))
        assert len(taking.frames) == 2 and count.amounts == [1, 2]  # the ordinary send counts its own
        for member in members:
            await member.stop()
