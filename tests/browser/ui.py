"""What a user does on the pages, as Playwright steps (shared by the tests and the screenshots)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page


def status(page: Page) -> str | None:
    return page.locator("#status").get_attribute("data-state")


def wait_status(page: Page, state: str, timeout: float = 5_000) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#status")).to_have_attribute("data-state", state, timeout=timeout)


def send(page: Page, text: str) -> None:
    """Type a line into the message box and press Enter, as a user would."""
    box = page.locator("#messageText")
    box.fill(text)
    box.press("Enter")


def messages(page: Page) -> list[str]:
    """Every received message, as the text the user reads (textContent, not HTML)."""
    texts: list[str] = page.locator("#messages li").evaluate_all("items => items.map(item => item.textContent)")
    return texts


def wait_message(page: Page, text: str, timeout: float = 5_000) -> None:
    """Wait until a list item reads exactly `text`."""
    page.wait_for_function(
        "text => [...document.querySelectorAll('#messages li')].some(item => item.textContent === text)",
        arg=text,
        timeout=timeout,
    )


def connect_items(page: Page, item_id: str | None = None, token: str | None = None, q: str | None = None) -> None:
    """Fill the items page's form (None keeps a field as it is) and press Connect."""
    for selector, value in (("#itemId", item_id), ("#token", token), ("#q", q)):
        if value is not None:
            page.locator(selector).fill(value)
    page.locator("#connect").click()


def chat_id(page: Page) -> int:
    wait_status(page, "open")
    return int(page.locator("#ws-id").inner_text())
