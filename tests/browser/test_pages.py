"""The three demo pages (contract A1-A3, docs/behaviour.md) driven in Chromium against a real uvicorn."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from harness.servers import UvicornServer
from tests.browser import ui

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Dialog, Page

OpenPage = Callable[[str], "Page"]


def expect_refused(page: Page) -> None:
    from playwright.sync_api import expect

    ui.wait_status(page, "refused")
    expect(page.locator("#status")).to_have_text("Refused")
    expect(page.locator("#status-detail")).to_contain_text("refused the connection (HTTP 403)")
    expect(page.locator("#message-form button")).to_be_disabled()


def test_index_links_every_page(open_page: OpenPage) -> None:
    page = open_page("/")
    links = page.locator("main a").evaluate_all("links => links.map(link => link.getAttribute('href'))")
    assert [link.rsplit("/", 1)[-1] for link in links] == ["echo", "items", "chat", "rooms"]


def test_echo_round_trip(open_page: OpenPage) -> None:
    from playwright.sync_api import expect

    page = open_page("/echo")
    ui.wait_status(page, "open")
    expect(page.locator("#status")).to_have_text("Connected")
    expect(page.locator("#message-form button")).to_be_enabled()
    ui.send(page, "hello")
    ui.send(page, "  two  spaces  ")
    ui.wait_message(page, "Message text was:   two  spaces  ")
    assert ui.messages(page) == ["Message text was: hello", "Message text was:   two  spaces  "]
    expect(page.locator("#messageText")).to_have_value("")


def test_items_with_token(open_page: OpenPage) -> None:
    page = open_page("/items")
    assert ui.status(page) == "idle"
    ui.connect_items(page)  # the tutorial's defaults: foo / some-key-token
    ui.wait_status(page, "open")
    ui.send(page, "hello")
    ui.wait_message(page, "Message text was: hello, for item ID: foo")
    assert ui.messages(page) == [
        "Session cookie or query token value is: some-key-token",
        "Message text was: hello, for item ID: foo",
    ]


def test_items_url_encodes_what_the_user_typed(open_page: OpenPage) -> None:
    page = open_page("/items")
    ui.connect_items(page, item_id="a b?é#%41", token="t&k=v w", q="+7")
    ui.wait_status(page, "open")
    ui.send(page, "x")
    ui.wait_message(page, "Message text was: x, for item ID: a b?é#%41")
    assert ui.messages(page) == [
        "Session cookie or query token value is: t&k=v w",
        "Query parameter q is: 7",
        "Message text was: x, for item ID: a b?é#%41",
    ]


def test_items_with_session_cookie(context: BrowserContext, live_server: UvicornServer, open_page: OpenPage) -> None:
    context.add_cookies([{"name": "session", "value": "cookie-secret", "url": live_server.http_url}])
    page = open_page("/items")
    ui.connect_items(page)  # token field as it comes: the cookie wins
    ui.wait_status(page, "open")
    ui.send(page, "one")
    ui.wait_message(page, "Message text was: one, for item ID: foo")
    ui.connect_items(page, token="")  # an empty Token is left out: the cookie alone authenticates
    ui.wait_status(page, "open")
    ui.send(page, "two")
    ui.wait_message(page, "Message text was: two, for item ID: foo")
    assert ui.messages(page) == [
        "Session cookie or query token value is: cookie-secret",
        "Message text was: one, for item ID: foo",
        "Session cookie or query token value is: cookie-secret",
        "Message text was: two, for item ID: foo",
    ]


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"token": ""}, id="no-token-no-cookie"),
        pytest.param({"q": "abc"}, id="q-not-an-integer"),
        pytest.param({"q": "1.5"}, id="q-not-integral"),
        pytest.param({"item_id": "a/b"}, id="slash-in-item-id"),
    ],
)
def test_items_refusal_is_shown(open_page: OpenPage, fields: dict[str, str]) -> None:
    page = open_page("/items")
    ui.connect_items(page, **fields)
    expect_refused(page)
    assert ui.messages(page) == []


def test_items_connects_after_a_refusal(open_page: OpenPage) -> None:
    page = open_page("/items")
    ui.connect_items(page, q="abc")
    expect_refused(page)
    ui.connect_items(page, q="-5")
    ui.wait_status(page, "open")
    ui.send(page, "ok")
    ui.wait_message(page, "Query parameter q is: -5")


def test_chat_between_two_pages(open_page: OpenPage) -> None:
    first, second = open_page("/chat"), open_page("/chat")
    first_id, second_id = ui.chat_id(first), ui.chat_id(second)
    assert first_id != second_id
    assert first.locator("h2").inner_text() == f"Your ID: {first_id}"

    ui.send(first, "hi from the first page")
    ui.wait_message(second, f"Client #{first_id} says: hi from the first page")
    ui.wait_message(first, f"Client #{first_id} says: hi from the first page")
    ui.send(second, "hi back")
    ui.wait_message(first, f"Client #{second_id} says: hi back")
    mine = [text for text in ui.messages(first) if f"#{first_id}" in text or text.startswith("You wrote")]
    assert mine == ["You wrote: hi from the first page", f"Client #{first_id} says: hi from the first page"]

    second.close()
    ui.wait_message(first, f"Client #{second_id} left the chat")


PAYLOADS = [
    """<img src=x onerror="window.__pwned = 'img'; alert('img')">""",
    """<script>window.__pwned = 'script'; alert('script')</script>""",
    """<svg onload="window.__pwned = 'svg'"></svg> & &amp; <b>bold</b>""",
]


def test_chat_shows_markup_as_text_and_runs_nothing(open_page: OpenPage) -> None:
    first, second = open_page("/chat"), open_page("/chat")
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    for page in (first, second):
        page.on("dialog", on_dialog)
    first_id = ui.chat_id(first)
    ui.chat_id(second)

    for payload in PAYLOADS:
        ui.send(first, payload)
    for payload in PAYLOADS:
        ui.wait_message(second, f"Client #{first_id} says: {payload}")
        ui.wait_message(first, f"You wrote: {payload}")
    first.wait_for_timeout(300)  # time for a broken image's onerror to fire, were there one

    for page in (first, second):
        assert page.evaluate("window.__pwned") is None
        assert page.locator("#messages img, #messages script, #messages svg, #messages b").count() == 0
    assert dialogs == []


def test_echo_shows_markup_as_text(open_page: OpenPage) -> None:
    page = open_page("/echo")
    ui.wait_status(page, "open")
    ui.send(page, PAYLOADS[0])
    ui.wait_message(page, f"Message text was: {PAYLOADS[0]}")
    assert page.locator("#messages img").count() == 0
    assert page.evaluate("window.__pwned") is None
