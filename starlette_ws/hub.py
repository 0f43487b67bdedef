"""Local fan-out: one bounded outbox and sender task per connection.

A broadcast only appends to outboxes; nothing here awaits another client's socket. A client
whose outbox would pass its byte bound is closed with 1013 and dropped, a client whose send
fails is dropped, and everyone else keeps getting every message in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from starlette import status
from starlette.websockets import WebSocket

from starlette_ws import metrics
from starlette_ws.backends import Backend, BackendError, Event, MessageTooLarge, PublishUncertain
from starlette_ws.endpoint import GONE

logger = logging.getLogger("starlette_ws.hub")

TOO_SLOW = "Try again later: not reading fast enough"
FINISH_GRACE = 5.0  # seconds a leaving connection may take to flush a requested close
HOLD = 0.5  # seconds a sender's next message may wait for its publish and its own copy
RELISTEN = 1.0  # seconds the listener pauses after an unexpected error
STOP_GRACE = 2.0  # seconds publishes still in flight get to finish when the hub stops
SAMPLE = 1.0  # seconds between two readings of the outbox bytes for the metrics


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


class Connection:
    def __init__(self, websocket: WebSocket, max_bytes: int, on_gone: Callable[[Connection], None]) -> None:
        self.websocket = websocket
        self.max_bytes = max_bytes
        self.open = True
        self._on_gone: Callable[[Connection], None] | None = on_gone
        self._outbox: deque[tuple[str | Close, int]] = deque()
        self._queued_bytes = 0
        self._waiter: asyncio.Future[None] | None = None  # the idle sender's wake-up call
        self._sender = asyncio.create_task(self._send_loop())
        self._closer: asyncio.Task[None] | None = None
        self._finishing = False
        self.aborted_with: int | None = None  # the close code `abort` sent
        self._expected: deque[tuple[str, asyncio.Future[None]]] = deque()
        self.publishing: asyncio.Task[bool] | None = None  # this client's latest broadcast

    def send(self, text: str, size: int | None = None) -> None:
        """Queue a message; `size` is its UTF-8 length when the caller already knows it."""
        if not self.open:
            return
        if size is None:
            size = len(text.encode())
        if self._queued_bytes + size > self.max_bytes:
            metrics.CHAT_SLOW_CLIENTS.inc()
            self.abort(status.WS_1013_TRY_AGAIN_LATER, TOO_SLOW)
            return
        self._put(text, size)
        if self._expected and self._expected[0][0] == text:
            arrived = self._expected.popleft()[1]
            if not arrived.done():  # cancelled: its sender stopped waiting this very moment
                arrived.set_result(None)

    @contextlib.contextmanager
    def expecting(self, text: str) -> Iterator[asyncio.Future[None]]:
        """A future done once `text` is queued here (or the connection is gone)."""
        arrived = asyncio.get_running_loop().create_future()
        entry = (text, arrived)
        self._expected.append(entry)
        try:
            yield arrived
        finally:
            with contextlib.suppress(ValueError):
                self._expected.remove(entry)

    def finish(self, code: int, reason: str) -> None:
        """Close after everything already queued has been sent."""
        if self.open:
            self._put(Close(code, reason), 0)
            self.open = False
            self._finishing = True

    def abort(self, code: int, reason: str) -> None:
        """Drop the queue and the connection now; the close frame goes out when the socket can take it."""
        if self._closer is not None:
            return
        self.aborted_with = code
        self._gone()
        self._sender.cancel()
        self._closer = asyncio.create_task(self._send_close(Close(code, reason)))

    async def discard(self, grace: float = 0.0) -> None:
        """Stop sending for good: the client has left, or the server is stopping.

        `grace` seconds let a close requested with `finish` still go out after what was queued.
        """
        if grace and self._finishing:
            await asyncio.wait([self._sender], timeout=grace)
        self._gone()
        for task in (self._sender, self._closer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def _put(self, item: str | Close, size: int) -> None:
        self._outbox.append((item, size))
        self._queued_bytes += size
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():  # a cancelled sender leaves a cancelled waiter behind
                waiter.set_result(None)

    async def _send_loop(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while True:
                if not self._outbox:
                    self._waiter = loop.create_future()
                    await self._waiter
                while self._outbox:
                    item, size = self._outbox.popleft()
                    self._queued_bytes -= size
                    if isinstance(item, Close):
                        await self.websocket.close(item.code, item.reason)
                        return
                    await self.websocket.send_text(item)
        except GONE:
            pass
        finally:
            self._gone()

    async def _send_close(self, close: Close) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender
        with contextlib.suppress(*GONE):
            await self.websocket.close(close.code, close.reason)

    def _gone(self) -> None:
        self.open = False
        if self._on_gone is not None:
            on_gone, self._on_gone = self._on_gone, None
            self._outbox.clear()
            self._queued_bytes = 0
            for _, arrived in self._expected:
                if not arrived.done():
                    arrived.set_result(None)
            on_gone(self)


class Hub:
    """This process's subscribers by channel, fed by one listener on the backend."""

    def __init__(self, backend: Backend, queue_bytes: int) -> None:
        self.backend = backend
        self.queue_bytes = queue_bytes
        self._channels: dict[str, dict[Connection, str]] = {}
        self._lock = asyncio.Lock()
        self._listener: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[bool]] = set()

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
        for helper in (self._listener, self._sampler):
            if helper is not None:
                helper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
        if self._publishing:
            await asyncio.wait(self._publishing, timeout=STOP_GRACE)
            for task in list(self._publishing):
                task.cancel()
        for members in list(self._channels.values()):
            for connection in list(members):
                await connection.discard()
        self._channels.clear()
        await self.backend.disconnect()

    async def join(self, channel: str, websocket: WebSocket) -> Connection:
        connection = Connection(websocket, self.queue_bytes, self._drop)
        async with self._lock:
            members = self._channels.setdefault(channel, {})
            if not members:
                try:
                    await self.backend.subscribe(channel)
                except Exception:  # a backend bug: the chat still works, as in an outage
                    logger.exception("Subscribing to %r failed", channel)
            members[connection] = channel
        return connection

    async def leave(self, connection: Connection) -> None:
        """Forget a connection; never raises, so the endpoint can still say who left."""
        await connection.discard(grace=FINISH_GRACE)
        async with self._lock:
            for channel, members in list(self._channels.items()):
                if not members:
                    del self._channels[channel]
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
        with sender.expecting(message) as own_copy:
            published = loop.time()
            publish = loop.create_task(self.publish(channel, message))
            sender.publishing = publish
            self._publishing.add(publish)
            publish.add_done_callback(self._publishing.discard)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    if await asyncio.shield(publish) and sender.open and self.listening:
                        await own_copy
                        if sender.open:  # a connection that is gone also ends the wait
                            metrics.BROADCAST_DELIVERY.observe(loop.time() - published)

    async def publish(self, channel: str, message: str) -> bool:
        """Hand a message to the backend; an outage is logged, never raised to the endpoint.

        `MessageTooLarge` is raised: only the sender can be told that its message cannot travel.
        """
        try:
            await self.backend.publish(channel, message)
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
        members = self._channels.get(event.channel)
        if not members:
            return
        size = len(event.message.encode())
        for connection in list(members):
            connection.send(event.message, size)

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
