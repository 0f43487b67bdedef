"""The room page with tokens: it joins as its token's client id, shows what the server API
says, stops with "Token expired" at the token's exp (4001) rather than retrying, and without a
valid token says why instead of connecting."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import jwt
import pytest

from harness.servers import UvicornServer
from tests.browser import ui

if TYPE_CHECKING:
    from playwright.sync_api import Page

SECRET = "the-browser-suite-secret-long-enough-for-hs256"
KEY = "browser-key"
pytestmark = pytest.mark.contract("B29")


@pytest.fixture(scope="module")
def live_server() -> Iterator[UvicornServer]:
    with UvicornServer(env={"ROOMS_TOKEN_SECRET": SECRET, "API_KEYS": KEY}) as server:
        yield server


def token(sub: int, ttl: float) -> str:
    return jwt.encode({"sub": str(sub), "exp": int(time.time() + ttl), "rooms": ["team-*"]}, SECRET)


def test_the_page_joins_as_its_token_and_stops_at_exp(
    open_page: Callable[[str], Page], live_server: UvicornServer
) -> None:
    page = open_page(f"/rooms/team-page?token={token(77, 3)}")
    assert ui.chat_id(page) == 77
    request = urllib.request.Request(
        f"{live_server.http_url}/api/rooms/team-page/messages",
        data=json.dumps({"text": "hello from the app"}).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201
    ui.wait_message(page, "Server: hello from the app")
    ui.wait_status(page, "closed", timeout=6_000)
    assert page.locator("#status").inner_text() == "Token expired"
    page.wait_for_timeout(1_500)  # no retry: a retry would say "Reconnecting…"
    assert page.locator("#status").inner_text() == "Token expired"


def test_without_a_valid_token_the_page_says_why(open_page: Callable[[str], Page]) -> None:
    page = open_page("/rooms/team-page")
    ui.wait_status(page, "refused")
    assert "needs a token" in page.locator("#token-note").inner_text()
    expired = open_page(f"/rooms/team-page?token={token(77, -5)}")
    ui.wait_status(expired, "refused")
    assert "expired" in expired.locator("#token-errors").inner_text()
