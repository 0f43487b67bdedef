from __future__ import annotations

from typing import Any

from starlette.websockets import WebSocket

from starlette_ws import params
from starlette_ws.auth import cookie_or_token
from starlette_ws.endpoint import TextEndpoint
from starlette_ws.params import Error


class ItemsEndpoint(TextEndpoint):
    """Twin of the tutorial's second app: path, query and cookie-or-token checked before accept."""

    params = (
        params.path("item_id"),
        params.query("q", params.parse_int),
        params.cookie("session"),
        params.query("token"),
    )

    def admit(self, websocket: WebSocket, values: dict[str, Any]) -> list[Error]:
        self.item_id: str = values["item_id"]
        self.q: int | None = values["q"]
        self.credential, errors = cookie_or_token(values["session"], values["token"])
        return errors

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        await websocket.send_text(f"Session cookie or query token value is: {self.credential}")
        if self.q is not None:
            await websocket.send_text(f"Query parameter q is: {self.q}")
        await websocket.send_text(f"Message text was: {data}, for item ID: {self.item_id}")
