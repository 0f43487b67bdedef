"""The performance floor: a bare ASGI app, no framework, that echoes on WS /ws.

Run: uvicorn comparison.bare_app:app
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "websocket":
        await websocket_echo(scope, receive, send)
    elif kind == "http":
        await not_found(send)
    elif kind == "lifespan":
        await lifespan(receive, send)


async def websocket_echo(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    message = await receive()  # websocket.connect
    if scope["path"] != "/ws" or message["type"] != "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            await send({"type": "websocket.close", "code": 1003})
            return
        await send({"type": "websocket.send", "text": f"Message text was: {text}"})


async def not_found(send: Send) -> None:
    body = b"Not Found"
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
