"""A member's connection: its writer, its outbox and its lifecycle.

Each message goes straight into the client's socket, or waits in the outbox. A connection with
nothing queued and no send under way sends inline (`Connection.send_nowait`): under our protocol
the message's frame, built once for every member (`sockets.Text`), is handed to it as it is and joins the
connection's other frames of the loop iteration in one write (`sockets.SEND_FRAME`); elsewhere the
ordinary ASGI send runs until it first suspends. Only a send that has to wait for the client (its
transport is paused) leaves a sender task to finish it, and what comes next queues behind it. An
outbox that would pass its byte bound closes the connection with 1013; a send that fails closes
it; nothing here awaits another client's socket.

A `Connection` only moves forward, OPEN -> CLOSING -> CLOSED, and none of its verbs but `stop`
awaits:

    send_nowait, send_text_nowait   OPEN: send now or queue; anything else: ignored
    close(code, reason)             OPEN -> CLOSING: the close frame goes after what is queued
                                    (and the copies of its own broadcasts still on their way),
                                    then CLOSED
    close(code, reason, flush=False)
                                    -> CLOSED: the queue is dropped, the close frame goes as soon
                                    as the socket takes it (a slow client, a removed member)
    await stop(grace)               -> CLOSED: its tasks end (CLOSING: after `grace` s to flush)

Every way there (a failed send included) goes through `_closed`, which drops the queue (and what
waits behind a copy of its own broadcast), and tells the hub (`on_closed`) once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

from starlette import status
from starlette.websockets import WebSocket, WebSocketState

from starlette_ws import metrics
from starlette_ws.sockets import GONE, CountedWebSocket, FrameWriter, Text

logger = logging.getLogger("starlette_ws.hub")

TOO_SLOW = "Try again later: not reading fast enough"


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


class Started:
    """A send that `Connection.send_nowait` started inline and that suspended: the sender task finishes it.

    Python 3.11 has no eager tasks, so the send is stepped by hand (`coroutine.send(None)`) until
    it first suspends. What it yielded then (the future it waits on, e.g. the transport draining)
    is handed to the task machinery here, and the coroutine is driven on exactly as if the task
    had started it: results and exceptions (a cancellation) go into it, its yields come out.
    """

    __slots__ = ("_coroutine", "_yielded")

    def __init__(self, coroutine: Generator[Any, Any, None], yielded: Any) -> None:
        self._coroutine = coroutine
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        coroutine, yielded = self._coroutine, self._yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:
                try:
                    yielded = coroutine.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    yielded = coroutine.send(sent)
                except StopIteration:
                    return

    def close(self) -> None:
        """Drop a send that will never be finished."""
        self._coroutine.close()


class ConnectionState(enum.Enum):
    OPEN = "open"  # sends what it is given
    CLOSING = "closing"  # a close waits behind what was queued; nothing new is taken
    CLOSED = "closed"  # sends nothing more and has left the hub (its close frame may still be going out)


OPEN = ConnectionState.OPEN
CLOSING, CLOSED = ConnectionState.CLOSING, ConnectionState.CLOSED


class Connection:
    __slots__ = (
        "_behind",
        "_closer",
        "_closing",
        "_count_sent",
        "_frames",
        "_on_closed",
        "_outbox",
        "_queued_bytes",
        "_send",
        "_sender",
        "channel",
        "closed_with",
        "max_bytes",
        "publishing",
        "state",
        "websocket",
    )

    def __init__(
        self, websocket: WebSocket, max_bytes: int, on_closed: Callable[[Connection], None], channel: str = ""
    ) -> None:
        self.websocket = websocket
        self.channel = channel  # the one channel it is a member of
        # The endpoints' socket hands over the ASGI send itself and its sent count: Starlette's
        # `WebSocket.send` checks its state on every call, and this connection keeps that state
        # itself (nothing is sent unless it is OPEN). Any other socket is sent to as it is.
        self._frames: FrameWriter | None = None
        if isinstance(websocket, CountedWebSocket):
            self._send, self._count_sent = websocket.send_to_server, websocket.count_sent
            self._frames = websocket.frames
        else:
            self._send, self._count_sent = websocket.send, _nothing
        self.max_bytes = max_bytes
        self.state = OPEN
        self.closed_with: int | None = None  # the code of the close frame it sends, once asked to close
        self._on_closed = on_closed
        self._outbox: deque[Text | Close] | None = None  # made when first needed: most never are
        self._queued_bytes = 0
        self._sender: asyncio.Task[None] | None = None  # runs while a send waits or the outbox is not empty
        self._closer: asyncio.Task[None] | None = None  # sends the close frame of a close without flush
        # a close after the queue that waits for copies still on their way, and a future done once
        # they are in (the sender task waits on it)
        self._closing: tuple[Close, asyncio.Future[None]] | None = None
        # the own copies of its broadcasts still on their way, in order, each with the messages of
        # its own it was given since (they go after that copy): made when first needed
        self._behind: deque[tuple[str, list[Text]]] | None = None
        self.publishing: asyncio.Task[bool] | None = None  # this client's latest broadcast

    def send_text_nowait(self, text: str) -> None:
        """Send a message of this client's own, in order with everything else it is sent (after
        the copy of its broadcast still on its way, if one is: see `expect`)."""
        if self._behind:
            if self.state is OPEN:
                self._behind[-1][1].append(Text(text))
            return
        self.send_nowait(Text(text))

    def send_nowait(self, text: Text, *, closing: bool = False, counted: bool = True) -> bool:
        """Send a message now if this connection is idle, else queue it.

        Idle (nothing queued, no send under way), its frame goes to our protocol as it is, or the
        ASGI send runs here until it first suspends; uvicorn's suspends only while the client is
        not reading, so nearly every message is written right away, with no task switch. A send
        that suspends is finished by the sender task, and whatever follows waits in the outbox
        until it has. True: the frame was taken directly (and counted, unless `counted` is false:
        `send_all` counts a broadcast once). `closing`: CLOSING takes it too.
        """
        if self.state is not OPEN and not (closing and self.state is CLOSING):
            return False
        if self._queued_bytes + text.size > self.max_bytes:  # a message larger than the bound never goes
            metrics.CHAT_SLOW_CLIENTS.inc()
            self.close(status.WS_1013_TRY_AGAIN_LATER, TOO_SLOW, flush=False)
            return False
        if self._sender is None:
            frames = self._frames
            if frames is not None and frames.write_frame(text.frame):
                if counted:
                    self._count_sent()
                return True
            sending = self._send(text.message).__await__()  # any awaitable; for a coroutine, itself in effect
            try:
                yielded = sending.send(None)
            except StopIteration:
                self._count_sent()
                return False
            except Exception as exc:
                self._failed(exc)
                return False
            self._sender = asyncio.create_task(self._send_loop(Started(sending, yielded)))
            return False
        self._enqueue(text, text.size)
        return False

    def expect(self, tag: str) -> None:
        """Its own copy of a broadcast, tagged `tag`, is on its way: what it is given of its own
        from now on (`send_text_nowait`: "You wrote: b") goes after that copy ("... says: a")."""
        if self.state is OPEN:
            if self._behind is None:
                self._behind = deque()
            self._behind.append((tag, []))

    def arrived(self, tag: str, copy: Text | None) -> None:
        """The copy tagged `tag` was handed to this connection (`copy`), or will not come (None):
        what waited behind it goes now, or behind the copy before it if that one is still on its
        way. A closing connection takes nothing new, but still these: a close after the queue
        waits for them."""
        behind = self._behind
        if not behind:
            return
        index = next((i for i, (expected, _) in enumerate(behind) if expected == tag), None)
        if index is None:
            return
        held = behind[index][1]
        if copy is not None and self.state is CLOSING:  # not taken by the broadcast: taken here
            held.insert(0, copy)
        del behind[index]
        if index:
            behind[index - 1][1].extend(held)
            return
        for text in held:
            self.send_nowait(text, closing=True)
        if not behind and self._closing is not None:  # the last copy the close waited for
            close, copies_in = self._closing
            self._closing = None
            self._enqueue(close, 0)
            copies_in.set_result(None)

    def close(self, code: int, reason: str, *, flush: bool = True) -> None:
        """Close with `code` and `reason`: after everything already queued (`flush`, nothing new is
        taken meanwhile), or now, dropping the queue and leaving the hub at once."""
        if flush:
            if self.state is OPEN:
                self.state = CLOSING
                self.closed_with = code
                if self._behind:  # its copies on their way first (`arrived`): the sender task waits
                    self._closing = (Close(code, reason), asyncio.get_running_loop().create_future())
                else:
                    self._enqueue(Close(code, reason), 0)
                if self._sender is None:
                    self._sender = asyncio.create_task(self._send_loop(None))
            return
        if self.state is CLOSED:
            return
        self.closed_with = code
        sender = self._sender
        self._closed()
        if sender is not None:
            sender.cancel()
        self._closer = asyncio.create_task(self._close_socket(sender, Close(code, reason)))

    async def stop(self, grace: float = 0.0) -> None:
        """Stop for good: the client has left, or the server is stopping.

        `grace` seconds let a flushing close still go out after what was queued.
        """
        if grace and self.state is CLOSING and self._sender is not None:
            await asyncio.wait([self._sender], timeout=grace)
        self._closed()
        for task in (self._sender, self._closer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def _enqueue(self, item: Text | Close, size: int) -> None:
        if self._outbox is None:
            self._outbox = deque()
        self._outbox.append(item)
        self._queued_bytes += size

    async def _send_loop(self, started: Started | None) -> None:
        try:
            if started is not None:
                await started
                self._count_sent()
            while self._outbox or self._closing is not None:
                if not self._outbox:  # a close waits for copies on their way, which queue here
                    assert self._closing is not None
                    await self._closing[1]
                    continue
                item = self._outbox.popleft()
                if isinstance(item, Close):
                    await self.websocket.close(item.code, item.reason)
                    self._closed()
                    return
                self._queued_bytes -= item.size
                await self._send(item.message)
                self._count_sent()
        except Exception as exc:
            self._failed(exc)
        finally:
            self._sender = None
            if started is not None:
                started.close()  # a no-op once it has run: it only matters when cancelled before it ran

    async def _close_socket(self, sender: asyncio.Task[None] | None, close: Close) -> None:
        if sender is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        with contextlib.suppress(*GONE):
            await self.websocket.close(close.code, close.reason)

    def _failed(self, exc: Exception) -> None:
        """A send failed: the client is gone (anything else is a bug, logged) and is sent nothing more."""
        if not isinstance(exc, GONE):
            logger.error("Sending to a chat client failed", exc_info=exc)
        self.websocket.application_state = WebSocketState.DISCONNECTED  # as Starlette's own send would
        self._closed()

    def _closed(self) -> None:
        """Become CLOSED: what is queued is dropped, and the hub forgets it."""
        if self.state is CLOSED:
            return
        self.state = CLOSED
        self._outbox = None
        self._queued_bytes = 0
        self._behind = None
        if self._closing is not None:
            self._closing[1].cancel()  # the sender task waiting on it ends
            self._closing = None
        self._on_closed(self)


def send_all(connections: Iterable[Connection], text: Text) -> None:
    """Send `text` to each of `connections` (members of one endpoint): what goes straight to the
    socket is counted once for all."""
    sent, last = 0, None
    for connection in list(connections):
        if connection.send_nowait(text, counted=False):
            sent += 1
            last = connection
    if last is not None:
        last._count_sent(sent)


def _nothing(amount: float = 1) -> None:
    pass
