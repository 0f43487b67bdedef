from __future__ import annotations

from typing import Any

from starlette import status
from starlette.websockets import WebSocket

from starlette_ws import params
from starlette_ws.backends import BackendError, MessageTooLarge
from starlette_ws.endpoint import logger
from starlette_ws.members import MemberEndpoint

CHANNEL = "chat"
NOT_STARTED = "Broadcast backend not started: run the app's lifespan"


class ChatEndpoint(MemberEndpoint):
    """Twin of the tutorial's third app, with its broadcast behind the hub."""

    params = (params.path("client_id", params.parse_int),)

    async def on_connect(self, websocket: WebSocket) -> None:
        # The hub first: without the lifespan, starting it may take the event loop's turn, and a
        # client told it is connected must be in the chat (memory://: `join` never waits).
        try:
            self.hub = hub = await self.hubs.acquire()
        except BackendError as exc:  # no lifespan ran, and the first connection could not connect
            logger.error(
                "Chat connection closed: the %s:// broadcast backend is not started and could not connect (%s); "
                "run the app's lifespan (uvicorn does; with Starlette's TestClient: `with TestClient(app)`)",
                self.hubs.engine.scheme,
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
            await self.flooded(websocket)
            return
        self.connection.send_text_nowait(f"You wrote: {data}")
        says = f"Client #{self.client_id} says: {data}"
        try:
            await self.hub.broadcast(self.connection, CHANNEL, says)
        except MessageTooLarge as exc:
            await self.too_large(websocket, exc)

    async def on_leave(self) -> None:
        if self.hub is not None and self.connection is not None:
            await self.hub.publish(CHANNEL, f"Client #{self.client_id} left the chat")
