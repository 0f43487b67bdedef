"""Rooms' history and presence, in the broadcast engine (see `base.RoomStore`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette_ws.backends.memory import MemoryBus
from starlette_ws.history.base import (
    Entry,
    HistoryError,
    HistoryUncertain,
    Position,
    Replay,
    RoomStore,
    pack,
    payload,
    room_channel,
    unpack,
)

__all__ = [
    "Entry",
    "HistoryError",
    "HistoryUncertain",
    "Position",
    "Replay",
    "RoomStore",
    "pack",
    "payload",
    "room_channel",
    "store_for_url",
    "unpack",
]


def store_for_url(url: str, prefix: str, history: int, seconds: float, bus: MemoryBus | None = None) -> RoomStore:
    """The store of the broadcast engine at `url`; `memory://` publishes on `bus` (the hubs')."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from starlette_ws.history.memory import MemoryStore

        return MemoryStore(url, prefix, history, seconds, bus)
    if scheme in ("redis", "rediss"):
        from starlette_ws.history.redis import RedisStore  # type: ignore[import-not-found,unused-ignore]

        store: RoomStore = RedisStore(url, prefix, history, seconds)
        return store
    if scheme in ("postgres", "postgresql"):
        from starlette_ws.history.postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]

        store = PostgresStore(url, prefix, history, seconds)
        return store
    raise ValueError(f"No room history for {scheme!r} URLs")
