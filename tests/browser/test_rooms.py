"""Two pages in a room: one goes offline while the other talks, comes back and shows every
message once, in order; the member list follows joins, leaves and member lists; a page that
comes in shows the recent messages, and one the store did not keep shows as an error."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from tests.browser import ui

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from harness.servers import UvicornServer


def members(page: Page) -> list[int]:
    shown: list[int] = json.loads(page.locator("#members").get_attribute("data-members") or "[]")
    return shown


def wait_members(page: Page, expected: list[int]) -> None:
    page.wait_for_function(
        "expected => document.getElementById('members').dataset.members === JSON.stringify(expected)",
        arg=expected,
    )


def said(page: Page) -> list[str]:
    return page.locator('#messages li[data-type="message"]').all_text_contents()


def test_a_page_that_was_offline_shows_every_message_once_in_order(
    browser: Browser, live_server: UvicornServer
) -> None:
    quiet = browser.new_context(base_url=live_server.http_url)
    talker = browser.new_context(base_url=live_server.http_url)
    try:
        away = quiet.new_page()
        away.goto("/rooms/browser-room")
        away_id = ui.chat_id(away)
        wait_members(away, [away_id])
        here = talker.new_page()
        here.goto("/rooms/browser-room")
        here_id = ui.chat_id(here)
        for page in (away, here):  # the join shows on both lists
            wait_members(page, sorted([away_id, here_id]))
        ui.send(here, "before")
        ui.wait_message(away, f"Client #{here_id}: before")

        quiet.set_offline(True)
        wait_members(here, [here_id])  # the server saw the offline page leave
        lines = [f"line {n}" for n in range(10)]
        for line in lines:
            ui.send(here, line)
            ui.wait_message(here, f"Client #{here_id}: {line}")
        assert members(here) == [here_id]  # still offline: the ten can only come back as a replay
        quiet.set_offline(False)

        ui.wait_status(away, "open", timeout=15_000)
        ui.wait_message(away, f"Client #{here_id}: line 9", timeout=10_000)
        assert said(away) == [f"Client #{here_id}: {text}" for text in ["before", *lines]]
        offsets = away.locator('#messages li[data-type="message"]').evaluate_all(
            "items => items.map(item => Number(item.dataset.offset))"
        )
        assert offsets == list(range(offsets[0], offsets[0] + 11))  # each message once, in order
        assert "could not be recovered" not in " ".join(ui.messages(away))  # no gap

        here.close()  # the leave shows on the other page's list
        wait_members(away, [away_id])
        assert members(away) == [away_id]
    finally:
        quiet.close()
        talker.close()


def test_a_page_shows_the_recent_messages_errors_and_the_member_lists_it_is_sent(
    open_page: Callable[[str], Page],
) -> None:
    first = open_page("/rooms/browser-recent")
    first_id = ui.chat_id(first)
    ui.wait_status(first, "open")
    ui.send(first, "said earlier")
    ui.wait_message(first, f"Client #{first_id}: said earlier")

    later = open_page("/rooms/browser-recent")  # no `since`: the newest kept messages first
    later_id = ui.chat_id(later)
    ui.wait_message(later, f"Client #{first_id}: said earlier")
    wait_members(later, sorted([first_id, later_id]))
    ui.wait_message(first, f"Client #{later_id} joined")

    # What the server sends when the store did not keep a line, or when arrivals come too fast
    # to announce one by one, as if it had arrived on the socket.
    reason = "Room store not available: try again later"
    for sent in ("false", "null"):
        later.evaluate(
            f"""onRoomMessage(JSON.stringify({{type: "error", room: "browser-recent", text: "lost <b>?</b>",
            sent: {sent}, reason: "{reason}"}}))"""
        )
    errors = later.locator('#messages li[data-type="error"]').all_text_contents()
    assert errors == [
        f"(“lost <b>?</b>” was not sent: {reason})",
        f"(“lost <b>?</b>” may not have been sent: {reason})",
    ]
    later.evaluate('onRoomMessage(JSON.stringify({type: "presence", room: "browser-recent", members: [9, 3, 9]}))')
    wait_members(later, [3, 9])
    assert said(later) == [f"Client #{first_id}: said earlier"]
