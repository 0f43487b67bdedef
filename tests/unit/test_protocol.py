"""`starlette_ws.protocol`'s lighter idle connection, in process: the `Inbox` that stands in for
uvicorn's `asyncio.Queue`, and a handshake that leaves no request or response behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode

from starlette_ws.protocol import FrameCache, Inbox, WebSocketProtocol, text_frame
from starlette_ws.protocol_ws import PING_BURST, TOO_MANY_PINGS
from starlette_ws.sockets import SEND_FRAME

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
HELLO = bytes([0x81, 0x85, 0, 0, 0, 0]) + b"hello"  # a masked text frame (zero key)
HIGH_WATER = 65536


@pytest.mark.anyio
async def test_inbox_hands_out_messages_in_order_and_wakes_a_waiting_reader() -> None:
    with anyio.fail_after(5):
        inbox = Inbox()
        assert inbox.empty()
        reader = asyncio.create_task(inbox.get())
        await asyncio.sleep(0)
        assert not reader.done()
        inbox.put_nowait({"type": "websocket.connect"})
        inbox.put_nowait({"type": "websocket.receive", "text": "a"})
        assert await reader == {"type": "websocket.connect"}
        assert not inbox.empty()
        assert await inbox.get() == {"type": "websocket.receive", "text": "a"}
        assert inbox.empty()


@pytest.mark.anyio
async def test_inbox_reader_cancelled_while_waiting_leaves_it_usable() -> None:
    with anyio.fail_after(5):
        inbox = Inbox()
        reader = asyncio.create_task(inbox.get())
        await asyncio.sleep(0)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        assert await inbox.get() == {"type": "websocket.disconnect", "code": 1000}


@pytest.mark.anyio
async def test_inbox_refuses_a_second_reader_while_one_waits() -> None:
    with anyio.fail_after(5):
        inbox = Inbox()
        first = asyncio.create_task(inbox.get())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already waiting"):
            await inbox.get()
        inbox.put_nowait({"type": "websocket.connect"})
        assert await first == {"type": "websocket.connect"}


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.writes = 0  # write calls: system calls, on a real socket
        self.closing = False
        self.wrote = asyncio.Event()

    def write(self, data: Any) -> None:
        self.written += data
        self.writes += 1
        self.wrote.set()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return HIGH_WATER // 4, HIGH_WATER

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.mark.anyio
async def test_an_accepted_connection_keeps_neither_handshake_request_nor_response() -> None:
    received: asyncio.Queue[Any] = asyncio.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        received.put_nowait(await receive())
        await send({"type": "websocket.close", "code": 1000})

    with anyio.fail_after(5):
        config = Config(app=app, ws=WebSocketProtocol, log_config=None)
        config.load()
        protocol = WebSocketProtocol(config, ServerState(), {})
        transport = Transport()
        protocol.connection_made(transport)
        protocol.data_received(HANDSHAKE)
        await transport.wrote.wait()  # uvicorn answers the handshake in one write
        assert transport.written.startswith(b"HTTP/1.1 101")
        assert protocol.request is None and protocol.response is None
        assert isinstance(protocol.queue, Inbox)
        protocol.data_received(HELLO)
        assert await received.get() == {"type": "websocket.receive", "text": "hello"}
        protocol.connection_lost(None)


@pytest.mark.parametrize("text", ["", "a", "é" * 62, "x" * 125, "x" * 126, "€" * 21845, "x" * 65535, "x" * 65536])
def test_text_frame_is_the_frame_websockets_writes(text: str) -> None:
    assert text_frame(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])


def test_frame_cache_builds_a_frame_once_per_text_object() -> None:
    cache = FrameCache()
    text = "".join(["hel", "lo"])
    first = cache.text(text)
    assert cache.text(text) is first  # the same message again: the same frame
    other = cache.text("".join(["hel", "lo"]))  # equal text, another object: built again, identical
    assert other == first and other is not first


class Accepted:
    """A WebSocketProtocol over a fake transport, after the handshake, the app waiting for sends."""

    def __init__(self, deflate: bool) -> None:
        self.sends: asyncio.Queue[Any] = asyncio.Queue()
        self.done: asyncio.Queue[None] = asyncio.Queue()
        config = Config(
            self.app, ws=WebSocketProtocol, log_config=None, ws_per_message_deflate=deflate, interface="asgi3"
        )
        config.load()
        self.protocol = WebSocketProtocol(config, ServerState(), {})
        self.transport = Transport()
        self.protocol.connection_made(self.transport)

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        self.send_frame = scope["extensions"][SEND_FRAME].write_frame
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            await send(await self.sends.get())
            self.done.put_nowait(None)

    async def open(self, extensions: bytes = b"") -> None:
        self.protocol.data_received(HANDSHAKE[:-2] + extensions + b"\r\n")
        await self.transport.wrote.wait()
        assert self.transport.written.startswith(b"HTTP/1.1 101")
        self.transport.written.clear()
        self.transport.writes = 0
        self.transport.wrote.clear()

    async def send(self, message: Any) -> bytes:
        self.sends.put_nowait(message)
        await self.done.get()
        written = bytes(self.transport.written)
        self.transport.written.clear()
        return written


@pytest.mark.anyio
async def test_a_text_message_is_written_as_one_plain_frame() -> None:
    with anyio.fail_after(5):
        accepted = Accepted(deflate=False)
        await accepted.open()
        message = {"type": "websocket.send", "text": "hello"}
        assert await accepted.send(message) == text_frame("hello")
        assert await accepted.send(message) == text_frame("hello")
        assert await accepted.send({"type": "websocket.send", "bytes": b"\x01"}) == b"\x82\x01\x01"
        accepted.protocol.connection_lost(None)


@pytest.mark.anyio
async def test_with_deflate_negotiated_text_goes_through_websockets_compressed() -> None:
    with anyio.fail_after(5):
        accepted = Accepted(deflate=True)
        await accepted.open(b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
        written = await accepted.send({"type": "websocket.send", "text": "hello " * 20})
        assert written[0] == 0xC1  # FIN, RSV1 (compressed), text
        assert len(written) < len(text_frame("hello " * 20))
        accepted.protocol.connection_lost(None)


@pytest.mark.anyio
async def test_while_the_transport_is_paused_a_send_waits_and_writes_nothing() -> None:
    with anyio.fail_after(5):
        accepted = Accepted(deflate=False)
        await accepted.open()
        accepted.protocol.pause_writing()
        accepted.sends.put_nowait({"type": "websocket.send", "text": "later"})
        await asyncio.sleep(0.05)
        assert accepted.transport.written == b"" and accepted.done.empty()
        accepted.protocol.resume_writing()
        await accepted.done.get()
        assert bytes(accepted.transport.written) == text_frame("later")
        accepted.protocol.connection_lost(None)


@pytest.mark.anyio
async def test_frames_of_one_loop_iteration_go_out_in_one_write_at_its_end_in_order() -> None:
    with anyio.fail_after(5):
        accepted = Accepted(deflate=False)
        await accepted.open()
        transport, send_frame = accepted.transport, accepted.send_frame
        assert all(send_frame(text_frame(text)) for text in ("a", "b", "c"))
        assert transport.writes == 0 and accepted.protocol.transport.get_write_buffer_size() == 9
        await asyncio.sleep(0)  # the end of this iteration
        assert bytes(transport.written) == text_frame("a") + text_frame("b") + text_frame("c")
        assert transport.writes == 1
        accepted.protocol.connection_lost(None)


@pytest.mark.anyio
async def test_an_ordinary_send_or_a_close_goes_after_the_frames_already_taken() -> None:
    with anyio.fail_after(5):
        accepted = Accepted(deflate=False)
        await accepted.open()
        transport, send_frame = accepted.transport, accepted.send_frame
        assert send_frame(text_frame("first"))
        accepted.protocol.data_received(bytes([0x89, 0x80, 0, 0, 0, 0]) * 3)  # pings: pongs after the frame
        assert transport.writes == 0
        await asyncio.sleep(0)
        assert bytes(transport.written) == text_frame("first") + b"\x8a\x00" * 3
        assert transport.writes == 1  # joined: no system call per pong
        transport.written.clear()
        assert send_frame(text_frame("second"))
        accepted.sends.put_nowait({"type": "websocket.send", "bytes": b"\x01"})  # the app's own send
        await accepted.done.get()
        assert bytes(transport.written) == text_frame("second") + b"\x82\x01\x01"
        transport.written.clear()
        assert send_frame(text_frame("last"))
        accepted.sends.put_nowait({"type": "websocket.close", "code": 1000})
        await accepted.done.get()
        assert bytes(transport.written) == text_frame("last") + b"\x88\x02\x03\xe8"
        assert not send_frame(text_frame("after the close"))
        await asyncio.sleep(0)
        assert bytes(transport.written).endswith(b"\x88\x02\x03\xe8")
        accepted.protocol.connection_lost(None)


@pytest.mark.anyio
async def test_past_the_high_water_mark_the_frames_are_written_at_once_and_flow_control_follows() -> None:
    with anyio.fail_after(5):
        accepted = Accepted(deflate=False)
        await accepted.open()
        transport, send_frame, protocol = accepted.transport, accepted.send_frame, accepted.protocol
        frame = text_frame("x" * 1000)
        taken = 0
        while transport.writes == 0:
            assert send_frame(frame)
            taken += 1
        assert taken == -(-HIGH_WATER // len(frame))  # written the moment it reached the mark
        assert len(transport.written) == taken * len(frame)
        protocol.pause_writing()  # what the transport says when the client does not keep up
        assert not send_frame(frame)  # the caller sends the ordinary way, which waits
        protocol.resume_writing()
        assert send_frame(frame)
        protocol.connection_lost(None)
        assert not send_frame(frame)
        await asyncio.sleep(0)
        assert len(transport.written) == taken * len(frame)  # a lost connection is written nothing more


@pytest.mark.anyio
async def test_with_deflate_negotiated_frames_are_refused_and_take_the_ordinary_send() -> None:
    with anyio.fail_after(5):
        accepted = Accepted(deflate=True)
        await accepted.open(b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
        assert not accepted.send_frame(text_frame("hello"))
        await asyncio.sleep(0)
        assert accepted.transport.writes == 0
        accepted.protocol.connection_lost(None)


@pytest.mark.anyio
async def test_a_closing_transport_writes_what_it_was_given_first_and_an_abort_drops_it() -> None:
    with anyio.fail_after(5):
        accepted = Accepted(deflate=False)
        await accepted.open()
        lingering = accepted.protocol.transport
        assert accepted.send_frame(text_frame("bye"))
        lingering.close()
        assert bytes(accepted.transport.written) == text_frame("bye") and accepted.transport.closing
        accepted.protocol.connection_lost(None)
        other = Accepted(deflate=False)
        await other.open()
        assert other.send_frame(text_frame("never"))
        other.protocol.transport.abort()
        await asyncio.sleep(0)
        assert other.transport.written == b"" and other.transport.closing
        other.protocol.connection_lost(None)


@pytest.mark.anyio
async def test_a_client_that_floods_pings_is_closed_with_1008_after_its_burst() -> None:
    with anyio.fail_after(5):
        accepted = Accepted(deflate=False)
        await accepted.open()
        ping = bytes([0x89, 0x80, 0, 0, 0, 0])
        accepted.protocol.data_received(ping * PING_BURST)  # a burst of pings: all answered
        await asyncio.sleep(0)
        assert bytes(accepted.transport.written) == b"\x8a\x00" * PING_BURST
        accepted.transport.written.clear()
        accepted.protocol.data_received(ping * 3)  # the burst is spent: closed, no more pongs
        reason = TOO_MANY_PINGS.encode()
        assert bytes(accepted.transport.written) == bytes([0x88, 2 + len(reason), 0x03, 0xF0]) + reason
        assert accepted.transport.closing
        accepted.protocol.connection_lost(None)


EMPTY_CLOSE = bytes([0x88, 0x80, 0, 0, 0, 0])  # a masked close frame without a code
GOING_AWAY = bytes([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE9])  # a masked close frame, code 1001


def lose(exc: Exception | None) -> Callable[[WebSocketProtocol], None]:
    def end(protocol: WebSocketProtocol) -> None:
        protocol.connection_lost(exc)

    return end


def close_then_lose(frame: bytes) -> Callable[[WebSocketProtocol], None]:
    def end(protocol: WebSocketProtocol) -> None:
        protocol.data_received(frame)
        protocol.connection_lost(None)

    return end


@pytest.mark.parametrize(
    ("end", "code"),
    [
        (lose(None), 1006),
        (lose(ConnectionResetError("reset by peer")), 1006),
        (close_then_lose(EMPTY_CLOSE), 1005),
        (close_then_lose(GOING_AWAY), 1001),
    ],
    ids=["eof without close frame", "reset without close frame", "close frame without code", "close 1001"],
)
@pytest.mark.anyio
async def test_the_app_hears_1006_for_a_lost_connection_and_the_client_code_for_a_close_frame(
    end: Callable[[WebSocketProtocol], None], code: int
) -> None:
    """uvicorn 0.54 tells the app 1005 ("no code given") when an accepted connection just drops."""
    received: asyncio.Queue[Any] = asyncio.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        received.put_nowait(await receive())

    with anyio.fail_after(5):
        config = Config(app=app, ws=WebSocketProtocol, log_config=None)
        config.load()
        protocol = WebSocketProtocol(config, ServerState(), {})
        transport = Transport()
        protocol.connection_made(transport)
        protocol.data_received(HANDSHAKE)
        await transport.wrote.wait()
        end(protocol)
        message = await received.get()
    assert (message["type"], message["code"]) == ("websocket.disconnect", code)
