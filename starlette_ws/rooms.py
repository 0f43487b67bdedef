"""Rooms: a chat per room whose messages are numbered, kept for a while and recovered on reconnect.

A client that connects with `?since=<offset>&epoch=<epoch>` first gets what it missed, then what
is said live, with no gap and no duplicate at the seam: it joins the room's channel HELD (what
arrives meanwhile is kept, not sent), reads the history, then is released with the replay first
and, of what was held, only the entries after the last offset the replay knew of.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.websockets import WebSocket

from starlette_ws import pages, params
from starlette_ws.backends import BackendError, MessageTooLarge
from starlette_ws.endpoint import settings_of
from starlette_ws.history import HistoryError, RoomStore, room_channel
from starlette_ws.hubs import Rooms
from starlette_ws.members import MemberEndpoint
from starlette_ws.params import Error, InvalidValue

logger = logging.getLogger("starlette_ws.rooms")

ROOM = re.compile(r"[A-Za-z0-9_.-]{1,64}")
EPOCH = re.compile(r"[0-9a-f]{1,64}")
OFFSET = re.compile(r'\{"offset":(\d+),')
NOT_STARTED = "Room history not available: try again later"


def parse_room(text: str) -> str:
    if ROOM.fullmatch(text) is None:
        raise InvalidValue("string_pattern_mismatch", "Room names are 1-64 characters of A-Z a-z 0-9 _ . -")
    return text


def parse_since(text: str) -> int:
    value = params.parse_int(text)
    if value < 0:
        raise InvalidValue("greater_than_equal", "Input should be greater than or equal to 0")
    return value


def parse_epoch(text: str) -> str:
    if EPOCH.fullmatch(text) is None:
        raise InvalidValue("string_pattern_mismatch", "An epoch is a string of hex digits")
    return text


def offset_of(text: str) -> int | None:
    """The offset of an entry's payload (see `history.payload`); None for any other text."""
    match = OFFSET.match(text)
    return int(match.group(1)) if match else None


def after(text: str, cutoff: int) -> bool:
    """Whether a live delivery is still to be sent once the replay knew of offsets up to `cutoff`."""
    offset = offset_of(text)
    return offset is None or offset > cutoff


def compact(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def rest_of(value: dict[str, Any]) -> str:
    """A JSON object's text after its `{`: what `RoomStore.append` numbers."""
    return compact(value)[1:]


def members_of(ids: list[str]) -> list[int | str]:
    return [int(member) if member.isdigit() else member for member in ids]


class RoomEndpoint(MemberEndpoint):
    params = (
        params.path("room", parse_room),
        params.path("client_id", params.parse_int),
        params.query("since", parse_since),
        params.query("epoch", parse_epoch),
    )
    rooms: Rooms | None = None

    def admit(self, websocket: WebSocket, values: dict[str, Any]) -> list[Error]:
        self.room: str = values["room"]
        self.since: int | None = values["since"]
        self.epoch: str | None = values["epoch"]
        self.member = uuid.uuid4().hex
        self.channel = room_channel(settings_of(websocket).channel_prefix, self.room)
        return super().admit(websocket, values)

    async def on_connect(self, websocket: WebSocket) -> None:
        try:
            self.hub = hub = await self.hubs.acquire()
            self.rooms = rooms = await self.hubs.rooms(hub)
        except Exception:  # BackendError, HistoryError, or an engine that is not installed
            logger.exception("Room connection closed: the %s:// engine could not start", self.hubs.scheme)
            await websocket.accept()
            await self.close(websocket, status.WS_1011_INTERNAL_ERROR, NOT_STARTED)
            return
        await websocket.accept()
        store = rooms.store
        await rooms.here(self.room, self.member, str(self.client_id))
        self.connection = connection = await hub.join(self.channel, websocket, held=True)
        members = members_of(await store.members(self.room))
        first = [compact({"type": "presence", "room": self.room, "members": members})]
        cutoff = 0
        if self.since is not None:
            replay = await store.replay(self.room, self.since, self.epoch)
            if replay.missed != 0:
                gap = {"type": "gap", "room": self.room, "offset": self.since, "epoch": replay.epoch}
                first.append(compact({**gap, "missed": replay.missed}))
            first.extend(entry.payload for entry in replay.entries)
            cutoff = replay.last  # every replayed entry's offset is at most the room's last
        connection.release(first, lambda text: after(text, cutoff))
        await self.append(store, "join")

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        assert self.rooms is not None
        if not self.bucket.take():
            await self.flooded(websocket)
            return
        try:
            kept = await self.append(self.rooms.store, "message", data)
        except MessageTooLarge as exc:
            await self.too_large(websocket, exc)
            return
        if not kept:
            await self.close(websocket, status.WS_1011_INTERNAL_ERROR, NOT_STARTED)

    async def append(self, store: RoomStore, kind: str, text: str | None = None) -> bool:
        """Number and keep an entry; False (logged) when the engine did not, `MessageTooLarge`
        raised when it cannot carry it."""
        entry: dict[str, Any] = {"type": kind, "room": self.room, "client_id": self.client_id}
        if text is not None:
            entry["text"] = text
        entry["time"] = round(time.time(), 3)
        try:
            await store.append(self.room, rest_of(entry))
        except MessageTooLarge:
            raise
        except (HistoryError, BackendError) as exc:
            logger.warning("Room %r: %s entry not kept: %s", self.room, kind, exc)
            return False
        return True

    async def on_leave(self) -> None:
        if self.rooms is None:
            return
        try:
            await self.rooms.gone(self.room, self.member)
        except Exception as exc:  # the heartbeat no longer refreshes it: it expires
            logger.warning("Room %r: leaving not recorded: %s", self.room, exc)
        if self.connection is not None:
            await self.append(self.rooms.store, "leave")


async def presence(request: Request) -> Response:
    try:
        room = parse_room(request.path_params["room"])
    except InvalidValue as exc:
        error: Error = {"type": exc.type, "loc": ["path", "room"], "msg": exc.msg, "input": request.path_params["room"]}
        return JSONResponse({"detail": [error]}, status_code=status.HTTP_404_NOT_FOUND)
    store = await request.app.state.hubs.store()
    return JSONResponse({"room": room, "members": members_of(await store.members(room))})


async def rooms_page(request: Request) -> Response:
    store = await request.app.state.hubs.store()
    rooms = {room: members_of(members) for room, members in (await store.rooms()).items()}
    return pages.render(request, "rooms", {"rooms": rooms})


async def room_page(request: Request) -> Response:
    try:
        room = parse_room(request.path_params["room"])
    except InvalidValue as exc:
        return PlainTextResponse(exc.msg, status_code=status.HTTP_404_NOT_FOUND)
    return pages.render(request, "room", {"room": room, "page": "rooms"})
