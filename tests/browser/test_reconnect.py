"""A page outlives its server: stop uvicorn, start a new one on the same port, and the open pages
reconnect by themselves (exponential backoff, first retry after 0.25-0.5 s) and work again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING

import pytest

from harness.servers import UvicornServer
from tests.browser import ui

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ARGS = ["--timeout-graceful-shutdown", "3"]
UNREACHABLE = "The server cannot be reached"

# Wraps the page's setStatus to keep every [state, detail] it shows, in order.
RECORD_STATES = """() => {
  window.__states = [];
  const original = window.setStatus;
  window.setStatus = (state, text, detail = "") => {
    window.__states.push([state, detail]);
    original(state, text, detail);
  };
}"""


@pytest.fixture
def servers() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def start(stack: ExitStack, port: int | None = None) -> UvicornServer:
    return stack.enter_context(UvicornServer(args=ARGS, port=port))


def test_pages_reconnect_after_a_server_restart(browser: Browser, servers: ExitStack) -> None:
    from playwright.sync_api import expect

    first = start(servers)
    context = browser.new_context(base_url=first.http_url)
    servers.callback(context.close)
    echo, chat = context.new_page(), context.new_page()
    echo.goto("/echo")
    chat.goto("/chat")
    chat_id = ui.chat_id(chat)
    ui.wait_status(echo, "open")
    pages: tuple[Page, ...] = (echo, chat)
    for page in pages:
        page.evaluate(RECORD_STATES)
    ui.send(echo, "before")
    ui.wait_message(echo, "Message text was: before")

    first.stop()
    for page in pages:  # the drop is shown, with the countdown to the next try
        ui.wait_status(page, "closed")
        expect(page.locator("#status")).to_contain_text("Reconnecting in")
        expect(page.locator("#message-form button")).to_be_disabled()
        # a retry while nothing listens (0.25-0.5 s after the drop) says so, and is not a refusal
        page.wait_for_function("text => window.__states.some(([, detail]) => detail.startsWith(text))", arg=UNREACHABLE)

    start(servers, port=first.port)
    for page in pages:
        ui.wait_status(page, "open", timeout=15_000)
    ui.send(echo, "after")
    ui.wait_message(echo, "Message text was: after")
    ui.send(chat, "back again")
    ui.wait_message(chat, f"Client #{chat_id} says: back again")

    for page in pages:
        shown: list[tuple[str, str]] = [tuple(pair) for pair in page.evaluate("window.__states")]
        states = [state for state, _ in shown]
        assert states[0] == "closed" and states[-1] == "open"
        assert "refused" not in states  # a server that is down is not a refusal
        # the server said goodbye (uvicorn: 1012 service restart) and the page told the user
        assert shown[0][1] in {
            "Disconnected: 1012 server restarting (retry 1)",
            "Disconnected: 1001 going away (retry 1)",
        }
        assert f"{UNREACHABLE} (retry 2)" in [detail for _, detail in shown]
