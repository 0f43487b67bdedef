"""The server API: what the application behind the server does to rooms, as JSON over HTTP.

Every route needs `Authorization: Bearer <key>` with one of `API_KEYS`; without `API_KEYS` set
they all answer 404. A refusal is a status and `{"detail": [errors]}`, errors shaped as the
sockets' refusals. What the API says in a room reaches its members as a member's message would,
through the store and the engine, in every process; a removal and a reset travel on the room's
channel as control messages (`recovery.CONTROL`) that no client is ever sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette import status
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starlette_ws import metrics
from starlette_ws.auth import api_key_errors
from starlette_ws.backends import BackendError, MessageTooLarge
from starlette_ws.endpoint import settings_of
from starlette_ws.history import HistoryError, HistoryUncertain, RoomStore, room_channel
from starlette_ws.hubs import Hubs
from starlette_ws.params import Error, InvalidValue, error, missing
from starlette_ws.presence import members_of
from starlette_ws.recovery import CHECK, compact, removal
from starlette_ws.rooms import parse_client_id, parse_epoch, parse_room, parse_since, rest_of

Handler = Callable[[Request], Awaitable[Response]]
MAX_LIMIT = 1000


class Refused(Exception):
    """A request answered with `status` and its errors."""

    def __init__(self, status_code: int, errors: list[Error], headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.errors = errors
        self.headers = headers


def guarded(operation: str, handler: Handler) -> Handler:
    """`handler` behind the API keys, its refusals and engine failures answered as JSON."""

    async def endpoint(request: Request) -> Response:
        keys = settings_of(request).api_keys
        try:
            if not keys:
                msg = "The server API is off: set API_KEYS to turn it on"
                raise Refused(status.HTTP_404_NOT_FOUND, [error("not_found", ["path"], msg)])
            errors = api_key_errors(request.headers.get("authorization"), keys)
            if errors:
                raise Refused(status.HTTP_401_UNAUTHORIZED, errors, {"WWW-Authenticate": "Bearer"})
            response = await handler(request)
        except Refused as exc:
            response = JSONResponse({"detail": exc.errors}, status_code=exc.status_code, headers=exc.headers)
        except HistoryUncertain as exc:
            response = unavailable(f"The room store may have kept it, then failed: {exc}")
        except (HistoryError, BackendError) as exc:
            response = unavailable(f"Room store not available: {exc}")
        metrics.API_REQUESTS.labels(operation=operation, status=str(response.status_code)).inc()
        return response

    return endpoint


def unavailable(msg: str) -> Response:
    detail = [error("unavailable", ["engine"], msg)]
    return JSONResponse(
        {"detail": detail}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"}
    )


def path_value(request: Request, name: str, parse: Callable[[str], Any]) -> Any:
    return checked(parse, request.path_params[name], ["path", name])


def query_value(request: Request, name: str, parse: Callable[[str], Any]) -> Any:
    raw = request.query_params.get(name)
    return None if raw is None else checked(parse, raw, ["query", name])


def checked(parse: Callable[[str], Any], raw: str, loc: list[str]) -> Any:
    try:
        return parse(raw)
    except InvalidValue as exc:
        raise Refused(status.HTTP_422_UNPROCESSABLE_CONTENT, [error(exc.type, loc, exc.msg, raw)]) from None


def parse_limit(text: str) -> int:
    value = parse_since(text)
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidValue("limit", f"Input should be from 1 to {MAX_LIMIT}")
    return value


def message_of(body: Any) -> tuple[str, int | None, list[Error]]:
    """`{"text": str, "client_id": int (optional)}` -> (text, client id); or why not."""
    if not isinstance(body, dict):
        return "", None, [error("model_type", ["body"], "Input should be a JSON object")]
    errors = [
        error("extra_forbidden", ["body", key], "Extra inputs are not permitted")
        for key in body
        if key not in ("text", "client_id")
    ]
    text, client_id = body.get("text"), body.get("client_id")
    if text is None:
        errors.append(missing("body", "text"))
    elif not isinstance(text, str):
        errors.append(error("string_type", ["body", "text"], "Input should be a valid string"))
    elif not _utf8(text):  # a lone surrogate (`\ud800`) that no member could be sent
        errors.append(error("string_unicode", ["body", "text"], "Input should be valid Unicode (no lone surrogates)"))
    if client_id is not None and (
        isinstance(client_id, bool) or not isinstance(client_id, int) or not 0 <= client_id < 10**19
    ):
        errors.append(error("client_id", ["body", "client_id"], "A client id is an integer from 0 to 19 digits"))
    return (text if isinstance(text, str) else ""), client_id, errors


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


async def body_of(request: Request) -> Any:
    """The request's JSON body, read up to MAX_MESSAGE_BYTES (413 past it, 422 when not JSON)."""
    limit = settings_of(request).max_message_bytes
    too_large = Refused(
        status.HTTP_413_CONTENT_TOO_LARGE, [error("too_large", ["body"], f"Request bodies are at most {limit} bytes")]
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise Refused(
            status.HTTP_400_BAD_REQUEST, [error("disconnected", ["body"], "The body did not arrive")]
        ) from None
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise Refused(
            status.HTTP_422_UNPROCESSABLE_CONTENT, [error("json_invalid", ["body"], f"JSON decode error: {exc}")]
        ) from None


async def store_of(request: Request) -> RoomStore:
    hubs: Hubs = request.app.state.hubs
    return await hubs.store()


async def publish(request: Request, room: str, text: str) -> None:
    """A control message on the room's channel, to every process (`BackendError` when it cannot go)."""
    hubs: Hubs = request.app.state.hubs
    hub = await hubs.acquire()
    try:
        if not await hub.publish(room_channel(settings_of(request).channel_prefix, room), text):
            raise BackendError("the broadcast engine did not take the message")
    finally:
        await hubs.release(hub)


async def post_message(request: Request) -> Response:
    room = path_value(request, "room", parse_room)
    text, client_id, errors = message_of(await body_of(request))
    if errors:
        raise Refused(status.HTTP_422_UNPROCESSABLE_CONTENT, errors)
    entry = {"type": "message", "room": room, "client_id": client_id, "text": text, "time": round(time.time(), 3)}
    try:
        kept = await (await store_of(request)).append(room, rest_of(entry))
    except MessageTooLarge as exc:
        raise Refused(status.HTTP_413_CONTENT_TOO_LARGE, [error("too_large", ["body", "text"], str(exc))]) from None
    body = {"room": room, "offset": kept.offset, "epoch": kept.epoch}
    return JSONResponse(body, status_code=status.HTTP_201_CREATED)


async def history(request: Request) -> Response:
    room = path_value(request, "room", parse_room)
    since = query_value(request, "since", parse_since)
    epoch = query_value(request, "epoch", parse_epoch)
    limit = query_value(request, "limit", parse_limit) or MAX_LIMIT
    replay = await (await store_of(request)).replay(room, since, epoch)
    entries = ",".join(entry.payload for entry in replay.entries[:limit])  # each is a JSON object already
    head = compact({"room": room, "epoch": replay.epoch, "last": replay.last, "missed": replay.missed})
    return Response(f'{head[:-1]},"entries":[{entries}]}}', media_type="application/json")


async def reset_history(request: Request) -> Response:
    room = path_value(request, "room", parse_room)
    await (await store_of(request)).reset(room)
    await publish(request, room, CHECK)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def presence(request: Request) -> Response:
    room = path_value(request, "room", parse_room)
    members = members_of(await (await store_of(request)).members(room))
    return JSONResponse({"room": room, "members": members})


async def rooms(request: Request) -> Response:
    found = await (await store_of(request)).rooms()
    return JSONResponse({"rooms": [{"room": room, "members": len(members)} for room, members in found.items()]})


async def remove_member(request: Request) -> Response:
    room = path_value(request, "room", parse_room)
    client_id = path_value(request, "client_id", parse_client_id)
    await publish(request, room, removal(client_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def routes() -> list[Route]:
    return [
        Route("/api/rooms", guarded("rooms", rooms), methods=["GET"], name="api_rooms"),
        Route("/api/rooms/{room}/messages", guarded("post", post_message), methods=["POST"], name="api_messages"),
        Route("/api/rooms/{room}/history", guarded("history", history), methods=["GET"], name="api_history"),
        Route("/api/rooms/{room}/history", guarded("reset", reset_history), methods=["DELETE"], name="api_reset"),
        Route("/api/rooms/{room}/presence", guarded("presence", presence), methods=["GET"], name="api_presence"),
        Route(
            "/api/rooms/{room}/members/{client_id}",
            guarded("remove", remove_member),
            methods=["DELETE"],
            name="api_remove",
        ),
    ]
