"""The one Playwright set-up the browser tests and `scripts/screenshots.py` share: Debian's Chromium.

Playwright's own browser download is not used (`playwright install` is never run); the system
Chromium is launched by path, headless, with everything that would reach the network turned off.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from harness import services

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[browser]')"
    try:
        services.chromium()
    except services.Unavailable as exc:
        return str(exc)
    return None


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=services.chromium(), args=LAUNCH_ARGS)
