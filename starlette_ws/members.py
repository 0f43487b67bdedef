"""What the chat's and the rooms' endpoints share: their socket is a member of a hub."""

from __future__ import annotations

from typing import Any

import anyio
from starlette import status
from starlette.websockets import WebSocket

from starlette_ws.backends import MessageTooLarge
from starlette_ws.connection import Connection
from starlette_ws.deny import MAX_REASON_BYTES, truncate_utf8
from starlette_ws.endpoint import TextEndpoint, settings_of
from starlette_ws.hub import Hub
from starlette_ws.hubs import Hubs
from starlette_ws.params import Error
from starlette_ws.ratelimit import TokenBucket


class MemberEndpoint(TextEndpoint):
    """A `TextEndpoint` whose connection, once it has joined, is sent to through the hub, so its
    own close goes out behind what the hub has queued for it. Its client says at most the chat's
    rate of lines, each within what the engine carries."""

    connection: Connection | None = None
    hub: Hub | None = None

    def admit(self, websocket: WebSocket, values: dict[str, Any]) -> list[Error]:
        self.client_id: int = values["client_id"]
        self.hubs: Hubs = websocket.app.state.hubs
        settings = settings_of(websocket)
        self.bucket = TokenBucket(settings.chat_rate_per_second, settings.chat_rate_burst)
        return []

    async def flooded(self, websocket: WebSocket) -> None:
        """The client said more than `bucket` allows: closed with 1008 and the limit."""
        reason = f"Rate limit: {self.bucket.rate:g} messages/s, bursts of {self.bucket.burst}"
        await self.close(websocket, status.WS_1008_POLICY_VIOLATION, reason)

    async def too_large(self, websocket: WebSocket, exc: MessageTooLarge) -> None:
        """A line the engine cannot carry: only its sender can be told, with 1009 and why."""
        await self.close(websocket, status.WS_1009_MESSAGE_TOO_BIG, truncate_utf8(str(exc), MAX_REASON_BYTES))

    def close_code(self, reported: int) -> int:
        if self.closed_with is None and self.connection is not None and self.connection.closed_with is not None:
            return self.connection.closed_with  # the hub closed it: a slow client (1013)
        return super().close_code(reported)

    async def send_close(self, websocket: WebSocket, code: int, reason: str) -> None:
        if self.connection is None:
            await super().send_close(websocket, code, reason)
        else:
            self.connection.close(code, reason)

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        if self.hub is None:
            return
        # Starlette's TestClient cancels the app as soon as it has sent the client's close; the
        # goodbye and the hub's shutdown are bounded (timeouts, CLOSE_GRACE), so they finish.
        # The hub is released whatever the goodbye meets (an engine error): else, without the
        # lifespan, it would outlive its last connection with its engine connections open.
        with anyio.CancelScope(shield=True):
            try:
                if self.connection is not None:
                    await self.hub.leave(self.connection)
                await self.on_leave()
            finally:
                await self.hubs.release(self.hub)

    async def on_leave(self) -> None:
        """After the connection left its channel, before the hub is released: the goodbye."""
