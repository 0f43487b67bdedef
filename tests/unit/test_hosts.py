"""The Host check (DNS rebinding): the header's name, the allow-list rule, and the middleware."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import Message

from starlette_ws.app import create_app
from starlette_ws.hosts import TrustedHosts, host_allowed, host_name
from starlette_ws.settings import Settings

DEFAULT = Settings().allowed_hosts
PATTERNS = ("chat.example", "*.corp.example", "[::1]")


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("example.com", "example.com"),
        ("Example.COM:8000", "example.com"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("[::1]:8000", "[::1]"),
        ("[::1]", "[::1]"),
        (None, None),
        ("", None),
        ("a b", None),
        ("a:b", None),  # a port is digits
        ("user@example.com", None),
        ("::1", None),  # an IPv6 address needs its brackets
    ],
)
def test_host_name(header: str | None, name: str | None) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("chat.example:8000", True),
        ("CHAT.example", True),
        ("a.corp.example", True),
        ("a.b.corp.example:1", True),
        ("corp.example", False),  # `*.` means subdomains only
        ("evilcorp.example", False),
        ("chat.example.evil.example", False),
        ("[::1]:8000", True),
        ("localhost", False),  # a list replaces the default
        (None, False),
    ],
)
def test_host_allowed(header: str | None, ok: bool) -> None:
    assert host_allowed(header, PATTERNS) is ok


def test_star_allows_every_host() -> None:
    assert host_allowed("evil.example", ("*",))
    assert host_allowed(None, ("localhost", "*"))


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "[::1]", "testserver"])
def test_default_is_this_machine_and_the_testclient(name: str) -> None:
    assert host_allowed(f"{name}:8000", DEFAULT)
    assert not host_allowed("evil.example:8000", DEFAULT)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(allowed_hosts=PATTERNS))) as client:
        yield client


@pytest.mark.parametrize(
    "header",
    ["chat.example", "chat.example:1", "a.corp.example", "corp.example", "evil.example:80", "[::1]:8000", "a b"],
)
def test_pages_and_sockets_agree(client: TestClient, header: str) -> None:
    """Pages are checked by Starlette's TrustedHostMiddleware, sockets by `host_allowed`."""
    page = client.get("/health", headers={"host": header}).status_code
    try:
        with client.websocket_connect("/ws", headers={"host": header}) as ws:
            ws.send_text("m")
            assert ws.receive_text() == "Message text was: m"
            ws_status = 101
    except WebSocketDenialResponse as denial:
        ws_status = denial.status_code
        assert denial.json()["detail"][0]["loc"] == ["header", "host"]
    assert (page, ws_status) in {(200, 101), (400, 400)}
    assert (ws_status == 101) is host_allowed(header, PATTERNS)


@pytest.mark.anyio
async def test_refusal_without_the_denial_extension_is_a_1008_close() -> None:
    """Where the server cannot send a body, the refusal is a close (Starlette's own middleware
    would send an HTTP response message the server does not understand)."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def app(*_: object) -> None:
        raise AssertionError("the app must not be reached")

    scope = {"type": "websocket", "path": "/ws", "headers": [(b"host", b"evil.example")], "extensions": {}}
    with anyio.fail_after(5):
        await TrustedHosts(app, allowed_hosts=DEFAULT)(scope, receive, send)

    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "header.host: host"}]
