"""Play scenarios as a tutorial client would, and record what came back in a form that two
servers (or the TestClient and a server) can be compared by."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.testclient import WebSocketTestSession as Session
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from harness import net
from harness.servers import UvicornServer
from tests.scenarios import Case

QUIET = 0.05  # how long "nothing more arrives" is watched for, on loopback


@dataclass(frozen=True)
class Transcript:
    """Everything a client saw: a refused handshake (status, body) or the replies and the close."""

    status: int | None = None  # the HTTP status of a refused handshake
    body: bytes = b""
    replies: tuple[str, ...] = ()
    close: tuple[int, str] | None = None  # the close frame received, if the server closed
    accepted: bool = True  # False: refused, or (under TestClient) closed before accept

    @property
    def refused(self) -> bool:
        return self.status is not None

    def detail(self) -> list[dict[str, Any]]:
        """The error list of our JSON refusal body."""
        detail: list[dict[str, Any]] = json.loads(self.body)["detail"]
        return detail


@contextlib.contextmanager
def ws_connect(
    server: UvicornServer, path: str, headers: dict[str, str] | None = None, max_size: int | None = 2**20
) -> Iterator[ClientConnection]:
    """A `websockets` sync client, always as a context manager (it warns when left open)."""
    with connect(
        server.ws_url + path, additional_headers=headers, open_timeout=5, close_timeout=2, max_size=max_size
    ) as ws:
        yield ws


def headers_of(case: Case) -> dict[str, str]:
    headers = dict(case.headers)
    if case.cookie is not None:
        headers["cookie"] = case.cookie
    return headers


def closed_with(exc: ConnectionClosed) -> tuple[int, str] | None:
    """The close frame the server sent; None when the TCP connection just dropped (1006)."""
    return None if exc.rcvd is None else (exc.rcvd.code, exc.rcvd.reason)


def receive(
    ws: ClientConnection, timeout: float, count: int | None = None, until_quiet: bool = False
) -> tuple[list[str], tuple[int, str] | None, bool]:
    """Read up to `count` messages (no limit: None), waiting `timeout` seconds for each: (messages,
    the server's close frame or None, whether the connection ended). A wait that runs out raises
    TimeoutError, or with `until_quiet` ends the read."""
    messages: list[str] = []
    try:
        while count is None or len(messages) < count:
            messages.append(str(ws.recv(timeout=timeout)))
    except TimeoutError:
        if not until_quiet:
            raise
    except ConnectionClosed as exc:
        return messages, closed_with(exc), True
    return messages, None, False


def drain(ws: ClientConnection, quiet: float = QUIET) -> tuple[list[str], tuple[int, str] | None, bool]:
    """Read until `quiet` seconds pass with nothing new: (messages, close frame, connection ended)."""
    return receive(ws, quiet, until_quiet=True)


def read_replies(ws: ClientConnection, count: int, timeout: float = 5.0) -> tuple[list[str], tuple[int, str] | None]:
    """Up to `count` messages; stops early at a close."""
    messages, close, _ = receive(ws, timeout, count)
    return messages, close


def read_to_close(ws: ClientConnection, timeout: float = 5) -> tuple[list[str], tuple[int, str] | None]:
    """Every message until the connection ends: (messages, the server's close frame or None)."""
    messages, close, _ = receive(ws, timeout)
    return messages, close


def play(server: UvicornServer, case: Case, quiet: float = QUIET) -> Transcript:
    """Send the case's messages, read the replies the contract expects, then watch for anything extra."""
    try:
        with ws_connect(server, case.path, headers_of(case)) as ws:
            for message in case.send:
                ws.send(message)
            replies, close = read_replies(ws, len(case.replies or ()))
            if close is None:
                more, close, _ = drain(ws, quiet)
                replies += more
            return Transcript(replies=tuple(replies), close=close)
    except InvalidStatus as exc:
        return Transcript(status=exc.response.status_code, body=bytes(exc.response.body or b""), accepted=False)


def log_has(server: UvicornServer, mark: int, needle: str, timeout: float = 3.0) -> bool:
    """Whether `needle` shows up in the server's log after `mark` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if needle in server.log_since(mark):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def reset(ws: ClientConnection) -> None:
    """Kill a client's TCP connection with a RST, as a crashed process or a cut cable would."""
    net.reset(ws.socket)


class Reader(threading.Thread):
    """Reads a client connection in the background, recording every message and the close."""

    def __init__(self, ws: ClientConnection) -> None:
        super().__init__(daemon=True)
        self.ws = ws
        self.messages: list[str] = []
        self.close: tuple[int, str] | None = None
        self.ended = threading.Event()
        self.start()

    def run(self) -> None:
        try:
            for message in self.ws:
                self.messages.append(str(message))
        except ConnectionClosed as exc:
            self.close = closed_with(exc)
        except Exception:  # the socket was torn down under us at teardown
            pass
        finally:
            self.ended.set()

    def settle(self, quiet: float = 1.0, timeout: float = 30.0) -> int:
        """Wait until nothing new has arrived for `quiet` seconds; return the message count."""
        deadline = time.monotonic() + timeout
        count, since = len(self.messages), time.monotonic()
        while time.monotonic() < deadline and not self.ended.is_set():
            time.sleep(0.05)
            if len(self.messages) != count:
                count, since = len(self.messages), time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        return len(self.messages)


class Producer(threading.Thread):
    """Sends messages from a background thread: a send may block when the server stops reading."""

    def __init__(self, ws: ClientConnection, messages: list[str], pace: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.ws = ws
        self.messages = messages
        self.pace = pace
        self.sent = 0
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            for message in self.messages:
                self.ws.send(message)
                self.sent += 1
                if self.pace:
                    time.sleep(self.pace)
        except Exception as exc:  # the test looks at it when it matters
            self.error = exc


def over_testclient(client: TestClient, case: Case) -> Transcript:
    """The same play under Starlette's TestClient (no "nothing more" watch: it has no timeouts)."""
    try:
        with client.websocket_connect(case.path, headers=headers_of(case)) as ws:
            for message in case.send:
                ws.send_text(message)
            return Transcript(replies=tuple(ws.receive_text() for _ in case.replies or ()))
    except WebSocketDenialResponse as denial:
        return Transcript(status=denial.status_code, body=denial.content, accepted=False)
    except WebSocketDisconnect as exc:
        return Transcript(close=(exc.code, exc.reason), accepted=False)


def next_json(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    """The next message, a JSON object (the rooms' messages)."""
    value: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return value


def until(ws: ClientConnection, kind: str, **match: Any) -> dict[str, Any]:
    """The next JSON message of type `kind` whose fields match; the ones before it are skipped."""
    while True:
        message = next_json(ws)
        if message["type"] == kind and all(message.get(key) == value for key, value in match.items()):
            return message


def session_json(ws: Session) -> dict[str, Any]:
    """`next_json` for a TestClient session."""
    value: dict[str, Any] = json.loads(ws.receive_text())
    return value


def session_until(ws: Session, kind: str, **match: Any) -> dict[str, Any]:
    """`until` for a TestClient session: the next JSON message of type `kind` whose fields match."""
    while True:
        message = session_json(ws)
        if message["type"] == kind and all(message.get(key) == value for key, value in match.items()):
            return message
