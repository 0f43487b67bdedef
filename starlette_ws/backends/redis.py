from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from starlette_ws.backends.base import BackendError, Event, PublishUncertain, address_of
from starlette_ws.backends.redis_client import ERRORS, PORT, Confirmations, Unanswered, client_for, in_steps
from starlette_ws.backends.retry import Reconnector

logger = logging.getLogger("starlette_ws.backends.redis")


class RedisBackend:
    """Redis pub/sub: one subscriber connection per process, a small pool for PUBLISH.

    `next_published` supervises the subscriber connection: when Redis goes away it logs the
    outage once, reconnects with exponential backoff and jitter (`retry_min` doubling up to
    `retry_max`), subscribes again to every current channel and carries on. Only one task may
    be waiting in `next_published` at a time (the hub's listener). `retry_max` is a second, so a
    server back from an outage is in use again within about that (the README promises 2 s).

    A subscriber connection can also go silent without closing (a network that stops answering:
    TCP keepalive takes about 25 s to notice, or never, behind a proxy). After `probe` seconds with
    nothing received it is sent a PING; no answer within `timeout` seconds and it is dropped and
    replaced like a lost one, so silence is noticed within `probe + timeout` (3 s) and a second.
    """

    in_process = False

    def __init__(
        self, url: str, *, timeout: float = 2.0, retry_min: float = 0.1, retry_max: float = 1.0, probe: float = 1.0
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.probe = probe
        self._pinged: float | None = None  # when the PING still unanswered went out
        self.address = address_of(url, PORT)
        self.resubscribed = 0
        self._channels: set[str] = set()
        self._publisher: Redis | None = None
        self._subscriber: Redis | None = None
        self._pubsub: PubSub | None = None
        self._read: asyncio.Task[dict[str, Any] | None] | None = None
        self._confirmations = Confirmations(timeout)
        self._listening = False
        self._retry = Reconnector(logger, f"Redis at {self.address}", retry_min, retry_max)

    @property
    def connected(self) -> bool:
        return self._retry.running

    @property
    def listening(self) -> bool:
        return self.connected and self._pubsub is not None

    async def connect(self) -> None:
        """Reach Redis once; a server that is not there at start-up is a configuration error."""
        # The subscriber's recovery belongs to next_published.
        self._publisher = client_for(self.url, self.timeout, protocol=2)
        self._subscriber = client_for(self.url, self.timeout, encoding_errors="replace")
        self._retry.start()
        try:
            await self._publisher.ping()
            self._pubsub = await self._open_pubsub()
        except ERRORS as exc:
            await self.disconnect()
            raise BackendError(f"Redis at {self.address} is unreachable: {exc}") from exc

    async def disconnect(self) -> None:
        """Close everything; a pending `next_published` then raises `BackendError`."""
        self._retry.stop()
        pubsub, self._pubsub = self._pubsub, None
        read, self._read = self._read, None
        if read is not None:
            read.cancel()
            await asyncio.wait({read})
            if not read.cancelled():
                read.exception()  # retrieved: asyncio would log it as never retrieved
        clients = (self._publisher, self._subscriber)
        self._publisher = self._subscriber = None
        self._confirmations.release()
        if pubsub is not None:
            await _close(pubsub)
        for client in clients:
            if client is not None:
                await client.aclose()

    async def subscribe(self, channel: str) -> None:
        """Once this returns, messages published on `channel` are delivered.

        The server's confirmation is read by the task in `next_published`; without one, or while
        Redis is down, the channel is only recorded and the next (re)connection subscribes it.
        """
        if channel in self._channels:
            return
        self._channels.add(channel)
        pubsub = self._pubsub
        if pubsub is None:
            return
        with contextlib.suppress(*ERRORS):  # the listener sees an outage too, and subscribes again after it
            await self._confirmations.subscribe(channel, lambda: pubsub.subscribe(channel), self._listening)

    async def unsubscribe(self, channel: str) -> None:
        if channel not in self._channels:
            return
        self._channels.discard(channel)
        pubsub = self._pubsub
        if pubsub is not None:
            # On failure, the listener reconnects with only the channels still wanted.
            with contextlib.suppress(*ERRORS):
                await pubsub.unsubscribe(channel)

    async def publish(self, channel: str, message: str) -> None:
        """PUBLISH; a failure before the command is written means "not sent"; after, the server
        may have taken it (`PublishUncertain`)."""
        publisher = self._publisher
        if publisher is None:
            raise BackendError("the Redis backend is not connected")

        async def publish(connection: Any) -> None:
            await connection.send_command("PUBLISH", channel, message)
            await connection.read_response()  # on an error it drops the connection itself

        try:
            await in_steps(publisher, self.timeout, publish)
        except Unanswered as exc:
            if exc.sent:
                raise PublishUncertain(f"sent to Redis at {self.address}, then {exc.reason}") from exc.__cause__
            raise BackendError(f"cannot publish to Redis at {self.address}: {exc.reason}") from exc.__cause__

    async def ping(self) -> None:
        """PING on a publisher connection, answered within `timeout`, or `BackendError`."""
        publisher = self._publisher
        if publisher is None:
            raise BackendError("the Redis backend is not connected")

        async def ping(connection: Any) -> None:
            await connection.send_command("PING")
            await connection.read_response()  # a timeout or a cancellation drops the connection

        try:
            await in_steps(publisher, self.timeout, ping)
        except Unanswered as exc:
            raise BackendError(f"Redis at {self.address} does not answer: {exc.reason}") from exc.__cause__

    async def next_published(self) -> Event:
        while True:
            if not self.connected:
                raise BackendError("the Redis backend is disconnected")
            pubsub = self._pubsub
            if pubsub is None:
                detail = f"subscribed again to {len(self._channels)} channel(s)"
                await self._retry.until_back(self._resubscribe, ERRORS, detail)
                self.resubscribed += 1
                continue
            # The read runs in its own task and survives our cancellation: a message it has
            # already taken off the socket is returned by the next call instead of being lost.
            if self._read is None:
                self._read = asyncio.create_task(pubsub.get_message(timeout=None))
            read = self._read
            self._listening = True
            try:
                await asyncio.wait({read}, timeout=self.probe)
            finally:
                self._listening = False
            if not read.done():
                if not await self._answering(pubsub):
                    await self._lost(pubsub, f"no answer to PING within {self.timeout:g} s")
                continue
            self._read = None
            self._pinged = None  # whatever came is an answer
            if read.cancelled():  # by disconnect()
                continue
            try:
                message = read.result()
            except ERRORS as exc:
                await self._lost(pubsub, exc)
                continue
            if message is None:
                continue
            kind, channel = message["type"], message["channel"]
            if kind == "message" and channel in self._channels:
                return Event(channel, message["data"])
            if kind == "subscribe":
                self._confirmations.confirm(channel)

    async def _answering(self, pubsub: PubSub) -> bool:
        """After `probe` s of silence: whether the subscriber connection still answers. A PING
        goes out (only while subscribed: outside that mode its answer is not a message), and is
        waited for up to `timeout` s."""
        now = asyncio.get_running_loop().time()
        if self._pinged is None:
            if not pubsub.subscribed:
                return True
            self._pinged = now
            try:
                async with asyncio.timeout(self.timeout):
                    await pubsub.ping()  # type: ignore[no-untyped-call,unused-ignore]  # unannotated in redis-py 5
            except ERRORS:
                return False
            return True
        return now - self._pinged < self.timeout

    async def _lost(self, pubsub: PubSub, reason: BaseException | str) -> None:
        """The subscriber connection failed or went silent: it is dropped, and `next_published`
        subscribes again on a new one."""
        read, self._read = self._read, None
        if read is not None and not read.done():
            read.cancel()
            await asyncio.wait({read})
        self._pinged = None
        if pubsub is self._pubsub:
            self._pubsub = None
            await _close(pubsub)
            self._retry.lost(reason)

    async def _resubscribe(self) -> None:
        pubsub = await self._open_pubsub()
        if self.connected:
            self._pubsub = pubsub
        else:  # disconnect() ran while we were connecting
            await _close(pubsub)

    async def _open_pubsub(self) -> PubSub:
        """A connected PubSub on exactly the channels wanted now, even if they changed meanwhile."""
        if self._subscriber is None:
            raise BackendError("the Redis backend is disconnected")
        pubsub = self._subscriber.pubsub()
        try:
            await pubsub.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            subscribed: set[str] = set()
            while subscribed != self._channels:
                wanted = set(self._channels)
                if wanted - subscribed:
                    await pubsub.subscribe(*(wanted - subscribed))
                if subscribed - wanted:
                    await pubsub.unsubscribe(*(subscribed - wanted))
                subscribed = wanted
        except BaseException:
            await _close(pubsub)
            raise
        return pubsub


async def _close(pubsub: PubSub) -> None:
    with contextlib.suppress(*ERRORS):
        await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # redis-py leaves it unannotated
