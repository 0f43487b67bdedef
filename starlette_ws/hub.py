"""Local fan-out: the channels this process's members are in, fed by one listener on the engine.

A broadcast builds its message (and its frame) once and hands it to every member of the channel
in turn (`connection.Connection.send_nowait`: inline, or queued behind what that member still has
to take). A channel can have a route of its own (`Hub.route`): what arrives on it goes there
instead of to every member as it is (a room checks each entry's position first, see `recovery`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable

from starlette.websockets import WebSocket

from starlette_ws import metrics
from starlette_ws.backends import Backend, BackendError, Event, MessageTooLarge, PublishUncertain
from starlette_ws.connection import OPEN, Connection, send_all
from starlette_ws.sockets import Text

logger = logging.getLogger("starlette_ws.hub")

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


class Hub:
    """This process's subscribers by channel, fed by one listener on the backend."""

    def __init__(self, backend: Backend, queue_bytes: int) -> None:
        self.backend = backend
        self.queue_bytes = queue_bytes
        self._channels: dict[str, dict[Connection, None]] = {}  # channel -> its members here, in order
        self._routes: dict[str, Callable[[str], None]] = {}
        self._lock = asyncio.Lock()
        self._listener: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[bool]] = set()
        self.origin = os.urandom(ORIGIN_DIGITS // 2).hex()  # this hub's name in what it publishes
        self._sequence = itertools.count(1)
        # by tag: the sender whose own copy is on its way, when it was published, and the timer
        # that gives up on it after HOLD s (none in process: the copy is already in the listener's
        # queue, and a timer could fire first when the loop lags: uvloop runs due timers before
        # the callbacks already queued)
        self._waiting: dict[str, tuple[Connection, float, asyncio.TimerHandle | None]] = {}

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
            for tag in list(self._waiting):
                self._given_up(tag)
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
            connection = Connection(websocket, self.queue_bytes, self._drop, channel)
            self._channels.setdefault(channel, {})[connection] = None
        return connection

    async def leave(self, connection: Connection) -> None:
        """Forget a connection; never raises, so the endpoint can still say who left."""
        await connection.stop(grace=CLOSE_GRACE)
        channel = connection.channel
        async with self._lock:
            if channel in self._channels and not self._channels[channel]:
                del self._channels[channel]
                self._routes.pop(channel, None)
                try:
                    await self.backend.unsubscribe(channel)
                except Exception:
                    logger.exception("Unsubscribing from %r failed", channel)

    async def broadcast(self, sender: Connection, channel: str, message: str) -> None:
        """Publish a client's message; its own copy is not waited for, but what the client is sent
        of its own from now on waits behind that copy (`Connection.expect`): over the network HOLD
        s at most, in process until the listener has it (it is in its queue already).

        That keeps the reference order (`You wrote: a`, `... says: a`, `You wrote: b`) while the
        client's next message is read and published before its copy of this one is back: a burst
        goes out in a few writes per member. A publish the engine cannot take at once (a network
        round trip) is waited for, HOLD s at most: the next one is published only after it, so
        they stay in order; one still waiting then finishes in the background and logs its
        outcome, and while it waits the client's next message is not sent (it would arrive out of
        order). The copy is not expected while this process is not subscribed: it cannot come
        back. `MessageTooLarge` is raised: only the sender can be told that its message cannot travel.
        """
        loop = asyncio.get_running_loop()
        previous = sender.publishing
        if previous is not None and not previous.done():
            await asyncio.wait({previous}, timeout=HOLD)
            if not previous.done():
                metrics.PUBLISH_FAILURES.labels(reason="busy").inc()
                logger.warning(
                    "Broadcast on %r not sent: the client's previous one still waits for the engine", channel
                )
                return
        tag, payload = self._sealed(message)
        if sender.state is OPEN and self.listening:
            sender.expect(tag)
            timer = None if self.backend.in_process else loop.call_later(HOLD, self._given_up, tag)
            self._waiting[tag] = (sender, loop.time(), timer)
        published = False
        try:
            if self.backend.in_process:  # memory://: it never suspends, so no task to run it
                published = await self._publish(channel, payload)
                return
            task = loop.create_task(self._publish(channel, payload))
            sender.publishing = task
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)
            await asyncio.wait({task}, timeout=HOLD)
            published = task.done() and task.result()
        finally:
            if not published:  # no copy is coming (or not in time): nothing waits for it
                self._given_up(tag)

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

    def _given_up(self, tag: str) -> None:
        waiting = self._waiting.pop(tag, None)
        if waiting is not None:
            sender, _, timer = waiting
            if timer is not None:
                timer.cancel()
            sender.arrived(tag, None)

    def _drop(self, connection: Connection) -> None:
        members = self._channels.get(connection.channel)
        if members is not None:
            members.pop(connection, None)

    def _deliver(self, event: Event) -> None:
        """Hand a published message to this process's members; then wake its sender if it waits for it."""
        route = self._routes.get(event.channel)
        if route is not None:
            route(event.message)
            return
        tag, plain = opened(event.message)
        text = Text(plain)
        members = self._channels.get(event.channel)
        if members:
            send_all(members, text)
        if tag:
            waiting = self._waiting.pop(tag, None)
            if waiting is not None:
                sender, published, timer = waiting
                if timer is not None:
                    timer.cancel()
                if sender.state is OPEN:  # a connection that is gone has no copy to count
                    metrics.BROADCAST_DELIVERY.observe(asyncio.get_running_loop().time() - published)
                sender.arrived(tag, text)

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
