"""Rooms: a chat per room whose messages are numbered, kept for a while and recovered.

A connection joins the room's stream held (what arrives meanwhile is kept), records its member,
reads the history and the member list, and only then is accepted: an engine that cannot do all
of that refuses the connection (1013, with why) before anyone is told it arrived. It is sent the
member list, then what it missed after `?since=<offset>&epoch=<epoch>` (or a `gap`), or without
`since` the newest kept messages up to ROOM_RECENT_BYTES, each send waiting for the client to
read; then the stream takes over from the last of them (`recovery`). Arrivals and departures
are not history: they go to whoever is in the room now, once per client id.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.websockets import WebSocket

from starlette_ws import metrics, pages, params
from starlette_ws.auth import api_key_errors
from starlette_ws.backends import BackendError, MessageTooLarge
from starlette_ws.endpoint import settings_of
from starlette_ws.history import HistoryError, HistoryUncertain, room_channel
from starlette_ws.hubs import Busy, Rooms
from starlette_ws.members import MemberEndpoint
from starlette_ws.params import Error, InvalidValue
from starlette_ws.presence import members_of
from starlette_ws.ratelimit import ConnectGate, SharedBuckets
from starlette_ws.recovery import Member, RoomStream, compact, gap, recent
from starlette_ws.tokens import Identity, Tokens, for_room, refusal

logger = logging.getLogger("starlette_ws.rooms")

ROOM = re.compile(r"[A-Za-z0-9_.-]{1,64}")
EPOCH = re.compile(r"[0-9a-f]{1,64}")
CLIENT_ID = re.compile(r"0|[1-9][0-9]{0,18}")
NOT_AVAILABLE = "Room store not available: try again later"
EXPIRED = 4001
EXPIRED_REASON = "Token expired: connect again with a new token"
BUSY = "Too many room connections being set up: try again later"


def parse_room(text: str) -> str:
    if ROOM.fullmatch(text) is None or text in (".", ".."):  # a browser takes those as path steps
        raise InvalidValue(
            "string_pattern_mismatch", "Room names are 1-64 characters of A-Z a-z 0-9 _ . - (not . or ..)"
        )
    return text


def parse_client_id(text: str) -> int:
    """A room's client ids are canonical: one spelling per number, so one identity per client."""
    if CLIENT_ID.fullmatch(text) is None:
        raise InvalidValue(
            "string_pattern_mismatch",
            "A room client id is a decimal number of at most 19 digits, without sign, leading zeros, _ or spaces",
        )
    return int(text)


def parse_since(text: str) -> int:
    value = params.parse_int(text)
    if value < 0:
        raise InvalidValue("greater_than_equal", "Input should be greater than or equal to 0")
    return value


def parse_epoch(text: str) -> str:
    if EPOCH.fullmatch(text) is None:
        raise InvalidValue("string_pattern_mismatch", "An epoch is a string of hex digits")
    return text


def rest_of(value: dict[str, Any]) -> str:
    """A JSON object's text after its `{`: what `RoomStore.append` numbers."""
    return compact(value)[1:]


