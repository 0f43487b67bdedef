from __future__ import annotations

from typing import Any

import anyio
from starlette import status
from starlette.websockets import WebSocket

from starlette_ws import params
from starlette_ws.backends import BackendError, MessageTooLarge
from starlette_ws.deny import MAX_REASON_BYTES, truncate_utf8
from starlette_ws.endpoint import logger, settings_of
from starlette_ws.hubs import Hubs
from starlette_ws.members import MemberEndpoint
from starlette_ws.params import Error
from starlette_ws.ratelimit import TokenBucket

CHANNEL = "chat"
NOT_STARTED = "Broadcast backend not started: run the app's lifespan"


class ChatEndpoint(MemberEndpoint):
    """Twin of the tutorial's third app, with its broadcast behind the hub."""

    params = (params.path("client_id", params.parse_int),)

    def admit(self, websocket: WebSocket, values: dict[str, Any]) -> list[Error]:
        self.client_id: int = values["client_id"]
        self.hubs: Hubs = websocket.app.state.hubs
        settings = settings_of(websocket)
        self.bucket = TokenBucket(settings.chat_rate_per_second, settings.chat_rate_burst)
        return []

    async def on_connect(self, websocket: WebSocket) -> None:
        # The hub first: without the lifespan, starting it may take the event loop's turn, and a
        # client told it is connected must be in the chat (memory://: `join` never waits).
        try:
            self.hub = hub = await self.hubs.acquire()
        except BackendError as exc:  # no lifespan ran, and the first connection could not connect
            logger.error(
                "Chat connection closed: the %s:// broadcast backend is not started and could not connect (%s); "
                "run the app's lifespan (uvicorn does; with Starlette's TestClient: `with TestClient(app)`)",
                self.hubs.scheme,
                exc,
            )
            await websocket.accept()
            await self.close(websocket, status.WS_1011_INTERNAL_ERROR, NOT_STARTED)
            return
        await websocket.accept()
        self.connection = await hub.join(CHANNEL, websocket)

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        assert self.connection is not None and self.hub is not None
        if not self.bucket.take():
            reason = f"Rate limit: {self.bucket.rate:g} messages/s, bursts of {self.bucket.burst}"
            await self.close(websocket, status.WS_1008_POLICY_VIOLATION, reason)
            return
        self.connection.send_text_nowait(f"You wrote: {data}")
        says = f"Client #{self.client_id} says: {data}"
        try:
            await self.hub.broadcast(self.connection, CHANNEL, says)
        except MessageTooLarge as exc:
            await self.close(websocket, status.WS_1009_MESSAGE_TOO_BIG, truncate_utf8(str(exc), MAX_REASON_BYTES))

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        if self.hub is None:
            return
        # Starlette's TestClient cancels the app as soon as it has sent the client's close; the
        # goodbye and the hub's shutdown are bounded (timeouts, CLOSE_GRACE), so they finish.
        with anyio.CancelScope(shield=True):
            if self.connection is not None:
                await self.hub.leave(self.connection)
                await self.hub.publish(CHANNEL, f"Client #{self.client_id} left the chat")
            await self.hubs.release(self.hub)
