from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import MovedError

from starlette_ws.backends.base import BackendError, Event, PublishUncertain
from starlette_ws.backends.cluster_nodes import Nodes, retrieved, slot_of, tagged, untagged
from starlette_ws.backends.redis_client import ERRORS, Confirmations, Unanswered
from starlette_ws.backends.retry import Reconnector

logger = logging.getLogger("starlette_ws.backends.cluster")

Address = tuple[str, int]
# What a subscriber connection's operations raise when it dies: a dying connection's errors, and
# those of redis-py's PubSub reconnecting in place while our listener reads it (a second reader on
# one socket: RuntimeError; a connection torn down under it: AttributeError). Each is a lost shard,
# subscribed again on a new connection, never an error out of the listener.
LOST = (*ERRORS, RuntimeError, AttributeError)
PUBLISHERS = 20  # command connections per master (publishes and pings); more wait for one, within `timeout`
CLOSE_WAIT = 1.0  # seconds a dropped subscriber connection has to end


class Shard:
    """This process's subscriber connection to one master: the shard channels it holds there."""

    def __init__(self, address: Address, pubsub: PubSub, now: float) -> None:
        self.address = address
        self.pubsub = pubsub
        self.channels: set[str] = set()  # logical names
        self.read: asyncio.Task[dict[str, Any] | None] | None = None
        self.heard = now  # when it last received anything
        self.pinged: float | None = None  # when the PING still unanswered went out

    def reading(self) -> asyncio.Task[dict[str, Any] | None]:
        """The read in flight (it survives a cancelled wait, so nothing taken off the socket is lost)."""
        if self.read is None:
            self.read = asyncio.ensure_future(self.pubsub.get_message(timeout=None))
        return self.read

    async def close(self) -> None:
        """Bounded: a read or a teardown that waits on a peer that no longer answers is left to
        finish on its own, and the listener goes on."""
        read, self.read = self.read, None
        if read is not None:
            read.add_done_callback(retrieved)  # its failure, now or once it ends, is this close's reason
            if not read.done():
                read.cancel()
                await asyncio.wait({read}, timeout=CLOSE_WAIT)
        with contextlib.suppress(TimeoutError, *LOST):
            async with asyncio.timeout(CLOSE_WAIT):
                await self.pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]


