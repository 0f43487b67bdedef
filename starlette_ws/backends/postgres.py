from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator

import asyncpg

from starlette_ws.backends.base import (
    MAX_CHANNEL_BYTES,
    BackendError,
    Event,
    MessageTooLarge,
    PublishUncertain,
    address_of,
)
from starlette_ws.backends.retry import Reconnector, describe

logger = logging.getLogger("starlette_ws.backends.postgres")

# NOTIFY refuses a payload of 8000 bytes or more (the server's default build).
MAX_PAYLOAD = 8000
PORT = 5432

# What a dying connection raises:
# - OSError: a refused, reset or dropped socket; timeouts (asyncio's TimeoutError is an OSError);
# - PostgresError: the server's own error (AdminShutdownError from pg_terminate_backend or a
#   shutdown, CannotConnectNowError while it starts, TooManyConnectionsError) and
#   ConnectionDoesNotExistError, the socket closed in the middle of an operation;
# - InterfaceError: an operation on a connection asyncpg has closed ("connection is closed");
# - InternalClientError: the window between the server's FATAL message and the socket close.
#   asyncpg takes the message while idle as a protocol error and refuses the next operation
#   ("cannot switch to state ...; another operation is in progress") until the close arrives.
ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
# Raised after pg_notify() went out without its answer: the server may have committed it.
UNCONFIRMED = (OSError, asyncpg.ConnectionDoesNotExistError)