class RoomEndpoint(MemberEndpoint):
    params = (
        params.path("room", parse_room),
        params.path("client_id", parse_client_id),
        params.query("since", parse_since),
        params.query("epoch", parse_epoch),
        params.query("token"),
    )
    rooms: Rooms | None = None
    stream: RoomStream | None = None
    joined = False  # accepted: its departure is announced (its arrival was, unless another tab was there)
    identity: Identity | None = None  # the token's, when rooms need one
    read_only = False  # its token lets it read the room, not send in it
    expiry: asyncio.TimerHandle | None = None
    shared_bucket = False

    def admit(self, websocket: WebSocket, values: dict[str, Any]) -> list[Error]:
        self.room: str = values["room"]
        self.since: int | None = values["since"]
        self.epoch: str | None = values["epoch"]
        self.member = uuid.uuid4().hex
        self.channel = room_channel(settings_of(websocket).channel_prefix, self.room)
        errors = super().admit(websocket, values)
        tokens: Tokens | None = websocket.app.state.tokens
        if tokens is not None:
            self.identity, token_errors = tokens.identify(values["token"])
            if self.identity is not None and self.room is not None and self.client_id is not None:
                token_errors = for_room(self.identity, self.client_id, self.room)
                self.read_only = not self.identity.may_send(self.room)
            errors += token_errors
        return errors

    def limit(self, websocket: WebSocket) -> list[Error]:
        by_address: ConnectGate
        by_client_id: ConnectGate
        by_address, by_client_id = websocket.app.state.room_gates
        address = websocket.client.host if websocket.client else ""
        if not by_address.take(address):
            metrics.ROOM_CONNECTS_REFUSED.labels(reason="address").inc()
            return [self.too_often(["client"], address, "from this address")]
        if not by_client_id.take(str(self.client_id)):
            metrics.ROOM_CONNECTS_REFUSED.labels(reason="client_id").inc()
            return [self.too_often(["path", "client_id"], str(self.client_id), "for this client id")]
        return []

    @staticmethod
    def too_often(loc: list[str], value: str, whose: str) -> Error:
        return params.error("rate_limited", loc, f"Too many room connections {whose}: try again later", value)

    async def on_connect(self, websocket: WebSocket) -> None:
        outage = self.hubs.room_outage
        buckets: SharedBuckets = websocket.app.state.room_buckets
        self.bucket, self.shared_bucket = buckets.acquire(str(self.client_id)), True  # one rate per client id
        try:
            self.hub = hub = await self.hubs.acquire()
            self.rooms = rooms = await self.hubs.rooms(hub)
            probed = self.hubs.probed
            if not probed.ok:  # known to be down: no need to wait for it to time out again
                raise HistoryError(probed.error)
            async with rooms.admitting():
                self.connection = connection = await hub.join(self.channel, websocket)
                self.stream = stream = rooms.stream(self.room, self.channel)
                member = stream.add(connection, self.client_id)
                arrived = await rooms.presence.here(self.room, self.member, str(self.client_id))
                replay = await rooms.store.replay(self.room, self.since, self.epoch)
                present = members_of(await rooms.store.members(self.room))
        except (HistoryError, BackendError, ImportError) as exc:  # ImportError: an engine not installed
            metrics.ROOM_CONNECTS_REFUSED.labels(reason="store").inc()
            outage.failed(f"room connections refused ({type(exc).__name__}: {exc})", time.monotonic())
            await self.refuse(websocket, NOT_AVAILABLE)
            return
        except Busy:
            metrics.ROOM_CONNECTS_REFUSED.labels(reason="busy").inc()
            await self.refuse(websocket, BUSY)
            return
        outage.ended()
        await websocket.accept()
        self.joined = True
        if self.identity is not None:
            delay = max(0.0, self.identity.expires - time.time())
            self.expiry = asyncio.get_running_loop().call_later(delay, self.expire)
        await self.send_first(websocket, member, replay, present)
        if arrived:
            await self.announce("join")

    async def refuse(self, websocket: WebSocket, reason: str) -> None:
        """1013 and why: accepted first, for a close before `accept()` reaches a client as a bare 403."""
        await websocket.accept()
        await self.close(websocket, status.WS_1013_TRY_AGAIN_LATER, reason)

    async def send_first(self, websocket: WebSocket, member: Member, replay: Any, present: list[int | str]) -> None:
        """The member list, then the history, each as the client reads it; then the stream's turn."""
        assert self.stream is not None
        await websocket.send_text(compact({"type": "presence", "room": self.room, "members": present}))
        if self.since is None:
            entries = recent(replay, settings_of(websocket).room_recent_bytes)
        else:
            if replay.missed != 0:
                metrics.ROOM_GAPS.inc()
                await websocket.send_text(gap(self.room, self.since, replay))
            entries = [entry.payload for entry in replay.entries]
        for text in entries:
            await websocket.send_text(text)
        self.stream.release(member, replay.position)

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        assert self.rooms is not None and self.connection is not None
        if self.read_only:
            reason = f"Read-only: this token may not send in room {self.room!r}"
            await self.close(websocket, status.WS_1008_POLICY_VIOLATION, reason)
            return
        if not self.bucket.take():
            await self.flooded(websocket)
            return
        entry = {"type": "message", "room": self.room, "client_id": self.client_id, "text": data}
        entry["time"] = round(time.time(), 3)
        try:
            seen = self.stream.last if self.stream is not None else None
            await self.rooms.store.append(self.room, rest_of(entry), seen)
        except MessageTooLarge as exc:
            await self.too_large(websocket, exc)
        except (HistoryError, BackendError) as exc:
            # The line was not kept, or (uncertain) may have been: then it reaches everyone in
            # order as any other entry, the sender too.
            metrics.ROOM_STORE_ERRORS.labels(operation="append").inc()
            logger.warning("Room %r: message not kept: %s", self.room, exc)
            sent = None if isinstance(exc, HistoryUncertain) else False
            error = {"type": "error", "room": self.room, "text": data, "sent": sent, "reason": NOT_AVAILABLE}
            self.connection.send_text_nowait(compact(error))

    def expire(self) -> None:
        """The token's `exp`: closed with 4001; the client comes back with a new token and `since`."""
        if self.closed_with is None and self.connection is not None:
            metrics.ROOM_TOKENS_EXPIRED.inc()
            self.closed_with = EXPIRED
            self.connection.close(EXPIRED, EXPIRED_REASON)

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        if self.shared_bucket:
            websocket.app.state.room_buckets.release(str(self.client_id))
        await super().on_disconnect(websocket, close_code)

    async def announce(self, kind: str) -> None:
        assert self.rooms is not None
        change = {"type": kind, "room": self.room, "client_id": self.client_id, "time": round(time.time(), 3)}
        await self.rooms.presence.announce(self.room, self.channel, change)

    async def on_leave(self) -> None:
        if self.rooms is None:
            return
        if self.connection is not None:
            await self.rooms.forget(self.channel, self.connection)
        try:
            left = await self.rooms.presence.gone(self.room, self.member)
        except (HistoryError, BackendError) as exc:  # the heartbeat no longer refreshes it: it expires
            self.hubs.room_outage.failed(f"leaving room {self.room!r} not recorded ({exc})", time.monotonic())
            return
        if left and self.joined:
            await self.announce("leave")


