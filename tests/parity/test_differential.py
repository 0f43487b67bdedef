"""Differential fuzzing: generated inputs go to both servers over real sockets; the answers must agree.

What is generated: `q` strings (integers written every way FastAPI's validator might or might not
take), item ids and client ids as percent-encoded path segments (unicode, spaces, reserved
characters), query strings with repeated and unknown keys, cookie headers and token values, and
message texts (unicode, empty, control characters, a few KB). Lone surrogates cannot travel in a
UTF-8 text frame, so hypothesis' default alphabet (which leaves them out) is what is used.

Both sides must take the same accept/refuse decision (403 both, whatever the body: bodies differ on
purpose, contract row B1) and send the same replies. By default the run is small and derandomized
(CI is deterministic); `FUZZ_EXAMPLES=N` runs N examples per test with a random seed and the
example database, which is what `make fuzz` does.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection

from harness.servers import UvicornServer
from tests.clients import Transcript, read_replies, ws_connect
from tests.scenarios import quirky

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 0)
FUZZING = FUZZ_EXAMPLES > 0

fuzz = settings(
    max_examples=FUZZ_EXAMPLES if FUZZING else 150,
    derandomize=not FUZZING,
    **({} if FUZZING else {"database": None}),  # type: ignore[arg-type]
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Rust's char::is_whitespace (what pydantic strips) and Python's str.strip differ at the edges.
WHITESPACE = " \t\n\r\v\f\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2007\u200b\u2028\u202f\u3000\ufeff"
DIGITS = "0123456789"
ODD_DIGITS = "٣۴߅०০੦௧๑０𝟗¹²"  # other scripts' digits, superscripts, full width, math digits

# Integers as text, written in every form that might parse: signs, zeros, underscores,
# fractions of zeros, exponents, surrounding white space, other scripts' digits.
integers_as_text = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.builds(
        lambda ws1, sign, zeros, digits, fraction, ws2: f"{ws1}{sign}{zeros}{digits}{fraction}{ws2}",
        st.text(WHITESPACE, max_size=2),
        st.sampled_from(["", "+", "-", "--", "+-"]),
        st.sampled_from(["", "0", "00", "0_0"]),
        st.from_regex(r"[0-9](_?[0-9]){0,12}", fullmatch=True) | st.from_regex(r"[0-9_]{1,6}", fullmatch=True),
        st.sampled_from(["", ".", ".0", ".00", ".000", ".5", ".01", "e0", "e3", "E+2", ".0e0", "j"]),
        st.text(WHITESPACE, max_size=2),
    ),
    st.text(DIGITS + ODD_DIGITS + "+-._ eExXoObB", max_size=8),
    st.text("0123456789_+-. ", max_size=8),
    st.from_regex(r"[0_]{1,3}[+-]?_?[0-9]{0,3}(\.0*)?", fullmatch=True),  # zeros before the sign
    st.builds(lambda zeros, tail: "0" * zeros + tail, st.integers(0, 5000), st.sampled_from(["", "1", "1.0"])),
    st.builds(lambda n, d: d * n, st.integers(4290, 4310), st.sampled_from(["9", "1"])),
    st.text(max_size=6),
)

# A path segment: anything, percent-encoded (a decoded "/" then no longer matches the route).
segments = st.one_of(
    st.text(max_size=20),
    st.text(string.ascii_letters + string.digits + " %/?#&=+;:@!$'()*,.~-_[]\\\"<>{}|^`", max_size=12),
    st.sampled_from(["", ".", "..", "%", "%2F", "ws", "foo"]),
)

# Query parameter values: any text, percent-encoded by the client as a page would.
values = st.one_of(st.text(max_size=16), st.sampled_from(["", "None", "null", "+", " ", "%", "&", "="]))

# Cookie headers go on the wire in ISO-8859-1 (websockets encodes them so; servers decode so).
LATIN1 = "".join(map(chr, range(0x20, 0x7F))) + "".join(map(chr, range(0xA0, 0x100))) + "\t"
cookie_values = st.text(LATIN1, max_size=16)

messages = st.one_of(
    st.text(max_size=64),
    st.text(st.characters(max_codepoint=0x1F), max_size=16),  # control characters, NUL included
    st.text(min_size=1, max_size=4).map(lambda chunk: chunk * 700),  # up to a few KB
    st.sampled_from(["", " ", "\x00", "<b>html</b>", "🎉" * 3, "\r\n"]),
)


def query_string(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in pairs)


def exchange(server: UvicornServer, path: str, headers: dict[str, str], message: str, until: str) -> Transcript:
    """Connect, send one message, read replies up to the one starting with `until` (at most 3)."""
    try:
        with ws_connect(server, path, headers) as ws:
            ws.send(message)
            replies: list[str] = []
            close = None
            while len(replies) < 3 and not (replies and replies[-1].startswith(until)):
                more, close = read_replies(ws, 1)
                replies += more
                if close is not None:
                    break
            return Transcript(replies=tuple(replies), close=close)
    except InvalidStatus as exc:
        return Transcript(status=exc.response.status_code)


def same(
    reference: UvicornServer, ours: UvicornServer, path: str, headers: dict[str, str], message: str, until: str
) -> Transcript:
    theirs = exchange(reference, path, headers, message, until)
    mine = exchange(ours, path, headers, message, until)
    assert mine == theirs, f"path={path!r} headers={headers!r} message={message!r}"
    return theirs


@pytest.mark.contract("A2", "A4")
@example(item_id="foo", q="-0_1", token="t", session=None, extra=[], message="m")
@fuzz
@given(
    item_id=segments,
    q=st.none() | integers_as_text,
    token=st.none() | values,
    session=st.none() | cookie_values,
    extra=st.lists(st.tuples(st.sampled_from(["q", "token", "session", "Q", "x"]), values), max_size=2),
    message=messages,
)
def test_items_parameters(
    reference: UvicornServer,
    ours: UvicornServer,
    item_id: str,
    q: str | None,
    token: str | None,
    session: str | None,
    extra: list[tuple[str, str]],
    message: str,
) -> None:
    """Path, q, token, cookie and extra query keys decide the same way on both."""
    assume(not quirky(q) and not any(key == "q" and quirky(value) for key, value in extra))
    pairs = [("q", q)] if q is not None else []
    pairs += [("token", token)] if token is not None else []
    pairs += extra
    path = f"/items/{quote(item_id, safe='')}/ws" + (f"?{query_string(pairs)}" if pairs else "")
    headers = {"cookie": f"session={session}"} if session is not None else {}
    same(reference, ours, path, headers, message, until="Message text was: ")


@pytest.mark.contract("A2")
@fuzz
@given(cookie=st.text(LATIN1, max_size=40), token=st.none() | values, message=messages)
def test_items_cookie_headers(
    reference: UvicornServer, ours: UvicornServer, cookie: str, token: str | None, message: str
) -> None:
    """Credentials from whole generated Cookie headers (both sides use Starlette's parser)."""
    path = "/items/foo/ws" + (f"?token={quote(token, safe='')}" if token is not None else "")
    same(reference, ours, path, {"cookie": cookie}, message, until="Message text was: ")


@pytest.mark.contract("A3", "A4")
@example(client_id="0_0", message="m")
@fuzz
@given(client_id=integers_as_text | segments, message=messages)
def test_chat_client_ids(reference: UvicornServer, ours: UvicornServer, client_id: str, message: str) -> None:
    """A client id is accepted and printed the same way on both, or refused."""
    assume(not quirky(client_id))
    path = f"/ws/{quote(client_id, safe='')}"
    same(reference, ours, path, {}, message, until="Client #")


@pytest.fixture(scope="module")
def echo_pair(reference: UvicornServer, ours: UvicornServer) -> Iterator[tuple[ClientConnection, ClientConnection]]:
    """One echo connection per server, reused by every example."""
    with ws_connect(reference, "/ws") as theirs, ws_connect(ours, "/ws") as mine:
        yield theirs, mine


@pytest.fixture(scope="module")
def items_pair(reference: UvicornServer, ours: UvicornServer) -> Iterator[tuple[ClientConnection, ClientConnection]]:
    """One items connection per server (with q, so all three replies come), reused by every example."""
    path = "/items/x%20y/ws?token=tok&q=7"
    with ws_connect(reference, path) as theirs, ws_connect(ours, path) as mine:
        yield theirs, mine


@pytest.mark.contract("A1", "A2")
@fuzz
@given(message=messages)
def test_message_texts(
    echo_pair: tuple[ClientConnection, ClientConnection],
    items_pair: tuple[ClientConnection, ClientConnection],
    message: str,
) -> None:
    """Any text message comes back the same from both, byte for byte."""
    for (theirs, mine), count in ((echo_pair, 1), (items_pair, 3)):
        theirs.send(message)
        mine.send(message)
        assert read_replies(mine, count) == read_replies(theirs, count), repr(message)
