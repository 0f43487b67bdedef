"""Local fan-out: each message goes straight into the client's socket, or waits in its outbox.

A broadcast builds its ASGI message once and hands it to every member in turn. A connection
with nothing queued and no send under way sends it inline (see `Connection.send_nowait`); only a
send that has to wait for the client (its transport is paused) leaves a sender task to finish
it, and what comes next queues behind it. A client whose outbox would pass its byte bound is
closed with 1013 and dropped, a client whose send fails is dropped, and everyone else keeps
getting every message in order; nothing here awaits another client's socket.

A `Connection` only moves forward, OPEN -> CLOSING -> CLOSED, and none of its verbs but `stop`
awaits:

    send_nowait, send_text_nowait   OPEN: send now or queue; anything else: ignored
    close_after_queue               OPEN -> CLOSING: the close frame goes after what is queued,
                                    then CLOSED
    close_now                       -> CLOSED: the queue is dropped, the close frame goes as soon
                                    as the socket takes it
    await stop(grace)               -> CLOSED: its tasks end (CLOSING: after `grace` s to flush)

A send that fails and an outbox past its bound (`close_now` with 1013) also make it CLOSED, and
a CLOSED connection has left its hub.

A channel can have a route of its own (`Hub.route`): what arrives on it goes there instead of to
every member as it is (a room checks each entry's position first, see `recovery`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import os
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

from starlette import status
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketState

from starlette_ws import metrics
from starlette_ws.backends import Backend, BackendError, Event, MessageTooLarge, PublishUncertain
from starlette_ws.sockets import GONE, CountedWebSocket

logger = logging.getLogger("starlette_ws.hub")

TOO_SLOW = "Try again later: not reading fast enough"
CLOSE_GRACE = 5.0  # seconds a leaving CLOSING connection may take to send its queue and close frame
HOLD = 0.5  # seconds a sender's next message may wait for its publish and its own copy
RELISTEN = 1.0  # seconds the listener pauses after an unexpected error
STOP_GRACE = 2.0  # seconds publishes still in flight get to finish when the hub stops
SAMPLE = 1.0  # seconds between two readings of the outbox bytes for the metrics

# What a hub publishes carries a fixed-size header, `<origin>:<sequence>\n`: 16 hex digits naming
# the hub, 14 numbering its publishes. A sender's own copy is recognised by it, not by its text.
ORIGIN_DIGITS = 16
SEQUENCE_DIGITS = 14
HEADER_BYTES = ORIGIN_DIGITS + 1 + SEQUENCE_DIGITS + 1  # 32: an engine's size limit includes it


def seal(origin: str, sequence: int, text: str) -> str:
    """The payload a hub publishes: its header, then the text clients receive."""
    return f"{origin}:{sequence:0{SEQUENCE_DIGITS}x}\n{text}"


def opened(payload: str) -> tuple[str, str]:
    """`(tag, text)` of a payload: the tag is origin and sequence; "" when it has no header."""
    if len(payload) >= HEADER_BYTES and payload[HEADER_BYTES - 1] == "\n" and payload[ORIGIN_DIGITS] == ":":
        return payload[: HEADER_BYTES - 1], payload[HEADER_BYTES:]
    return "", payload


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
        "_closer",
        "_count_sent",
        "_expected",
        "_on_closed",
        "_outbox",
        "_queued_bytes",
        "_send",
        "_sender",
        "closed_with",
        "max_bytes",
        "publishing",
        "state",
        "websocket",
    )

    def __init__(self, websocket: WebSocket, max_bytes: int, on_closed: Callable[[Connection], None]) -> None:
        self.websocket = websocket
        # The endpoints' socket hands over the ASGI send itself and its sent count: Starlette's
        # `WebSocket.send` checks its state on every call, and this connection keeps that state
        # itself (nothing is sent unless it is OPEN). Any other socket is sent to as it is.
        if isinstance(websocket, CountedWebSocket):
            self._send, self._count_sent = websocket.send_to_server, websocket.count_sent
        else:
            self._send, self._count_sent = websocket.send, _nothing
        self.max_bytes = max_bytes
        self.state = OPEN
        self.closed_with: int | None = None  # the code of the close frame it sends, once asked to close
        self._on_closed = on_closed
        self._outbox: deque[tuple[Message | Close, int]] | None = None  # made when first needed: most never are
        self._queued_bytes = 0
        self._sender: asyncio.Task[None] | None = None  # runs while a send waits or the outbox is not empty
        self._closer: asyncio.Task[None] | None = None  # sends the close frame of `close_now`
        self._expected: dict[str, asyncio.Future[None]] = {}
        self.publishing: asyncio.Task[bool] | None = None  # this client's latest broadcast

    def send_text_nowait(self, text: str) -> None:
        """Send a message of this client's own, in order with everything else it is sent."""
        self.send_nowait({"type": "websocket.send", "text": text}, len(text.encode()))

    def send_nowait(self, message: Message, size: int) -> None:
        """Send an ASGI message now if this connection is idle, else queue it; `size` is its text's UTF-8 length.

        Idle (nothing queued, no send under way), the send runs here until it first suspends;
        uvicorn's suspends only while the client is not reading, so nearly every message is
        written to the socket right away, with no task switch. A send that suspends is finished
        by the sender task, and whatever follows waits in the outbox until it has.
        """
        if self.state is not OPEN:
            return
        if self._queued_bytes + size > self.max_bytes:  # a message larger than the bound never goes
            metrics.CHAT_SLOW_CLIENTS.inc()
            self.close_now(status.WS_1013_TRY_AGAIN_LATER, TOO_SLOW)
            return
        if self._sender is None:
            sending = self._send(message).__await__()  # any awaitable; for a coroutine, itself in effect
            try:
                yielded = sending.send(None)
            except StopIteration:
                self._count_sent()
                return
            except Exception as exc:
                self._failed(exc)
                return
            self._sender = asyncio.create_task(self._send_loop(Started(sending, yielded)))
            return
        self._enqueue(message, size)

    @contextlib.contextmanager
    def expecting(self, tag: str) -> Iterator[asyncio.Future[None]]:
        """A future done once the message tagged `tag` has been handed to this connection (or it is gone)."""
        arrived = asyncio.get_running_loop().create_future()
        if self.state is not OPEN:
            arrived.set_result(None)
        self._expected[tag] = arrived
        try:
            yield arrived
        finally:
            self._expected.pop(tag, None)

    def arrived(self, tag: str) -> None:
        arrived = self._expected.pop(tag, None)
        if arrived is not None and not arrived.done():  # cancelled: its sender stopped waiting this very moment
            arrived.set_result(None)

    def close_after_queue(self, code: int, reason: str) -> None:
        """Close after everything already queued has been sent; nothing new is taken meanwhile."""
        if self.state is OPEN:
            self.state = CLOSING
            self.closed_with = code
            self._enqueue(Close(code, reason), 0)
            if self._sender is None:
                self._sender = asyncio.create_task(self._send_loop(None))

    def close_now(self, code: int, reason: str) -> None:
        """Drop the queue and leave the hub now; the close frame goes out when the socket can take it."""
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

        `grace` seconds let a close asked for with `close_after_queue` still go out after what was queued.
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

    def _enqueue(self, item: Message | Close, size: int) -> None:
        if self._outbox is None:
            self._outbox = deque()
        self._outbox.append((item, size))
        self._queued_bytes += size

    async def _send_loop(self, started: Started | None) -> None:
        try:
            if started is not None:
                await started
                self._count_sent()
            while self._outbox:
                item, size = self._outbox.popleft()
                self._queued_bytes -= size
                if isinstance(item, Close):
                    await self.websocket.close(item.code, item.reason)
                    self._closed()
                    return
                await self._send(item)
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
        """Become CLOSED: what is queued is dropped, whoever waits is woken, and the hub forgets it."""
        if self.state is CLOSED:
            return
        self.state = CLOSED
        self._outbox = None
        self._queued_bytes = 0
        for arrived in self._expected.values():
            if not arrived.done():
                arrived.set_result(None)
        self._on_closed(self)


