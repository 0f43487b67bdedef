from __future__ import annotations

from typing import Any

from starlette.websockets import WebSocket

from starlette_ws.endpoint import TextEndpoint


class EchoEndpoint(TextEndpoint):
    """Twin of the tutorial's first app: every message comes back, prefixed."""

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        await websocket.send_text(f"Message text was: {data}")