def viewer(request: Request) -> tuple[Callable[[str], bool] | None, list[Error]]:
    """Which rooms an HTTP request may see (presence, the listing): all while rooms need no token
    or with an API key, those its `?token=` may read, or none and why."""
    tokens: Tokens | None = request.app.state.tokens
    if tokens is None:
        return everything, []
    keys = settings_of(request).api_keys
    authorization = request.headers.get("authorization")
    if authorization is not None and keys and authorization.lstrip()[:7].lower() == "bearer ":  # Basic: a proxy's
        errors = api_key_errors(authorization, keys)
        return (None, errors) if errors else (everything, [])
    identity, errors = tokens.identify(request.query_params.get("token"))
    return (None, errors) if identity is None else (identity.may_read, [])


def everything(room: str) -> bool:
    return True


def unauthorized(errors: list[Error]) -> Response:
    headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse({"detail": errors}, status_code=status.HTTP_401_UNAUTHORIZED, headers=headers)


async def presence(request: Request) -> Response:
    try:
        room = parse_room(request.path_params["room"])
    except InvalidValue as exc:
        refused = params.error(exc.type, ["path", "room"], exc.msg, request.path_params["room"])
        return JSONResponse({"detail": [refused]}, status_code=status.HTTP_404_NOT_FOUND)
    sees, errors = viewer(request)
    if sees is None:
        return unauthorized(errors)
    if not sees(room):
        return unauthorized(
            [refusal("room_not_permitted", f"The token does not permit room {room!r}", ["path", "room"])]
        )
    store = await request.app.state.hubs.store()
    return JSONResponse({"room": room, "members": members_of(await store.members(room))})


async def rooms_page(request: Request) -> Response:
    sees, errors = viewer(request)
    rooms: dict[str, list[int | str]] = {}
    if sees is not None:
        store = await request.app.state.hubs.store()
        rooms = {room: members_of(members) for room, members in (await store.rooms()).items() if sees(room)}
    context = {"rooms": rooms, "errors": errors, **_token_context(request)}
    code = status.HTTP_401_UNAUTHORIZED if sees is None else status.HTTP_200_OK
    response = pages.render(request, "rooms", context)
    response.status_code = code
    return response


async def room_page(request: Request) -> Response:
    try:
        room = parse_room(request.path_params["room"])
    except InvalidValue as exc:
        return PlainTextResponse(exc.msg, status_code=status.HTTP_404_NOT_FOUND)
    context: dict[str, Any] = {"room": room, "page": "rooms", "errors": [], **_token_context(request)}
    tokens: Tokens | None = request.app.state.tokens
    if tokens is not None:
        identity, errors = tokens.identify(request.query_params.get("token"))
        if identity is not None:
            context["client_id"] = identity.client_id
            context["read_only"] = not identity.may_send(room)
            errors = (
                []
                if identity.may_read(room)
                else [refusal("room_not_permitted", f"The token does not permit room {room!r}")]
            )
        context["errors"] = errors
    return pages.render(request, "room", context)


def _token_context(request: Request) -> dict[str, Any]:
    return {"token_required": request.app.state.tokens is not None, "token": request.query_params.get("token")}