class Hub:
    """This process's subscribers by channel, fed by one listener on the backend."""

    def __init__(self, backend: Backend, queue_bytes: int) -> None:
        self.backend = backend
        self.queue_bytes = queue_bytes
        self._channels: dict[str, dict[Connection, str]] = {}
        self._routes: dict[str, Callable[[str], None]] = {}
        self._lock = asyncio.Lock()
        self._listener: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[bool]] = set()
        self.origin = os.urandom(ORIGIN_DIGITS // 2).hex()  # this hub's name in what it publishes
        self._sequence = itertools.count(1)
        self._waiting: dict[str, Connection] = {}  # by tag: the sender waiting for its own copy

    def __len__(self) -> int:
        return sum(len(members) for members in self._channels.values())

    @property
    def listening(self) -> bool:
        """Whether broadcasts from other processes reach this one now."""
        return self._listener is not None and not self._listener.done() and self.backend.listening

    async def start(self) -> None:
        await self.backend.connect()
        self._listener = asyncio.create_task(self._listen())
        self._sampler = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        """Stop listening and sending; the backend is released whatever failed or is cancelled here."""
        try:
            helpers = [task for task in (self._listener, self._sampler) if task is not None]
            for task in helpers:
                task.cancel()
            if helpers:
                await asyncio.wait(helpers)  # their own outcome is not this caller's error
            if self._publishing:
                await asyncio.wait(self._publishing, timeout=STOP_GRACE)
                for publishing in list(self._publishing):
                    publishing.cancel()
            for members in list(self._channels.values()):
                for connection in list(members):
                    await connection.stop()
        finally:
            self._channels.clear()
            await self.backend.disconnect()

    def route(self, channel: str, deliver: Callable[[str], None]) -> None:
        """Hand what arrives on `channel` to `deliver` rather than to its members as it is, until
        the channel has no members left."""
        self._routes[channel] = deliver

    async def join(self, channel: str, websocket: WebSocket) -> Connection:
        """Add a member; a join that does not return (cancelled while subscribing) leaves nothing behind."""
        async with self._lock:
            if not self._channels.get(channel):
                try:
                    await self.backend.subscribe(channel)
                except Exception:  # a backend bug: the chat still works, as in an outage
                    logger.exception("Subscribing to %r failed", channel)
            connection = Connection(websocket, self.queue_bytes, self._drop)
            self._channels.setdefault(channel, {})[connection] = channel
        return connection

    async def leave(self, connection: Connection) -> None:
        """Forget a connection; never raises, so the endpoint can still say who left."""
        await connection.stop(grace=CLOSE_GRACE)
        async with self._lock:
            for channel, members in list(self._channels.items()):
                if not members:
                    del self._channels[channel]
                    self._routes.pop(channel, None)
                    try:
                        await self.backend.unsubscribe(channel)
                    except Exception:
                        logger.exception("Unsubscribing from %r failed", channel)

    async def broadcast(self, sender: Connection, channel: str, message: str) -> None:
        """Publish a client's message; hold the client until its own copy is back, HOLD s at most.

        Waiting for the copy keeps the reference order (`You wrote: a`, `... says: a`,
        `You wrote: b`). An engine problem holds the client no longer than HOLD: a publish still
        waiting for the engine then finishes in the background and logs its outcome, and while
        it waits the client's next message is not sent (it would arrive out of order). The copy
        is not waited for while this process is not subscribed: it cannot come back.
        `MessageTooLarge` is raised: only the sender can be told that its message cannot travel.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOLD
        previous = sender.publishing
        if previous is not None and not previous.done():
            await asyncio.wait({previous}, timeout=deadline - loop.time())
            if not previous.done():
                metrics.PUBLISH_FAILURES.labels(reason="busy").inc()
                logger.warning(
                    "Broadcast on %r not sent: the client's previous one still waits for the engine", channel
                )
                return
        tag, payload = self._sealed(message)
        with sender.expecting(tag) as own_copy:
            self._waiting[tag] = sender
            try:
                published = loop.time()
                publish = loop.create_task(self._publish(channel, payload))
                sender.publishing = publish
                self._publishing.add(publish)
                publish.add_done_callback(self._publishing.discard)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        if await asyncio.shield(publish) and sender.state is OPEN and self.listening:
                            await own_copy
                            if sender.state is OPEN:  # a connection that is gone also ends the wait
                                metrics.BROADCAST_DELIVERY.observe(loop.time() - published)
            finally:
                self._waiting.pop(tag, None)

    async def publish(self, channel: str, message: str) -> bool:
        """Hand a message to the backend; an outage is logged, never raised to the endpoint.

        `MessageTooLarge` is raised: only the sender can be told that its message cannot travel.
        The engine carries the message with a header of HEADER_BYTES (32) bytes: under
        PostgreSQL's 8,000-byte NOTIFY limit, a message travels if under 7,968 bytes (UTF-8).
        """
        return await self._publish(channel, self._sealed(message)[1])

    def _sealed(self, message: str) -> tuple[str, str]:
        """A new tag for a message of this hub's, and the payload that carries it."""
        payload = seal(self.origin, next(self._sequence), message)
        return payload[: HEADER_BYTES - 1], payload

    async def _publish(self, channel: str, payload: str) -> bool:
        try:
            await self.backend.publish(channel, payload)
        except MessageTooLarge:
            metrics.PUBLISH_FAILURES.labels(reason="too_large").inc()
            raise
        except PublishUncertain as exc:
            metrics.PUBLISH_FAILURES.labels(reason="uncertain").inc()
            logger.warning("Broadcast on %r may not have been sent: %s", channel, exc)
            return False
        except BackendError as exc:
            metrics.PUBLISH_FAILURES.labels(reason="not_sent").inc()
            logger.warning("Broadcast on %r not sent: %s", channel, exc)
            return False
        except Exception:  # a backend bug: the sender's socket stays open, as in an outage
            metrics.PUBLISH_FAILURES.labels(reason="error").inc()
            logger.exception("Broadcast on %r may not have been sent", channel)
            return False
        return True

    def _drop(self, connection: Connection) -> None:
        for members in self._channels.values():
            members.pop(connection, None)

    def _deliver(self, event: Event) -> None:
        """Hand a published message to this process's members; then wake its sender if it waits for it."""
        route = self._routes.get(event.channel)
        if route is not None:
            route(event.message)
            return
        tag, text = opened(event.message)
        members = self._channels.get(event.channel)
        if members:
            message: Message = {"type": "websocket.send", "text": text}  # one for all: nobody changes it
            size = len(text.encode())
            for connection in list(members):
                connection.send_nowait(message, size)
        if tag:
            sender = self._waiting.pop(tag, None)
            if sender is not None:
                sender.arrived(tag)

    async def _sample(self) -> None:
        """Report the bytes waiting in outboxes now and then; counting every message would cost more."""
        try:
            while True:
                queued = sum(connection.queued_bytes for members in self._channels.values() for connection in members)
                metrics.CHAT_OUTBOX_BYTES.set(queued)
                await asyncio.sleep(SAMPLE)
        finally:
            metrics.CHAT_OUTBOX_BYTES.set(0)

    async def _listen(self) -> None:
        """Deliver what the backend receives, for as long as the hub runs.

        The backend handles outages itself; anything else it raises is a bug that must neither
        end the listener (the process would stop hearing other processes, silently) nor go unseen.
        """
        while True:
            try:
                self._deliver(await self.backend.next_published())
            except Exception:
                logger.exception("Broadcast listener failed; listening again in %g s", RELISTEN)
                await asyncio.sleep(RELISTEN)


def _nothing(amount: float = 1) -> None:
    pass
