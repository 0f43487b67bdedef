"""Rooms' history and presence, in the broadcast engine (see `base.RoomStore`); `engines` picks one by URL."""

from __future__ import annotations

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
    "unpack",
]
