"""Rooms' history and presence in PostgreSQL, for `postgres://` (see `base.RoomStore`).

Three tables, shared by every deployment of the database and told apart by a `prefix` column (so
no identifier is ever built from configuration): a row per room (its epoch and last offset),
the retained entries, and the members present. `connect` creates them when missing.

`append` is one statement: it locks the room's row while it takes the next offset, stores the
entry, trims the room and queues the NOTIFY. PostgreSQL delivers notifications at commit, in
commit order, and the row lock makes commit order offset order: every listening process
receives a room's entries in offset order.
"""

from __future__ import annotations

import contextlib
import secrets
from collections import defaultdict

import asyncpg

from starlette_ws import metrics
from starlette_ws.backends.base import MessageTooLarge, address_of
from starlette_ws.backends.postgres import (
    ERRORS,
    MAX_PAYLOAD,
    PORT,
    UNCONFIRMED,
    check_channel,
    open_pool,
    reason,
    select_one,
)
from starlette_ws.backends.retry import describe
from starlette_ws.history.base import (
    Entry,
    HistoryError,
    HistoryUncertain,
    Kept,
    Position,
    Replay,
    pack,
    payload,
    replay_of,
    room_channel,
)
from starlette_ws.history.postgres_sql import (
    ABSENT,
    APPEND,
    CLEAN,
    CLIENT_OF,
    MEMBERS,
    PRESENT,
    REPLAY,
    RESET,
    ROOMS,
    SCHEMA,
    TABLES,
    TOP,
    TURN,
)