class ClusterBackend:
    """Sharded pub/sub on a Redis Cluster: SSUBSCRIBE on the master that owns each channel's slot
    (one subscriber connection per master), SPUBLISH routed the same way.

    `next_published` follows the cluster: a channel the server unsubscribes us from (its slot
    moved), a shard connection that fails, or one silent for `probe` seconds that does not answer
    a PING within `timeout`, has its channels subscribed again where the slots are now, with
    `retry_min`..`retry_max` backoff while no node answers. `resubscribed` counts those recoveries,
    so that what was published meanwhile can be looked for (rooms' position check).
    """

    in_process = False

    def __init__(
        self, url: str, *, timeout: float = 2.0, retry_min: float = 0.1, retry_max: float = 1.0, probe: float = 1.0
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.probe = probe
        self.resubscribed = 0
        self.nodes = Nodes(url, timeout, PUBLISHERS, protocol=2)
        self.address = ",".join(f"{host}:{port}" for host, port in self.nodes.known)
        self._channels: set[str] = set()
        self._shards: dict[Address, Shard] = {}
        self._unrouted: set[str] = set()
        self._ready: deque[Event] = deque()
        self._confirmations = Confirmations(timeout)
        self._wake: asyncio.Future[None] | None = None
        self._listening = False
        self._opening = asyncio.Lock()
        self._retry = Reconnector(logger, f"Redis Cluster at {self.address}", retry_min, retry_max)

    @property
    def connected(self) -> bool:
        return self._retry.running

    @property
    def listening(self) -> bool:
        return self.connected and not self._unrouted

    async def connect(self) -> None:
        """Learn the cluster's slots from a seed; a cluster none of them answers for is a configuration error."""
        self._retry.start()
        try:
            await self.nodes.refresh()
        except ERRORS as exc:
            await self.disconnect()
            raise BackendError(f"Redis Cluster at {self.address} is unreachable: {exc}") from exc

    async def disconnect(self) -> None:
        self._retry.stop()
        self._unrouted.clear()
        shards, self._shards = list(self._shards.values()), {}
        for shard in shards:
            await shard.close()
        self._confirmations.release()
        self._wakeup()
        await self.nodes.close()

    async def subscribe(self, channel: str) -> None:
        """Once this returns, messages published on `channel` are delivered (or, while the
        cluster cannot be reached, the channel waits in `_unrouted` for the listener)."""
        if channel in self._channels:
            return
        self._channels.add(channel)
        try:
            await self._confirmations.subscribe(channel, lambda: self._place(channel), self._listening)
        except (*LOST, BackendError):
            self._unrouted.add(channel)  # the listener routes it once the cluster answers
            self._wakeup()

    async def unsubscribe(self, channel: str) -> None:
        if channel not in self._channels:
            return
        self._channels.discard(channel)
        self._unrouted.discard(channel)
        for shard in list(self._shards.values()):
            if channel in shard.channels:
                shard.channels.discard(channel)
                with contextlib.suppress(*LOST):
                    await shard.pubsub.sunsubscribe(tagged(channel))

    async def publish(self, channel: str, message: str) -> None:
        name = tagged(channel)
        try:
            await self.nodes.run(name, "SPUBLISH", name, message)
        except Unanswered as exc:
            if exc.sent:
                raise PublishUncertain(f"sent to the Redis Cluster, then {exc.reason}") from exc.__cause__
            raise BackendError(f"cannot publish to the Redis Cluster: {exc.reason}") from exc.__cause__
        except ERRORS as exc:  # no node serves the slot
            raise BackendError(f"cannot publish to the Redis Cluster: {exc}") from exc

    async def ping(self) -> None:
        """A PING answered by every master within `timeout`, or `BackendError` naming those that did not."""
        await ping_masters(self.nodes, "Redis Cluster", BackendError)

    async def next_published(self) -> Event:
        loop = asyncio.get_running_loop()
        while True:
            if self._ready:
                return self._ready.popleft()
            if not self.connected:
                raise BackendError("the Redis Cluster backend is disconnected")
            if self._unrouted:
                detail = f"subscribed again to {len(self._unrouted)} channel(s)"
                await self._retry.until_back(self._route, (*LOST, BackendError), detail)
                self.resubscribed += 1
                continue
            self._wake = loop.create_future()
            reads: dict[asyncio.Future[Any], Shard] = {shard.reading(): shard for shard in self._shards.values()}
            self._listening = True
            try:
                done, _ = await asyncio.wait({*reads, self._wake}, timeout=self.probe, return_when="FIRST_COMPLETED")
            finally:
                self._listening = False
            now = loop.time()
            for read, shard in reads.items():
                if read in done:
                    await self._received(shard, read, now)
                elif self._shards.get(shard.address) is shard and now - shard.heard >= self.probe:
                    await self._probe(shard, now)

    async def _received(self, shard: Shard, read: asyncio.Future[Any], now: float) -> None:
        shard.read = None
        shard.heard, shard.pinged = now, None  # whatever came is an answer
        if read.cancelled():
            return
        try:
            message = read.result()
        except MovedError as exc:  # a subscription sent to a master that no longer owns the slot
            self.nodes.moved(exc.slot_id, exc.host or shard.address[0], exc.port)
            self._unrouted |= {channel for channel in shard.channels if slot_of(tagged(channel)) == exc.slot_id}
            shard.channels -= self._unrouted
            return
        except LOST as exc:
            await self._lost(shard, exc)
            return
        if message is None:
            return
        kind, name = message["type"], message["channel"]
        if name is None:  # a PING's answer
            return
        channel = untagged(name)
        if kind == "smessage" and channel in shard.channels:
            self._ready.append(Event(channel, message["data"]))
        elif kind == "ssubscribe":
            self._confirmations.confirm(channel)
        elif kind == "sunsubscribe" and channel in shard.channels:  # its slot moved to another master
            shard.channels.discard(channel)
            self._unrouted.add(channel)

    async def _probe(self, shard: Shard, now: float) -> None:
        """A shard silent for `probe` s is sent a PING; one silent `timeout` s after it is lost."""
        if shard.pinged is None:
            shard.pinged = now
            try:
                await shard.pubsub.ping()  # type: ignore[no-untyped-call,unused-ignore]
            except LOST as exc:
                await self._lost(shard, exc)
        elif now - shard.pinged >= self.timeout:
            await self._lost(
                shard, f"no answer to PING within {self.timeout:g} s from {shard.address[0]}:{shard.address[1]}"
            )

    async def _lost(self, shard: Shard, reason: BaseException | str) -> None:
        if self._shards.get(shard.address) is shard:
            del self._shards[shard.address]
        self._unrouted |= shard.channels & self._channels
        await shard.close()
        self._retry.lost(reason)
        self._wakeup()

    async def _route(self) -> None:
        """The slots as the cluster says now, and every channel waiting subscribed where its slot is."""
        await self.nodes.refresh()
        for channel in sorted(self._unrouted):
            if channel in self._channels:
                await self._place(channel)
            self._unrouted.discard(channel)

    async def _place(self, channel: str) -> None:
        """SSUBSCRIBE `channel` on the master of its slot (a connection to it opened if needed)."""
        if not self.connected:
            raise BackendError("the Redis Cluster backend is disconnected")
        name = tagged(channel)
        address = self.nodes.owner(name)
        async with self._opening:  # one connection per master, however many subscribe at once
            shard = self._shards.get(address)
            if shard is None:
                pubsub = self.nodes.client(address, subscriber=True).pubsub()
                try:
                    await pubsub.ssubscribe(name)
                    await self._confirmed(pubsub, address)
                except BaseException as exc:
                    await Shard(address, pubsub, 0.0).close()
                    if isinstance(exc, MovedError):  # the slot is elsewhere: there, next time
                        self.nodes.moved(exc.slot_id, exc.host or address[0], exc.port)
                    raise
                shard = self._shards[address] = Shard(address, pubsub, asyncio.get_running_loop().time())
                shard.channels.add(channel)
                self._confirmations.confirm(channel)
                self._wakeup()  # the listener reads this one too from now on
                return
        shard.channels.add(channel)
        try:
            await shard.pubsub.ssubscribe(name)
        except LOST as exc:
            await self._lost(shard, exc)
            raise

    async def _confirmed(self, pubsub: PubSub, address: Address) -> None:
        """The first answer on a new subscriber connection, read here before the listener reads it:
        a master that accepts connections but does not answer (stopped) is not taken for back."""
        answer = await pubsub.get_message(timeout=self.timeout)
        if answer is None or answer["type"] != "ssubscribe":
            raise TimeoutError(f"no answer to SSUBSCRIBE within {self.timeout:g} s from {address[0]}:{address[1]}")

    def _wakeup(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)


async def ping_masters(nodes: Nodes, what: str, error: type[Exception]) -> None:
    """PING every master, or `error` naming those that did not answer, within `nodes.timeout`.
    The slots are asked for again meanwhile; when masters did not answer and the cluster says
    others serve their slots now (a failover, noticed here first), those are pinged instead."""

    async def silent(masters: list[Address], seconds: float) -> list[Address]:
        async def ping(address: Address) -> None:
            async with asyncio.timeout(seconds):
                await nodes.client(address).ping()

        results = await asyncio.gather(*(ping(address) for address in masters), return_exceptions=True)
        return [address for address, result in zip(masters, results, strict=True) if isinstance(result, BaseException)]

    nodes.refresh_soon()
    masters = nodes.masters
    failed = await silent(masters, nodes.timeout * 0.4)
    nodes.silent = set(failed)
    if failed:
        with contextlib.suppress(TimeoutError, *ERRORS):
            async with asyncio.timeout(nodes.timeout * 0.3):
                await nodes.refresh()
        if set(nodes.masters) != set(masters):
            failed = await silent(nodes.masters, nodes.timeout * 0.25)
    if failed:
        raise error(f"{what}: no answer from {', '.join(f'{host}:{port}' for host, port in failed)}")
    if None in nodes.owners:
        raise error(f"{what}: {nodes.owners.count(None)} slots are served by no master")
