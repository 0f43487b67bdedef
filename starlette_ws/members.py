"""What the chat's and the rooms' endpoints share: their socket is a member of a hub."""

from __future__ import annotations

from starlette.websockets import WebSocket

from starlette_ws.endpoint import TextEndpoint
from starlette_ws.hub import Connection, Hub


class MemberEndpoint(TextEndpoint):
    """A `TextEndpoint` whose connection, once it has joined, is sent to through the hub, so its
    own close goes out behind what the hub has queued for it."""

    connection: Connection | None = None
    hub: Hub | None = None

    def close_code(self, reported: int) -> int:
        if self.closed_with is None and self.connection is not None and self.connection.closed_with is not None:
            return self.connection.closed_with  # the hub closed it: a slow client (1013)
        return super().close_code(reported)

    async def send_close(self, websocket: WebSocket, code: int, reason: str) -> None:
        if self.connection is None:
            await super().send_close(websocket, code, reason)
        else:
            self.connection.close_after_queue(code, reason)