class PostgresStore(Kept):
    def __init__(
        self, url: str, prefix: str, history: int, seconds: float, *, timeout: float = 2.0, pool_size: int = 10
    ) -> None:
        if history < 1:
            raise ValueError("a room keeps at least one entry (ROOM_HISTORY >= 1)")
        check_channel(room_channel(prefix, "x" * 64))  # the longest channel a room can get
        super().__init__(prefix, history, seconds)
        self.url = url
        self.timeout = timeout
        self.pool_size = pool_size
        self.address = address_of(url, PORT)
        self._pool: asyncpg.Pool | None = None

    async def connect(self) -> None:
        try:
            self._pool = await open_pool(self.url, self.timeout, self.pool_size)
            await self._create_tables()
        except BaseException as exc:  # nothing half-connected is kept, whatever went wrong
            await self.disconnect()
            if isinstance(exc, asyncpg.PostgresError):  # reached, then refused (a role that may not CREATE)
                raise HistoryError(f"PostgreSQL at {self.address} cannot create {TABLES}: {self._reason(exc)}") from exc
            if isinstance(exc, ERRORS):
                raise HistoryError(f"PostgreSQL at {self.address} is unreachable: {self._reason(exc)}") from exc
            raise

    async def disconnect(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except ERRORS:
                pool.terminate()

    async def append(self, room: str, rest: str, seen: Position | None = None) -> Entry:
        size = len(pack(1, "0" * 16, payload(1, "0" * 16, rest)).encode())  # the smallest it can be
        if size >= MAX_PAYLOAD:
            raise MessageTooLarge(self._too_large(size))
        channel = room_channel(self.prefix, room)
        args = (self.prefix, room, new_epoch(), rest, self.history, self.seconds, channel)
        try:
            row = await self._fetchrow(APPEND, *args)
        except asyncpg.InvalidParameterValueError as exc:
            if "payload string too long" not in str(exc):
                raise HistoryError(f"PostgreSQL at {self.address} refused the entry: {describe(exc)}") from exc
            raise MessageTooLarge(self._too_large(size + 1)) from exc
        except UNCONFIRMED as exc:
            raise HistoryUncertain(f"sent to PostgreSQL at {self.address}, then {self._reason(exc)}") from exc
        except ERRORS as exc:
            raise HistoryError(f"cannot append to PostgreSQL at {self.address}: {self._reason(exc)}") from exc
        if row is None:  # the upsert returns its row, always
            raise HistoryError(f"PostgreSQL at {self.address} returned no entry")
        return Entry(row["offset"], row["epoch"], row["payload"])

    async def replay(self, room: str, since: int | None, epoch: str | None) -> Replay:
        try:
            for _ in range(3):
                rows = await self._fetch(REPLAY, self.prefix, room, new_epoch(), self.seconds)
                if rows:
                    break
            else:
                raise HistoryError(f"PostgreSQL at {self.address} lost room {room!r} while it was read")
        except ERRORS as exc:
            raise HistoryError(f"cannot read history from PostgreSQL at {self.address}: {self._reason(exc)}") from exc
        current, last = rows[0]["epoch"], rows[0]["last_offset"]
        retained = [Entry(row["offset"], current, row["payload"]) for row in rows if row["offset"] is not None]
        return replay_of(current, retained, last, since, epoch)

    async def reset(self, room: str) -> None:
        try:
            await self._fetch(RESET, self.prefix, room, new_epoch())
        except ERRORS as exc:
            raise HistoryError(f"cannot reset history in PostgreSQL at {self.address}: {self._reason(exc)}") from exc

    async def top(self, room: str) -> Position | None:
        try:
            row = await self._fetchrow(TOP, self.prefix, room)
        except ERRORS as exc:
            raise HistoryError(f"cannot read history from PostgreSQL at {self.address}: {self._reason(exc)}") from exc
        return None if row is None else Position(row["last_offset"], row["epoch"])

    async def present(self, room: str, member: str, client_id: str, ttl: float) -> bool:
        row = await self._in_turn(client_id, PRESENT, room, member, client_id, ttl)
        return row is not None and bool(row["arrived"])

    async def absent(self, room: str, member: str) -> bool:
        try:
            found = await self._fetchrow(CLIENT_OF, self.prefix, room, member)
        except ERRORS as exc:
            raise HistoryError(f"cannot update presence in PostgreSQL at {self.address}: {self._reason(exc)}") from exc
        if found is None:
            return False
        row = await self._in_turn(found["client_id"], ABSENT, room, member)
        return row is not None and bool(row["left"])

    async def members(self, room: str) -> list[str]:
        try:
            rows = await self._fetch(MEMBERS, self.prefix, room)
        except ERRORS as exc:
            raise HistoryError(f"cannot read presence from PostgreSQL at {self.address}: {self._reason(exc)}") from exc
        return sorted(row["client_id"] for row in rows)

    async def rooms(self) -> dict[str, list[str]]:
        try:
            rows = await self._fetch(ROOMS, self.prefix)
        except ERRORS as exc:
            raise HistoryError(f"cannot read presence from PostgreSQL at {self.address}: {self._reason(exc)}") from exc
        found: defaultdict[str, list[str]] = defaultdict(list)
        for row in rows:
            found[row["room"]].append(row["client_id"])
        return {room: sorted(members) for room, members in sorted(found.items())}

    async def clean(self) -> int:
        """Delete what is past retention or gone (see CLEAN); how many rooms went."""
        try:
            row = await self._fetchrow(CLEAN, self.prefix, self.seconds)
        except ERRORS as exc:
            raise HistoryError(f"cannot clean up PostgreSQL at {self.address}: {self._reason(exc)}") from exc
        return 0 if row is None else int(row["rooms"])

    async def _create_tables(self) -> None:
        connection = await self._acquire()
        try:
            async with connection.transaction():
                await connection.execute(SCHEMA)
        finally:
            await self._release(connection)

    async def _fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        rows = await self._fetch(query, *args)
        return rows[0] if rows else None

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        """Run one statement; tables dropped since `connect` are created again (a new epoch)."""
        try:
            return await self._run(query, args)
        except asyncpg.UndefinedTableError:
            await self._create_tables()
            return await self._run(query, args)

    async def _run(self, query: str, args: tuple[object, ...]) -> list[asyncpg.Record]:
        connection = await self._acquire()
        try:
            rows: list[asyncpg.Record] = await connection.fetch(query, *args)
            return rows
        except ERRORS as exc:
            if not isinstance(exc, asyncpg.PostgresError) or isinstance(exc, asyncpg.ConnectionDoesNotExistError):
                connection.terminate()  # its next user would wait on it again
            raise
        finally:
            await self._release(connection)

    async def _acquire(self) -> asyncpg.Connection:
        """A connection, or `HistoryError`: nothing was sent yet."""
        if self._pool is None:
            raise HistoryError("the PostgreSQL room store is not connected")
        pool = self._pool
        try:
            if pool.get_idle_size() == 0 and pool.get_size() >= self.pool_size:
                metrics.ROOM_POOL_WAITS.inc()
            connection: asyncpg.Connection = await pool.acquire(timeout=self.timeout)
        except ERRORS as exc:
            raise HistoryError(f"cannot reach PostgreSQL at {self.address}: {self._reason(exc)}") from exc
        return connection

    async def _release(self, connection: asyncpg.Connection) -> None:
        if self._pool is not None:
            with contextlib.suppress(*ERRORS):
                await self._pool.release(connection, timeout=self.timeout)

    async def _in_turn(self, client_id: str, query: str, *args: object) -> asyncpg.Record | None:
        """Run a presence change in a transaction that holds the client id's turn in its room."""
        room = args[0]
        try:
            connection = await self._acquire()
            try:
                async with connection.transaction():
                    await connection.execute(TURN, self.prefix, room, client_id)
                    row: asyncpg.Record | None = await connection.fetchrow(query, self.prefix, *args)
                    return row
            except ERRORS as exc:
                if not isinstance(exc, asyncpg.PostgresError) or isinstance(exc, asyncpg.ConnectionDoesNotExistError):
                    connection.terminate()
                raise
            finally:
                await self._release(connection)
        except HistoryError:
            raise
        except ERRORS as exc:
            raise HistoryError(f"cannot update presence in PostgreSQL at {self.address}: {self._reason(exc)}") from exc

    def _too_large(self, size: int) -> str:
        return f"entry of at least {size} bytes not kept: PostgreSQL NOTIFY carries under {MAX_PAYLOAD} bytes (UTF-8)"

    def _reason(self, exc: BaseException) -> str:
        return reason(exc, self.timeout)

    async def ping(self) -> None:
        """`SELECT 1` on a pooled connection within `timeout`, or `HistoryError`."""
        connection = await self._acquire()
        try:
            await select_one(connection, self.timeout)
        except ERRORS as exc:
            raise HistoryError(f"PostgreSQL at {self.address} does not answer: {self._reason(exc)}") from exc
        finally:
            await self._release(connection)


def new_epoch() -> str:
    return secrets.token_hex(8)
