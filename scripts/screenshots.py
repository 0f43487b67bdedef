"""Screenshots of every page in use, for the README: `make screenshots`.

Starts the app under a real uvicorn on a free port, drives each page in Debian's Chromium through
the same Playwright set-up as the browser tests (tests/browser/chromium.py), and writes PNGs to
docs/screenshots/ (or --out DIR).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.servers import UvicornServer  # noqa: E402
from tests.browser import chromium, ui  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    out: Path = parser.parse_args().out
    problem = chromium.unavailable()
    if problem is not None:
        print(f"screenshots: {problem}", file=sys.stderr)
        return 1
    from playwright.sync_api import Page, sync_playwright

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
