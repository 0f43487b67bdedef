"""Screenshots of every page in use, for the README and docs/: `make screenshots`.

Starts the app under a real uvicorn on a free port, drives each page in Debian's Chromium through
the same Playwright set-up as the browser tests (tests/browser/chromium.py), and writes PNGs to
docs/screenshots/ (or --out DIR).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.servers import UvicornServer  # noqa: E402
from tests.browser import chromium, ui  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page


def shoot_rooms(context: BrowserContext, shoot: Callable[[Page, str], None]) -> None:
    """A room in use (`lobby`, two members and a few lines), then the rooms list that shows it."""
    alice, bob = context.new_page(), context.new_page()
    alice.goto("/rooms/lobby")
    ui.wait_status(alice, "open")
    bob.goto("/rooms/lobby")
    ui.wait_status(bob, "open")
    first, second = ui.chat_id(alice), ui.chat_id(bob)
    members = ", ".join(str(member) for member in sorted((first, second)))
    for page in (alice, bob):
        page.wait_for_function("shown => document.getElementById('members').textContent === shown", arg=members)
    for page, client, text in (
        (alice, first, "Hello, lobby!"),
        (bob, second, "Hi! I came in after you."),
        (alice, first, "Drop your connection: whatever is said meanwhile comes back when you return."),
    ):
        ui.send(page, text)
        for reader in (alice, bob):
            ui.wait_message(reader, f"Client #{client}: {text}")
    shoot(alice, "room")
    listing = context.new_page()
    listing.goto("/rooms")
    listing.locator("#rooms a", has_text="lobby").wait_for()
    shoot(listing, "rooms")
    for page in (alice, bob, listing):
        page.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    out: Path = parser.parse_args().out
    problem = chromium.unavailable()
    if problem is not None:
        print(f"screenshots: {problem}", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)

    def shoot(page: Page, name: str) -> None:
        path = out / f"{name}.png"
        page.screenshot(path=path, full_page=True, animations="disabled")
        print(f"screenshots: wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    with UvicornServer() as server, sync_playwright() as playwright:
        browser = chromium.launch(playwright)
        context = browser.new_context(base_url=server.http_url, viewport={"width": 880, "height": 520})

        page = context.new_page()
        page.goto("/")
        shoot(page, "index")

        shoot_rooms(context, shoot)

        page.goto("/echo")
        ui.wait_status(page, "open")
        for text in ("Hello, server!", "<b>markup</b> stays text"):
            ui.send(page, text)
            ui.wait_message(page, f"Message text was: {text}")
        shoot(page, "echo")

        page.goto("/items")
        ui.connect_items(page, q="3")
        ui.wait_status(page, "open")
        ui.send(page, "hello")
        ui.wait_message(page, "Message text was: hello, for item ID: foo")
        shoot(page, "items")

        page.goto("/items")
        ui.connect_items(page, token="")
        ui.wait_status(page, "refused")
        shoot(page, "items-refused")

        page.goto("/chat")
        other = context.new_page()
        other.goto("/chat")
        mine, theirs = ui.chat_id(page), ui.chat_id(other)
        ui.send(page, "Hi, anyone here?")
        ui.wait_message(other, f"Client #{mine} says: Hi, anyone here?")
        ui.send(other, "Hello from the other tab!")
        ui.wait_message(page, f"Client #{theirs} says: Hello from the other tab!")
        shoot(page, "chat")

        echo = context.new_page()
        echo.goto("/echo")
        ui.wait_status(echo, "open")
        ui.send(echo, "still there?")
        ui.wait_message(echo, "Message text was: still there?")
        server.stop()
        echo.wait_for_function("document.getElementById('status-detail').textContent.includes('cannot be reached')")
        shoot(echo, "echo-reconnecting")

        context.close()
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
