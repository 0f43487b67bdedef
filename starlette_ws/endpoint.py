"""The protocol hooks every demo socket shares.

A `TextEndpoint` checks its declared parameters before the handshake completes (refusing with
`deny`), then feeds text frames to `on_receive`. A binary frame closes with 1003, a frame over
the size limit with 1009, an error inside a hook with 1011 (logged once); a client's own close
is not an error.

The loop per message is kept lean, as close to a bare ASGI echo as a class can be: `serve` reads
the server's messages itself rather than through `WebSocket.receive` (whose state checks the
handshake needs, not every frame), and the endpoint's socket is a `CountedWebSocket`, whose
`send_text` hands the server a message directly while connected and counts it there.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from starlette import status
from starlette.endpoints import WebSocketEndpoint
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from starlette_ws import metrics
from starlette_ws.auth import origin_errors
from starlette_ws.deny import deny
from starlette_ws.params import Error, Param, resolve, sources_of
from starlette_ws.settings import Settings
from starlette_ws.sockets import GONE, CountedWebSocket

logger = logging.getLogger("starlette_ws")


class TextEndpoint(WebSocketEndpoint):
    params: ClassVar[Sequence[Param]] = ()
    closed_with: int | None = None  # None while serving; once we have closed, the code we closed with
    counts: metrics.Counts = metrics.NO_COUNTS

    async def dispatch(self) -> None:
        settings = settings_of(HTTPConnection(self.scope))
        self.counts = metrics.counts_for(metrics.endpoint_name(type(self))) if settings.metrics else metrics.NO_COUNTS
        websocket = CountedWebSocket(self.scope, self.receive, self.send, self.counts.sent)
        headers = websocket.headers
        errors = origin_errors(
            headers.get("origin"), headers.get("host"), settings.allowed_origins, settings.allowed_hosts
        )
        if not errors:
            values, errors = resolve(self.params, sources_of(websocket))
            errors = self.admit(websocket, values) + errors
        if errors:
            await deny(websocket, errors)
            return
        errors = self.limit(websocket)
        if errors:
            await deny(websocket, errors, status.HTTP_429_TOO_MANY_REQUESTS)
            return
        close_code = status.WS_1011_INTERNAL_ERROR
        self.counts.open.inc()
        try:
            await self.on_connect(websocket)
            close_code = await self.serve(websocket)
        except WebSocketDisconnect as exc:  # a send to a client that has gone away
            close_code = exc.code
        except Exception:
            logger.exception("Error in %s for %s", type(self).__name__, websocket.url.path)
            await self.close(websocket, status.WS_1011_INTERNAL_ERROR, "Internal error")
        finally:
            self.counts.open.dec()
            self.counts.closed(self.close_code(close_code))
            await self.on_disconnect(websocket, close_code)

    def close_code(self, reported: int) -> int:
        """How the connection ended: our close code when we closed first, else the reported one."""
        return self.closed_with if self.closed_with is not None else reported

    def admit(self, websocket: WebSocket, values: dict[str, Any]) -> list[Error]:
        """Keep what the connection needs from its parameters; return reasons to refuse it."""
        return []

    def limit(self, websocket: WebSocket) -> list[Error]:
        """Once admitted: reasons to refuse the connection for now (a rate), answered with 429."""
        return []

    async def serve(self, websocket: WebSocket) -> int:
        """Feed text frames to `on_receive` until the connection ends; return the close code."""
        limit = settings_of(websocket).max_message_bytes
        quarter = limit // 4  # a text of at most this many characters is within the limit in UTF-8
        receive, count_received, on_receive = self.receive, self.counts.received.inc, self.on_receive
        while True:
            message = await receive()
            text = message.get("text")
            if text is None and message["type"] == "websocket.disconnect":
                websocket.client_state = WebSocketState.DISCONNECTED
                return int(message.get("code") or status.WS_1000_NORMAL_CLOSURE)
            count_received()
            if self.closed_with is not None:  # we have said goodbye: what arrives before the client's close is ignored
                continue
            if text is None:
                await self.close(websocket, status.WS_1003_UNSUPPORTED_DATA, "Text frames only")
                return status.WS_1003_UNSUPPORTED_DATA
            if len(text) > quarter and len(text.encode()) > limit:
                await self.close(websocket, status.WS_1009_MESSAGE_TOO_BIG, f"Message over {limit} bytes")
                return status.WS_1009_MESSAGE_TOO_BIG
            await on_receive(websocket, text)

    async def close(self, websocket: WebSocket, code: int, reason: str) -> None:
        """End the connection from the server side; no further message is handled."""
        if self.closed_with is None:
            self.closed_with = code
        await self.send_close(websocket, code, reason)

    async def send_close(self, websocket: WebSocket, code: int, reason: str) -> None:
        """Send the close frame unless the socket is closed already (a client that is gone needs none).

        The hook for how it goes out: an endpoint with an outbox queues it behind what waits there.
        """
        if websocket.application_state is not WebSocketState.CONNECTED:
            return
        with contextlib.suppress(*GONE):
            await websocket.close(code, reason)


def settings_of(connection: HTTPConnection) -> Settings:
    settings: Settings = connection.app.state.settings
    return settings
