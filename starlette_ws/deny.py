"""How a refused handshake is answered.

Closing before `accept()` reaches a real client as a bare HTTP 403 (the close code is lost), so
where the server speaks the WebSocket Denial Response extension (uvicorn's websockets
implementations, Starlette's TestClient) the refusal is a 403 whose JSON body lists the errors;
elsewhere it is a close with 1008 and a short reason. uvicorn's websockets-sansio implementation
logs an ERROR after every denial response it sends (it never marks that handshake complete); the
denial is noted so that our log filter drops that line (see `logs.denial_sent`).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette import status
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from starlette_ws import logs, metrics
from starlette_ws.params import Error

MAX_REASON_BYTES = 123  # a close frame's payload is 125 bytes, 2 of them the code


def close_reason(errors: Sequence[Error]) -> str:
    """`query.q: int_parsing; ...`, cut to fit a close frame."""
    text = "; ".join(f"{'.'.join(error['loc'])}: {error['type']}" for error in errors)
    return truncate_utf8(text, MAX_REASON_BYTES)


def truncate_utf8(text: str, limit: int) -> str:
    return text.encode()[:limit].decode(errors="ignore")


async def deny(websocket: WebSocket, errors: Sequence[Error], status_code: int = status.HTTP_403_FORBIDDEN) -> None:
    metrics.refused(errors)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        logs.denial_sent()
        await websocket.send_denial_response(JSONResponse({"detail": list(errors)}, status_code=status_code))
    else:
        await websocket.close(status.WS_1008_POLICY_VIOLATION, close_reason(errors))
