"""Apps for the server tests that need something the demos do not have."""

from __future__ import annotations

from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from starlette_ws.app import create_app
from starlette_ws.endpoint import TextEndpoint


class FaultyEndpoint(TextEndpoint):
    """Echoes, except that the message `boom` raises inside the handler."""

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        if data == "boom":
            raise RuntimeError("boom inside on_receive")
        await websocket.send_text(data)


faulty_app = create_app()
faulty_app.router.routes.append(WebSocketRoute("/faulty", FaultyEndpoint))
