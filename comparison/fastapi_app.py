"""The reference side of the comparison: FastAPI's WebSockets tutorial (contract part A).

The three tutorial apps (echo, items with dependencies, broadcast chat) in one FastAPI app,
written the way the tutorial writes them, weaknesses included: the HTML pages hard-code
ws://localhost:8000, echo and items do not catch a client's close, and the chat broadcasts
with a plain loop that awaits every client's send in turn.

Run: uvicorn comparison.fastapi_app:app
"""

from typing import Annotated

from fastapi import (
    Cookie,
    Depends,
    FastAPI,
    Query,
    WebSocket,
    WebSocketDisconnect,
    WebSocketException,
    status,
)
from fastapi.responses import HTMLResponse

app = FastAPI()

INDEX_PAGE = """<!DOCTYPE html>
<html>
  <head><title>WebSockets tutorial</title></head>
  <body>
    <h1>WebSockets tutorial</h1>
    <ul>
      <li><a href="/echo">Echo</a></li>
      <li><a href="/items">Items (dependencies)</a></li>
      <li><a href="/chat">Chat (broadcast)</a></li>
    </ul>
  </body>
</html>
"""

ECHO_PAGE = """<!DOCTYPE html>
<html>
  <head><title>Echo</title></head>
  <body>
    <h1>WebSocket echo</h1>
    <form onsubmit="sendMessage(event)">
      <input type="text" id="messageText" autocomplete="off"/>
      <button>Send</button>
    </form>
    <ul id="messages"></ul>
    <script>
      const ws = new WebSocket("ws://localhost:8000/ws");
      ws.onmessage = function (event) {
        const item = document.createElement("li");
        item.textContent = event.data;
        document.getElementById("messages").appendChild(item);
      };
      function sendMessage(event) {
        const input = document.getElementById("messageText");
        ws.send(input.value);
        input.value = "";
        event.preventDefault();
      }
    </script>
  </body>
</html>
"""

ITEMS_PAGE = """<!DOCTYPE html>
<html>
  <head><title>Items</title></head>
  <body>
    <h1>WebSocket with dependencies</h1>
    <form onsubmit="connect(event)">
      <label>Item ID: <input type="text" id="itemId" autocomplete="off" value="foo"/></label>
      <label>Token: <input type="text" id="token" autocomplete="off"
        value="some-key-token"/></label>
      <button>Connect</button>
    </form>
    <hr>
    <form onsubmit="sendMessage(event)">
      <input type="text" id="messageText" autocomplete="off"/>
      <button>Send</button>
    </form>
    <ul id="messages"></ul>
    <script>
      let ws = null;
      function connect(event) {
        const itemId = encodeURIComponent(document.getElementById("itemId").value);
        const token = encodeURIComponent(document.getElementById("token").value);
        ws = new WebSocket(
          "ws://localhost:8000/items/" + itemId + "/ws?token=" + token
        );
        ws.onmessage = function (event) {
          const item = document.createElement("li");
          item.textContent = event.data;
          document.getElementById("messages").appendChild(item);
        };
        event.preventDefault();
      }
      function sendMessage(event) {
        const input = document.getElementById("messageText");
        ws.send(input.value);
        input.value = "";
        event.preventDefault();
      }
    </script>
  </body>
</html>
"""

CHAT_PAGE = """<!DOCTYPE html>
<html>
  <head><title>Chat</title></head>
  <body>
    <h1>WebSocket chat</h1>
    <h2>Your ID: <span id="ws-id"></span></h2>
    <form onsubmit="sendMessage(event)">
      <input type="text" id="messageText" autocomplete="off"/>
      <button>Send</button>
    </form>
    <ul id="messages"></ul>
    <script>
      const clientId = Date.now();
      document.getElementById("ws-id").textContent = clientId;
      const ws = new WebSocket("ws://localhost:8000/ws/" + clientId);
      ws.onmessage = function (event) {
        const item = document.createElement("li");
        item.textContent = event.data;
        document.getElementById("messages").appendChild(item);
      };
      function sendMessage(event) {
        const input = document.getElementById("messageText");
        ws.send(input.value);
        input.value = "";
        event.preventDefault();
      }
    </script>
  </body>
</html>
"""


@app.get("/")
async def index() -> HTMLResponse:
    return HTMLResponse(INDEX_PAGE)


@app.get("/echo")
async def echo_page() -> HTMLResponse:
    return HTMLResponse(ECHO_PAGE)


@app.get("/items")
async def items_page() -> HTMLResponse:
    return HTMLResponse(ITEMS_PAGE)


@app.get("/chat")
async def chat_page() -> HTMLResponse:
    return HTMLResponse(CHAT_PAGE)


# A1. Echo


@app.websocket("/ws")
async def echo_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        data = await websocket.receive_text()
        await websocket.send_text(f"Message text was: {data}")


# A2. Items: a dependency that wants a session cookie or a token


async def get_cookie_or_token(
    session: Annotated[str | None, Cookie()] = None,
    token: Annotated[str | None, Query()] = None,
) -> str:
    if session is None and token is None:
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
    return session or token  # type: ignore[return-value]


@app.websocket("/items/{item_id}/ws")
async def items_endpoint(
    websocket: WebSocket,
    item_id: str,
    cookie_or_token: Annotated[str, Depends(get_cookie_or_token)],
    q: int | None = None,
) -> None:
    await websocket.accept()
    while True:
        data = await websocket.receive_text()
        await websocket.send_text(f"Session cookie or query token value is: {cookie_or_token}")
        if q is not None:
            await websocket.send_text(f"Query parameter q is: {q}")
        await websocket.send_text(f"Message text was: {data}, for item ID: {item_id}")


# A3. Chat: an in-memory list of connections, broadcast one client after the other


class ConnectionManager:
    def __init__(self) -> None:
        self.active_connections: list[WebSocket] = []

    async def connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket) -> None:
        self.active_connections.remove(websocket)

    async def send_personal_message(self, message: str, websocket: WebSocket) -> None:
        await websocket.send_text(message)

    async def broadcast(self, message: str) -> None:
        for connection in self.active_connections:
            await connection.send_text(message)


manager = ConnectionManager()


@app.websocket("/ws/{client_id}")
async def chat_endpoint(websocket: WebSocket, client_id: int) -> None:
    await manager.connect(websocket)
    try:
        while True:
            data = await websocket.receive_text()
            await manager.send_personal_message(f"You wrote: {data}", websocket)
            await manager.broadcast(f"Client #{client_id} says: {data}")
    except WebSocketDisconnect:
        manager.disconnect(websocket)
        await manager.broadcast(f"Client #{client_id} left the chat")
