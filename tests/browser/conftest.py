"""Fixtures for the pages in a real browser: one Chromium for the whole browser suite, one real
uvicorn per test module, a fresh browser context (cookies, pages) per test.

Without Chromium or the playwright package the suite is skipped, except under CI=true, where it
fails: CI must not pass without having run it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from harness.servers import UvicornServer
from tests.browser import chromium
from tests.services import missing

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    problem = chromium.unavailable()
    if problem is not None:
        missing(problem)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=5_000)
    with sync_playwright() as playwright:
        browser = chromium.launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def live_server() -> Iterator[UvicornServer]:
    with UvicornServer(args=["--timeout-graceful-shutdown", "3"]) as server:
        yield server


@pytest.fixture
def context(browser: Browser, live_server: UvicornServer) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=live_server.http_url)
    context.set_default_timeout(5_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def open_page(context: BrowserContext) -> Iterator[Callable[[str], Page]]:
    """Open a page of the app in the test's context; any uncaught script error fails the test."""
    errors: list[str] = []

    def open_page(path: str) -> Page:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{path}: {error}"))
        page.goto(path)
        return page

    yield open_page
    assert errors == [], errors
