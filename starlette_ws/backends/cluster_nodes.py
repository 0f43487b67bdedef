"""A Redis Cluster as the cluster engine sees it: which master owns a slot now, a client per node,
and a command run on the owner of its slot, whatever moved meanwhile.

Names (keys and shard channels) are spread over `PARTITIONS` partitions, each with a hash tag
chosen so that the partitions' slots are evenly spaced over the 16,384: a cluster whose masters
own equal ranges of slots gets an equal share of partitions on each. What must live in one slot
(a room's keys and its channel) is tagged after one name, the room's channel (`tag_of`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import zlib
from typing import Any
from urllib.parse import quote, unquote

from redis.asyncio import Redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import AskError, ClusterDownError, MovedError, NoScriptError, ResponseError, TryAgainError

from starlette_ws.backends.redis_client import ERRORS, PORT, Unanswered, client_for, in_steps
from starlette_ws.backends.retry import describe

PARTITIONS = 128
SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
BUSY = (TryAgainError, ClusterDownError)  # a slot being migrated or a cluster failing over: soon again
PAUSE = 0.05  # seconds between two tries of a command the cluster asked to try again
ASK_TIMEOUT = 0.5  # seconds a node has to say who owns the slots (a stopped one is passed over)


def _tags() -> list[str]:
    """For each partition, the shortest decimal string whose slot is in the partition's range."""
    width = REDIS_CLUSTER_HASH_SLOTS / PARTITIONS
    tags: list[str | None] = [None] * PARTITIONS
    candidate = 0
    while None in tags:
        text = str(candidate)
        index = int(key_slot(text.encode()) / width)
        if tags[index] is None:
            tags[index] = text
        candidate += 1
    return [tag for tag in tags if tag is not None]


TAGS = _tags()


def tag_of(name: str) -> str:
    """The hash tag (braces included) of `name`'s partition."""
    return "{" + TAGS[zlib.crc32(name.encode()) % PARTITIONS] + "}"


def tagged(name: str) -> str:
    """`name` in its partition's slot: how a shard channel is named on the cluster."""
    return tag_of(name) + name


def slot_of(name: str) -> int:
    return key_slot(name.encode())


def untagged(name: str) -> str:
    return name.partition("}")[2]


def seeds_of(url: str) -> tuple[str, list[tuple[str, int]]]:
    """`redis+cluster://[user:password@]host:port[,host:port...][/...]`: the plain URL scheme
    (`redis` or `rediss`) with the credentials, as `scheme://user:password@`, and the seed nodes."""
    scheme, _, rest = url.partition("://")
    plain = SCHEMES.get(scheme)
    if plain is None:
        raise ValueError(f"not a Redis Cluster URL: {scheme}://")
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    credentials, _, hosts = netloc.rpartition("@")
    seeds: list[tuple[str, int]] = []
    for seed in filter(None, (part.strip() for part in hosts.split(","))):
        if seed.startswith("["):  # [IPv6]:port
            host, _, port = seed[1:].partition("]")
            port = port.removeprefix(":")
        else:
            host, _, port = seed.partition(":")
        try:
            seeds.append((host, int(port) if port else PORT))
        except ValueError:
            raise ValueError(f"BROADCAST_URL: {seed!r} is not host:port") from None
        if not host:
            raise ValueError(f"BROADCAST_URL: {seed!r} has no host")
    if not seeds:
        raise ValueError(f"BROADCAST_URL: {scheme}:// names no node")
    if credentials:
        user, _, password = credentials.partition(":")
        credentials = f"{quote(unquote(user), safe='')}:{quote(unquote(password), safe='')}@"
    return f"{plain}://{credentials}", seeds


