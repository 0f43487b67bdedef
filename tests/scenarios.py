"""Contract part A (docs/behaviour.md) as data: what a tutorial client sends and the exact replies
it must get.

The same cases run under Starlette's TestClient, over a real uvicorn server, and (in the parity
suite) against the FastAPI reference too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from starlette_ws.params import WHITESPACE

TOKEN = "some-key-token"

# The one disagreement fuzzing found is contract row B2 (asserted in tests/parity/test_spec_b.py):
# pydantic reads a sign or a double underscore after leading zeros ("0-5" is -5); we refuse it.
ZEROS_QUIRK = re.compile(r"[+-]?0[0_]*(-|__)")


def quirky(text: str | None) -> bool:
    """Whether FastAPI reads `text` as an integer where we deliberately refuse it (row B2)."""
    return text is not None and ZEROS_QUIRK.match(text.strip(WHITESPACE)) is not None


@dataclass(frozen=True)
class Case:
    id: str
    path: str
    send: tuple[str, ...] = ()
    replies: tuple[str, ...] | None = ()  # None: the handshake is refused
    cookie: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    refused_loc: tuple[str, str] | None = None  # the first error's loc in our 403 body

    @property
    def refused(self) -> bool:
        return self.replies is None


def items(cookie_or_token: str, message: str, item_id: str, q: int | None = None) -> tuple[str, ...]:
    lines = [f"Session cookie or query token value is: {cookie_or_token}"]
    if q is not None:
        lines.append(f"Query parameter q is: {q}")
    lines.append(f"Message text was: {message}, for item ID: {item_id}")
    return tuple(lines)


def refused(id: str, path: str, loc: tuple[str, str], **kwargs: object) -> Case:
    return Case(id, path, replies=None, refused_loc=loc, **kwargs)  # type: ignore[arg-type]


ECHO = [
    Case(
        "echo",
        "/ws",
        ("hello", "", "a b <b>ü</b>"),
        ("Message text was: hello", "Message text was: ", "Message text was: a b <b>ü</b>"),
    ),
    Case("echo-unicode", "/ws", ("日本語 🎉",), ("Message text was: 日本語 🎉",)),
]

ITEMS = [
    Case("items-token", f"/items/foo/ws?token={TOKEN}", ("hi",), items(TOKEN, "hi", "foo")),
    Case("items-two-messages", "/items/foo/ws?token=t", ("a", "b"), items("t", "a", "foo") + items("t", "b", "foo")),
    Case("items-cookie", "/items/foo/ws", ("hi",), items("c00kie", "hi", "foo"), cookie="session=c00kie"),
    Case(
        "items-cookie-beats-token", "/items/foo/ws?token=tok", ("m",), items("cook", "m", "foo"), cookie="session=cook"
    ),
    Case("items-empty-token", "/items/foo/ws?token=", ("m",), items("", "m", "foo")),
    Case(
        "items-empty-cookie-and-token", "/items/foo/ws?token=tok", ("m",), items("tok", "m", "foo"), cookie="session="
    ),
    Case("items-empty-cookie-alone", "/items/foo/ws", ("m",), items("None", "m", "foo"), cookie="session="),
    Case("items-q-negative", "/items/foo/ws?token=t&q=-5", ("m",), items("t", "m", "foo", -5)),
    Case("items-q-zero", "/items/foo/ws?token=t&q=0", ("m",), items("t", "m", "foo", 0)),
    Case("items-q-plus", "/items/foo/ws?token=t&q=%2B7", ("m",), items("t", "m", "foo", 7)),
    Case("items-q-integral-float", "/items/foo/ws?token=t&q=3.0", ("m",), items("t", "m", "foo", 3)),
    Case("items-q-repeated-last-wins", "/items/foo/ws?token=t&q=1&q=2", ("m",), items("t", "m", "foo", 2)),
    Case("items-q-whitespace", "/items/foo/ws?token=t&q=%205%20", ("m",), items("t", "m", "foo", 5)),
    Case("items-q-huge", f"/items/foo/ws?token=t&q={'9' * 40}", ("m",), items("t", "m", "foo", int("9" * 40))),
    Case("items-token-repeated-last-wins", "/items/foo/ws?token=a&token=b", ("m",), items("b", "m", "foo")),
    Case("items-id-space", f"/items/a%20b/ws?token={TOKEN}", ("m",), items(TOKEN, "m", "a b")),
    Case("items-id-unicode", f"/items/%C3%A9/ws?token={TOKEN}", ("m",), items(TOKEN, "m", "é")),
    Case("items-id-plus-stays", f"/items/a+b/ws?token={TOKEN}", ("m",), items(TOKEN, "m", "a+b")),
    refused("items-no-credentials", "/items/foo/ws", ("query", "token")),
    refused("items-header-token-ignored", "/items/foo/ws", ("query", "token"), headers={"token": "x"}),
    refused("items-q-abc", "/items/foo/ws?token=t&q=abc", ("query", "q")),
    refused("items-q-empty", "/items/foo/ws?token=t&q=", ("query", "q")),
    refused("items-q-fraction", "/items/foo/ws?token=t&q=1.5", ("query", "q")),
    refused("items-missing-credentials-before-bad-q", "/items/foo/ws?q=abc", ("query", "token")),
]

CHAT = [
    Case("chat-one-client", "/ws/42", ("hi",), ("You wrote: hi", "Client #42 says: hi")),
    Case("chat-leading-zeros", "/ws/007", ("x",), ("You wrote: x", "Client #7 says: x")),
    Case("chat-negative-id", "/ws/-3", ("x",), ("You wrote: x", "Client #-3 says: x")),
    refused("chat-id-abc", "/ws/abc", ("path", "client_id")),
    refused("chat-id-fraction", "/ws/1.5", ("path", "client_id")),
]

UNKNOWN = [Case("unknown-path", "/nowhere/ws", replies=None)]

SINGLE_CLIENT = ECHO + ITEMS + CHAT
ALL = SINGLE_CLIENT + UNKNOWN
