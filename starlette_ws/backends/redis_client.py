"""The Redis client as both Redis engines (one server, a Cluster) use it: connections that never
retry a command, a command in steps that tells "not sent" from "may have run", and subscriptions
confirmed by the server before `subscribe` returns."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, RedisError, ResponseError

from starlette_ws.backends.retry import describe

# What a dying connection raises. redis-py wraps socket failures in its own ConnectionError
# (refused, reset, closed by the server, BusyLoadingError while a restarted server loads) and
# TimeoutError (socket_timeout), both RedisError; a few paths (connect, close, a pooled
# connection's "Buffer is closed") let a bare OSError through; asyncio's TimeoutError is one.
ERRORS = (RedisError, OSError)
# An error reply: the server refused the command, it did not take the message.
REFUSED = (ResponseError, BusyLoadingError)
T = TypeVar("T")

# Notice a peer that vanished without closing the socket (a cut network) within about 25 s.
KEEPALIVE = {
    getattr(socket, name): value
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)
}


PORT = 6379


def client_for(url: str, timeout: float, pool_size: int | None = None, **options: Any) -> Redis:
    """A client whose every call is bounded by `timeout` and never retried: a command sent again
    after a timeout (a PUBLISH, an append) would run twice once the server answers. Under RESP2
    (`protocol=2`) the pool replaces a connection the server closed since its last use before
    using it, a check redis-py 8 makes only under RESP2 (under RESP3 it expects maintenance
    notifications on idle connections). With `pool_size`, at most that many connections, and a
    call that finds them all busy waits for one (within `timeout`)."""
    if pool_size is not None:
        options.update(connection_pool_class=BlockingConnectionPool, max_connections=pool_size, timeout=timeout)
    pool_class = options.pop("connection_pool_class", ConnectionPool)
    pool = pool_class.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        socket_keepalive=True,
        socket_keepalive_options=KEEPALIVE,
        **options,
    )
    return Redis.from_pool(pool)


class Confirmations:
    """Subscriptions waiting for the server's confirmation, which the listener reads: a subscribe
    made while it listens returns once the server has confirmed it (or after `timeout`)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._waiting: dict[str, asyncio.Future[None]] = {}

    async def subscribe(self, channel: str, send: Callable[[], Awaitable[Any]], listening: bool) -> None:
        confirmation: asyncio.Future[None] | None = None
        if listening:
            confirmation = self._waiting[channel] = asyncio.get_running_loop().create_future()
        try:
            await send()
            if confirmation is not None:
                async with asyncio.timeout(self.timeout):
                    await confirmation
        finally:
            if confirmation is not None and self._waiting.get(channel) is confirmation:
                del self._waiting[channel]

    def confirm(self, channel: str) -> None:
        confirmation = self._waiting.get(channel)
        if confirmation is not None and not confirmation.done():
            confirmation.set_result(None)

    def release(self) -> None:
        """Every subscribe waiting returns (the backend disconnects)."""
        for channel in list(self._waiting):
            self.confirm(channel)
        self._waiting.clear()


class Unanswered(Exception):
    """A command that failed; `sent` when it had been written (the server may have run it)."""

    def __init__(self, reason: str, sent: bool) -> None:
        super().__init__(reason)
        self.reason, self.sent = reason, sent


async def in_steps(
    client: Redis, seconds: float, use: Callable[[Any], Awaitable[T]], waited: Callable[[], None] | None = None
) -> T:
    """`use` one pooled connection within `seconds`, telling a failure before the command went
    out (`Unanswered.sent` false: it did not run) from one after (it may have run). `waited` is
    called when every connection of a bounded pool is busy: this call waits for one."""
    pool = client.connection_pool
    if waited is not None and isinstance(pool, BlockingConnectionPool) and not pool.can_get_connection():
        waited()
    sent = False
    try:
        async with asyncio.timeout(seconds):
            connection = await pool.get_connection()  # type: ignore[no-untyped-call,unused-ignore]
            try:
                sent = True
                return await use(connection)
            finally:
                await pool.release(connection)
    except ERRORS as exc:
        reason = f"no answer within {seconds:g} s" if isinstance(exc, TimeoutError) else describe(exc)
        raise Unanswered(reason, sent and not isinstance(exc, REFUSED)) from exc