class PostgresBackend:
    """PostgreSQL LISTEN/NOTIFY: one dedicated LISTEN connection, a small pool for NOTIFY.

    `next_published` supervises the LISTEN connection: closed by the server (a restart,
    `pg_terminate_backend`) or silent past a health check, it is replaced with exponential
    backoff and jitter (up to `retry_max`, a second: the README promises delivery within 2 s of
    the server's return) and LISTENs again on every current channel. Only one task may be
    waiting in `next_published` at a time (the hub's listener).
    """

    in_process = False

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        retry_min: float = 0.1,
        retry_max: float = 1.0,
        health_check: float = 10.0,
        pool_size: int = 2,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.health_check = health_check
        self.pool_size = pool_size
        self.address = address_of(url, PORT)
        self.resubscribed = 0
        self._channels: set[str] = set()
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        # LISTEN, UNLISTEN and health checks share the listener connection one at a time; the
        # channel set only changes under this lock, so a new connection never misses a channel.
        self._lock = asyncio.Lock()
        self._events: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self._retry = Reconnector(
            logger,
            f"PostgreSQL at {self.address}",
            retry_min,
            retry_max,
            lost=f"the LISTEN connection to PostgreSQL at {self.address}",
        )

    @property
    def connected(self) -> bool:
        return self._retry.running

    @property
    def listening(self) -> bool:
        return self.connected and self._listener is not None

    async def connect(self) -> None:
        """Reach PostgreSQL once; a server that is not there at start-up is a configuration error."""
        self._retry.start()
        try:
            self._pool = await open_pool(self.url, self.timeout, self.pool_size)
            await self._listen()
        except ERRORS as exc:
            await self.disconnect()
            raise BackendError(f"PostgreSQL at {self.address} is unreachable: {exc}") from exc

    async def disconnect(self) -> None:
        """Close everything; a pending `next_published` then raises `BackendError`."""
        self._retry.stop()
        self._wakeup.set()
        listener, self._listener = self._listener, None
        pool, self._pool = self._pool, None
        self._events.clear()
        if listener is not None:
            try:
                await listener.close(timeout=self.timeout)
            except ERRORS:
                listener.terminate()
        if pool is not None:
            try:
                async with asyncio.timeout(self.timeout):
                    await pool.close()
            except ERRORS:
                pool.terminate()

    async def subscribe(self, channel: str) -> None:
        check_channel(channel)
        await self._listen_to(channel, True)

    async def unsubscribe(self, channel: str) -> None:
        await self._listen_to(channel, False)

    async def _listen_to(self, channel: str, listen: bool) -> None:
        """LISTEN (or UNLISTEN) on the listener now, if there is one; a new listener takes every
        channel in `_channels` anyway. asyncpg quotes the name as an identifier: "name" ("" for ")."""
        async with self._lock:
            if (channel in self._channels) is listen:
                return
            if listen:
                self._channels.add(channel)
            else:
                self._channels.discard(channel)
            listener = self._listener
            if listener is not None:
                change = listener.add_listener if listen else listener.remove_listener
                try:
                    await change(channel, self._on_notification)
                except ERRORS as exc:
                    self._drop_listener(listener, exc)

    async def publish(self, channel: str, message: str) -> None:
        size = len(message.encode())
        if size >= MAX_PAYLOAD:
            raise MessageTooLarge(
                f"message of {size} bytes not sent: PostgreSQL NOTIFY carries under {MAX_PAYLOAD} bytes (UTF-8)"
            )
        check_channel(channel)
        failed = f"cannot publish to PostgreSQL at {self.address}"
        async with self._pooled(failed) as connection:
            try:
                await connection.execute("SELECT pg_notify($1, $2)", channel, message, timeout=self.timeout)
            except ERRORS as exc:
                connection.terminate()  # whatever went wrong, its next user would wait on it again
                # A server error aborts the transaction, and asyncpg's own errors come before the
                # query is written: only a lost or silent connection leaves the outcome open.
                if isinstance(exc, UNCONFIRMED):
                    raise PublishUncertain(f"sent to PostgreSQL at {self.address}, then {self._reason(exc)}") from exc
                raise BackendError(f"{failed}: {self._reason(exc)}") from exc

    async def ping(self) -> None:
        """`SELECT 1` on a pooled connection within `timeout`, or `BackendError`."""
        failed = f"PostgreSQL at {self.address} does not answer"
        async with self._pooled(failed) as connection:
            try:
                await select_one(connection, self.timeout)
            except ERRORS as exc:
                raise BackendError(f"{failed}: {self._reason(exc)}") from exc

    @contextlib.asynccontextmanager
    async def _pooled(self, failed: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, released after; `BackendError` (`failed`: why) when none comes in time."""
        pool = self._pool
        if pool is None:
            raise BackendError("the PostgreSQL backend is not connected")
        try:
            connection = await pool.acquire(timeout=self.timeout)
        except ERRORS as exc:
            raise BackendError(f"{failed}: {self._reason(exc)}") from exc
        try:
            yield connection
        finally:
            with contextlib.suppress(*ERRORS):
                await pool.release(connection, timeout=self.timeout)

    def _reason(self, exc: BaseException) -> str:
        return reason(exc, self.timeout)

    async def next_published(self) -> Event:
        while True:
            if not self.connected:
                raise BackendError("the PostgreSQL backend is disconnected")
            if self._events:
                return self._events.popleft()
            if self._listener is None:
                detail = f"listening again on {len(self._channels)} channel(s)"
                await self._retry.until_back(self._listen, ERRORS, detail)
                self.resubscribed += 1
                continue
            self._wakeup.clear()
            try:
                async with asyncio.timeout(self.health_check):
                    await self._wakeup.wait()
            except TimeoutError:
                await self._check_listener()

    async def _listen(self) -> None:
        """Open the LISTEN connection on every channel wanted now and make it the current one."""
        listener = await asyncpg.connect(self.url, timeout=self.timeout, command_timeout=self.timeout)
        try:
            listener.add_termination_listener(self._on_termination)
            async with self._lock:
                for channel in self._channels:
                    await listener.add_listener(channel, self._on_notification)
                if not self.connected:  # disconnect() ran meanwhile
                    listener.terminate()
                    return
                self._listener = listener
        except BaseException:
            listener.terminate()
            raise

    async def _check_listener(self) -> None:
        """Quiet for a while: make sure the connection is alive, not silently cut off."""
        listener = self._listener
        if listener is None:
            return
        try:
            async with self._lock:
                await listener.execute("SELECT 1", timeout=self.timeout)
        except ERRORS as exc:
            self._drop_listener(listener, exc)

    def _drop_listener(self, listener: asyncpg.Connection, exc: BaseException) -> None:
        if listener is self._listener:
            self._listener = None
            self._retry.lost(self._reason(exc))
            self._wakeup.set()
        listener.terminate()

    def _on_notification(self, listener: asyncpg.Connection, pid: int, channel: str, payload: str) -> None:
        if channel in self._channels:
            self._events.append(Event(channel, payload))
            self._wakeup.set()

    def _on_termination(self, listener: asyncpg.Connection) -> None:
        if listener is self._listener:
            self._listener = None
            self._retry.lost("the server closed the LISTEN connection")
            self._wakeup.set()


async def open_pool(url: str, seconds: float, size: int) -> asyncpg.Pool:
    """A small pool for one statement at a time: no floor of idle connections kept up in the
    background (a call connects), every wait bounded by `seconds`, no RESET on release."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url, min_size=0, max_size=size, timeout=seconds, command_timeout=seconds, reset=_nothing_to_reset
    )
    return pool


async def select_one(connection: asyncpg.Connection, seconds: float) -> None:
    """One round trip; a connection that did not answer (timed out, cancelled) is closed: released
    as it is, it would wait for asyncpg's cancel request, which a stopped server never answers."""
    answered = False
    try:
        await connection.fetchval("SELECT 1", timeout=seconds)
        answered = True
    finally:
        if not answered:
            connection.terminate()


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    """Each statement is a transaction of its own, leaving no session state: skip the RESET round trip."""


def reason(exc: BaseException, timeout: float) -> str:
    """Why a call failed, in words for a log line."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, asyncpg.InternalClientError):
        return f"connection unusable, likely ended by the server; asyncpg: {describe(exc)}"
    return describe(exc)


def check_channel(channel: str) -> None:
    if not channel or "\x00" in channel or len(channel.encode()) > MAX_CHANNEL_BYTES:
        raise ValueError(f"PostgreSQL channel names are 1 to {MAX_CHANNEL_BYTES} UTF-8 bytes, without NUL: {channel!r}")