class Nodes:
    """The cluster's slots and the clients of its nodes. Every node ever seen (replicas too) is
    asked for the slots when they change, so the seeds are needed only at start-up."""

    def __init__(self, url: str, timeout: float, pool_size: int | None = None, **options: Any) -> None:
        self.base, seeds = seeds_of(url)
        self.timeout = timeout
        self.pool_size = pool_size
        self.options = options
        self.known: list[tuple[str, int]] = list(dict.fromkeys(seeds))
        self.owners: list[tuple[str, int] | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        self._clients: dict[tuple[tuple[str, int], bool], Redis] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self.silent: set[tuple[str, int]] = set()  # nodes that did not answer the latest ping

    @property
    def masters(self) -> list[tuple[str, int]]:
        return list(dict.fromkeys(owner for owner in self.owners if owner is not None))

    def owner(self, name: str) -> tuple[str, int]:
        """The master that serves `name`'s slot, as the cluster last said."""
        owner = self.owners[slot_of(name)]
        if owner is None:
            raise ClusterDownError(f"no node serves the slot of {name!r}")
        return owner

    def client(self, address: tuple[str, int], *, subscriber: bool = False) -> Redis:
        """One node's client (made on first use, kept until `close`): pooled for commands, or for
        subscriber connections (which replace text that is not UTF-8 instead of failing on it)."""
        key = (address, subscriber)
        client = self._clients.get(key)
        if client is None:
            if subscriber:
                client = client_for(self.url_of(address), self.timeout, encoding_errors="replace", **self.options)
            else:
                client = client_for(self.url_of(address), self.timeout, self.pool_size, **self.options)
            self._clients[key] = client
        return client

    def url_of(self, address: tuple[str, int]) -> str:
        host, port = address
        return f"{self.base}{f'[{host}]' if ':' in host else host}:{port}"

    async def refresh(self) -> None:
        """Ask the nodes, one after another (masters first, shuffled), which master owns each slot;
        one refresh at a time, shared by every caller that asks meanwhile."""
        self.refresh_soon()
        assert self._refreshing is not None
        await asyncio.shield(self._refreshing)

    def moved(self, slot: int, host: str, port: int) -> None:
        """A node said MOVED: the slot is served elsewhere now (one slot patched, as the cluster
        said it; asking for every slot might reach a node that does not know yet)."""
        self.owners[slot] = (host, port)
        if (host, port) not in self.known:
            self.known.append((host, port))

    def refresh_soon(self) -> None:
        """A refresh in the background (the next command waits for nothing)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
            self._refreshing.add_done_callback(retrieved)

    async def _refresh(self) -> None:
        masters = [node for node in self.masters if node not in self.silent]
        others = [node for node in self.known if node not in masters and node not in self.silent]
        # masters first (they know their slots first), those that just did not answer last
        nodes = [*random.sample(masters, len(masters)), *random.sample(others, len(others))]
        nodes += [node for node in self.known if node in self.silent]
        failures: list[str] = []
        for address in nodes:
            try:
                async with asyncio.timeout(min(self.timeout, ASK_TIMEOUT)):
                    slots = await self.client(address).execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call,unused-ignore]
            except ERRORS as exc:
                failures.append(f"{self.url_of(address).rpartition('@')[2]}: {describe(exc)}")
                continue
            owners: list[tuple[str, int] | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
            for (start, end), shard in _ranges(slots, address[0]):
                for slot in range(start, end + 1):
                    owners[slot] = shard[0]
                for node in shard:
                    if node not in self.known:
                        self.known.append(node)
            self.owners = owners
            await self._idle_closed()
            return
        raise ConnectionError("no node of the cluster answers: " + "; ".join(failures))

    async def _idle_closed(self) -> None:
        """The idle command connections of nodes that serve no slots now (a master demoted in a
        failover) are closed: they would otherwise stay open for as long as the process."""
        masters = set(self.masters)
        for (address, subscriber), client in list(self._clients.items()):
            if not subscriber and address not in masters:
                with contextlib.suppress(*ERRORS):
                    await client.connection_pool.disconnect(inuse_connections=False)

    async def run(self, name: str, *args: Any, script: str | None = None) -> Any:
        """`args` on the master that owns `name`'s slot, within `timeout`. A redirection (MOVED,
        ASK), a busy slot or a node not reached is tried again while time is left: those commands
        did not run. `script`: sent as EVAL when the node does not know EVALSHA's script.
        Raises `Unanswered` (`sent` when the command may have run)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        ask: tuple[str, int] | None = None
        failed: Unanswered | None = None  # the last try's failure, said when no time is left for another
        while True:
            if failed is not None and deadline - loop.time() < PAUSE:
                raise failed
            address = ask or self.owner(name)
            asking, ask = ask is not None, None

            async def command(connection: Any, asking: bool = asking) -> Any:
                if asking:
                    await connection.send_command("ASKING")
                    await connection.read_response()
                await connection.send_command(*args)
                try:
                    return await connection.read_response()
                except NoScriptError:
                    if script is None:
                        raise
                    await connection.send_command("EVAL", script, *args[2:])
                    return await connection.read_response()

            left = deadline - loop.time()
            try:
                return await in_steps(self.client(address), max(left, 0.001), command)
            except Unanswered as exc:
                cause = exc.__cause__
                if not isinstance(cause, ResponseError):  # a node that failed may have been replaced
                    self.refresh_soon()
                if exc.sent or deadline - loop.time() <= 0:
                    raise
                failed = exc
                if isinstance(cause, MovedError):
                    self.moved(cause.slot_id, cause.host or address[0], cause.port)
                elif isinstance(cause, AskError):
                    ask = (cause.host or address[0], cause.port)
                elif isinstance(cause, ResponseError) and not isinstance(cause, BUSY):
                    raise  # the command itself was refused (a script's error)
                else:  # not reached, loading, failing over or migrating: it did not run
                    await asyncio.sleep(PAUSE)
                    await self._refresh_within(deadline)

    async def _refresh_within(self, deadline: float) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                await self.refresh()
        except (TimeoutError, *ERRORS):
            pass  # the next try says what is wrong

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def retrieved(task: asyncio.Future[Any]) -> None:
    """A task nobody awaits (a background refresh, an abandoned read): its failure is found
    elsewhere (the next command, the shard's replacement), not logged by asyncio as never retrieved."""
    if not task.cancelled():
        task.exception()


def _ranges(slots: Any, asked: str) -> list[tuple[tuple[int, int], list[tuple[str, int]]]]:
    """CLUSTER SLOTS: each range of slots with its master first, then its replicas. A node that
    names no host is on `asked`'s."""
    found: list[tuple[tuple[int, int], list[tuple[str, int]]]] = []
    for start, end, *nodes in slots:
        found.append(((int(start), int(end)), [(str(node[0]) or asked, int(node[1])) for node in nodes]))
    return found
