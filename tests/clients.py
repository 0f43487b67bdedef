"""Play a scenario as a tutorial client would, and record what came back."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.scenarios import Case


@dataclass
class Outcome:
    replies: tuple[str, ...] | None  # None: refused before the handshake completed
    status: int | None = None  # the HTTP status of a refused handshake
    body: bytes = b""
    close_code: int | None = None  # under TestClient, a close before accept

    def detail(self) -> list[dict[str, Any]]:
        detail: list[dict[str, Any]] = json.loads(self.body)["detail"]
        return detail


def headers_of(case: Case) -> dict[str, str]:
    headers = dict(case.headers)
    if case.cookie is not None:
        headers["cookie"] = case.cookie
    return headers


def over_testclient(client: TestClient, case: Case) -> Outcome:
    try:
        with client.websocket_connect(case.path, headers=headers_of(case)) as ws:
            for message in case.send:
                ws.send_text(message)
            return Outcome(tuple(ws.receive_text() for _ in case.replies or ()))
    except WebSocketDenialResponse as denial:
        return Outcome(None, status=denial.status_code, body=denial.content)
    except WebSocketDisconnect as exc:
        return Outcome(None, close_code=exc.code)


def open_socket(base_url: str, path: str, headers: dict[str, str] | None = None) -> ClientConnection:
    return connect(base_url + path, additional_headers=headers, open_timeout=5, close_timeout=2)


def over_socket(base_url: str, case: Case, quiet_after: float = 0.05) -> Outcome:
    """Send, read the expected number of replies, then check that nothing more arrives."""
    try:
        ws = open_socket(base_url, case.path, headers_of(case))
    except InvalidStatus as exc:
        return Outcome(None, status=exc.response.status_code, body=exc.response.body or b"")
    with ws:
        for message in case.send:
            ws.send(message)
        replies = [str(ws.recv(timeout=5)) for _ in case.replies or ()]
        with contextlib.suppress(TimeoutError):
            replies.append(str(ws.recv(timeout=quiet_after)))
    return Outcome(tuple(replies))


def read_until_closed(ws: ClientConnection, timeout: float = 5) -> tuple[list[str], int | None, str]:
    """Every message until the server's close frame: (messages, close code, close reason)."""
    messages: list[str] = []
    try:
        while True:
            messages.append(str(ws.recv(timeout=timeout)))
    except ConnectionClosed as closed:
        if closed.rcvd is None:
            return messages, None, ""
        return messages, closed.rcvd.code, closed.rcvd.reason
