"""Rooms' history and presence, in the broadcast engine (see `base.RoomStore`)."""

from starlette_ws.history.base import (
    Entry,
    HistoryError,
    Replay,
    RoomStore,
    payload,
    room_channel,
)

__all__ = ["Entry", "HistoryError", "Replay", "RoomStore", "payload", "room_channel"]
