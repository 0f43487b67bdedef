"""Malformed room tokens, fuzzed (contract row B29): every one a 403 with a JSON body, never a 500.

Through Starlette's TestClient: tokens that are no JWT at all (random base64url segments, any
text), tokens whose header names an algorithm the server does not accept (none, HS512, RS256
and other confusions), and tokens signed with the server's own secret whose claims have the
wrong type or value, so that the claim checks behind the signature are reached. Each is refused
on the room socket with 403 and a `detail` list of errors, the same token is refused by the
presence read and the room listing (401), and no log record is an error or carries the token.

Over a real uvicorn: tokens up to and past the URL limit (8 KiB, `starlette_ws/protocol.py`) get
a 4xx, 403 with its body while within it, and the server's log shows no traceback and no token.

FUZZ_EXAMPLES sets how many examples each fuzz test runs (`make fuzz` runs many more).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient, WebSocketDenialResponse

from harness.net import HOST
from harness.rawws import handshake
from harness.servers import UvicornServer, errors_in
from starlette_ws.app import create_app
from starlette_ws.settings import Settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
SECRET = "tokens-fuzz-secret-0123456789abcdef"  # HS256 secrets under 32 bytes are refused (tokens.Verifier)
AUDIENCE = "starlette-ws-fuzz"
ISSUER = "https://issuer.example/fuzz"
CLIENT_ID = 5
ROOM = "lobby"
NOW = int(time.time())
EXPIRES = NOW + 3600
NEEDLE = 8  # a token at least this long must show up in no log line (a shorter one could by chance)
# The TestClient's own request lines (httpx2's too: a prefix), URL and token included: not the server's.
CLIENT_LOGGERS = ("httpx", "httpcore")
FORMAT = logging.Formatter("%(name)s %(levelname)s %(message)s")  # a record as a log shows it, traceback and all

app = create_app(Settings(rooms_token_secret=SECRET, rooms_token_audience=AUDIENCE, rooms_token_issuer=ISSUER))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Raw(str):
    """A claim value written into the payload as it is: JSON that `json.dumps` cannot produce."""


MISSING = Raw("")  # the claim is left out


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def dumps(value: dict[str, Any]) -> bytes:
    """A JSON object, its `Raw` values written as they are."""
    fields = (
        f"{json.dumps(key)}:{item if isinstance(item, Raw) else json.dumps(item)}"
        for key, item in value.items()
        if item is not MISSING
    )
    return ("{" + ",".join(fields) + "}").encode()


def signed(header: dict[str, Any], claims: dict[str, Any], key: str = SECRET, digest: str = "sha256") -> str:
    """A compact JWS of `header` and `claims` with an HMAC signature, whatever the header says."""
    signing_input = f"{b64(dumps(header))}.{b64(dumps(claims))}"
    mac = hmac.new(key.encode(), signing_input.encode(), getattr(hashlib, digest)).digest()
    return f"{signing_input}.{b64(mac)}"


def good_claims(**changes: Any) -> dict[str, Any]:
    """Claims this server accepts for CLIENT_ID in ROOM, with `changes` laid over them."""
    claims: dict[str, Any] = {
        "sub": str(CLIENT_ID),
        "exp": EXPIRES,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "rooms": [ROOM],
        "read": ["archive-*"],
    }
    return claims | changes


HS256 = {"alg": "HS256", "typ": "JWT"}


@pytest.mark.contract("B29")
def test_the_unchanged_claims_are_accepted() -> None:
    """The fuzz below changes these claims: as they are, they join the room."""
    with TestClient(app) as client, client.websocket_connect(url_for(signed(HS256, good_claims()))) as ws:
        assert json.loads(ws.receive_text())["type"] == "presence"


def not_an_int(text: str) -> bool:
    """Whether `int()` (what PyJWT reads `exp`, `nbf` and `iat` with) refuses `text`."""
    try:
        int(text)
    except ValueError:
        return True
    return False


# Values each claim may not have, the other claims being right: every one of them is refused.
not_numbers = st.one_of(
    st.text(max_size=20).filter(not_an_int),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.none(),
    st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"), Raw("1" + "0" * 5000)]),
)
in_the_future = st.one_of(
    st.integers(NOW + 3600, 10**30),
    st.floats(NOW + 3600, 1e300),
    st.integers(NOW + 3600, 10**15).map(str),
)
room_lists = st.one_of(
    st.text(max_size=10),  # one pattern, not a list of them
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.dictionaries(st.sampled_from([ROOM, "*"]), st.booleans(), min_size=1),
    st.lists(st.one_of(st.integers(), st.none(), st.booleans(), st.just([ROOM]), st.just({})), min_size=1, max_size=5),
    st.lists(st.just(ROOM), min_size=257, max_size=2000),  # over MAX_PATTERNS (a URL holds 64 KiB here)
    st.lists(st.sampled_from(["", "*" * 129, ROOM * 30]), min_size=1, max_size=3),  # empty, over 128 characters
    st.lists(st.sampled_from([ROOM, "*"]), max_size=3).map(lambda items: [*items, 7]),
)
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "sub": st.one_of(
        st.sampled_from([CLIENT_ID, float(CLIENT_ID), [str(CLIENT_ID)], {"id": CLIENT_ID}, True, None, MISSING]),
        st.sampled_from(["", "007", "05", "-1", "-0", "+5", " 5", "5 ", "5\n", "5_0", "5.0", "1e3", "0x5", "NaN"]),
        st.sampled_from(["\u0665", "\uff15", "\u00b2", "\U0001d7d3", "\u09eb", "5\u0301"]),  # digits, not ASCII
        st.integers(20, 5000).map(lambda digits: "1" * digits),  # longer than any client id
        st.integers(10**19, 10**40).map(str),
        st.integers(-(10**19), -1).map(str),
        st.text(max_size=12).filter(lambda text: not text.isascii() or not text.isdigit()),
    ),
    "exp": st.one_of(
        st.sampled_from([True, False, None, MISSING, str(EXPIRES), [EXPIRES], {"at": EXPIRES}]),
        not_numbers,
        st.integers(-(10**12), NOW - 1),  # expired
        st.floats(-1e12, NOW - 1),
        st.integers(2**1024, 10**400),  # past any float: a refusal all the same, never an exception
    ),
    "rooms": st.one_of(
        room_lists, st.just([]), st.lists(st.sampled_from(["lobby2", "lob", "x*", "*z", "LOBBY", "lobby.*"]))
    ),
    "read": room_lists,
    "aud": st.one_of(
        st.sampled_from([None, MISSING, "", [], {}, 0, 1, True, False, [1], [None], {"aud": AUDIENCE}]),
        st.sampled_from([[AUDIENCE, 1], [[AUDIENCE]], AUDIENCE.upper(), AUDIENCE + " ", Raw("NaN")]),
        st.text(max_size=20).filter(lambda text: text != AUDIENCE),
        st.lists(st.text(max_size=10).filter(lambda text: text != AUDIENCE), max_size=3),
    ),
    "iss": st.one_of(
        st.sampled_from([None, MISSING, "", [ISSUER], {"iss": ISSUER}, 0, True, Raw("Infinity")]),
        st.text(max_size=20).filter(lambda text: text != ISSUER),
    ),
    "nbf": st.one_of(not_numbers, in_the_future),
    "iat": st.one_of(not_numbers, in_the_future),
}
unregistered = st.dictionaries(
    st.text(max_size=8).filter(lambda key: key not in good_claims()),
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3)),
    max_size=3,
)


@st.composite
def wrong_claims(draw: st.DrawFn) -> str:
    """A token signed with the server's secret, one to three of its claims wrong."""
    names = draw(st.lists(st.sampled_from(sorted(WRONG)), min_size=1, max_size=3, unique=True))
    claims = good_claims(**draw(unregistered))
    for name in names:
        claims[name] = draw(WRONG[name])
    return signed(HS256, claims)


NOT_ACCEPTED = ["none", "None", "NONE", "nOnE", "", "HS512", "HS384", "hs256", "HS256 ", "RS256", "ES256", "PS256"]
NOT_ACCEPTED += ["EdDSA", "RS512"]


@st.composite
def confused_algorithms(draw: st.DrawFn) -> str:
    """Good claims under a header that names another algorithm (or none), or names it wrongly."""
    claims = good_claims()
    alg = draw(st.sampled_from([*NOT_ACCEPTED, None, MISSING, 256, ["HS256"], {"alg": "HS256"}]))
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    how = draw(st.sampled_from(["hs256", "own digest", "empty", "random"]))
    if how == "own digest" and alg in ("HS384", "HS512"):  # signed right, with an algorithm not accepted
        return signed(header, claims, digest=f"sha{str(alg)[2:]}")
    token = signed(header, claims)
    if how == "empty":
        return token.rsplit(".", 1)[0] + "."
    if how == "random":  # the size of an RSA-2048 or ES256 signature
        return token.rsplit(".", 1)[0] + "." + b64(draw(st.binary(min_size=64, max_size=256)))
    return token


@st.composite
def bad_headers(draw: st.DrawFn) -> str:
    """HS256 and good claims, but a header PyJWT cannot take, or a signature that does not verify."""
    kind = draw(st.sampled_from(["kid", "crit", "b64", "other key", "tampered", "extra segment", "not json"]))
    if kind == "kid":
        return signed(HS256 | {"kid": draw(st.one_of(st.integers(), st.none(), st.lists(st.text(max_size=3))))}, {})
    if kind == "crit":
        crit = draw(st.sampled_from([[], "b64", ["exp"], [1], ["b64"], {"b64": True}]))
        return signed(HS256 | {"crit": crit}, good_claims())
    if kind == "b64":
        return signed(HS256 | {"b64": False, "crit": ["b64"]}, good_claims()).split(".")[0] + ".." + b64(b"x" * 32)
    if kind == "other key":
        return signed(HS256, good_claims(), key=draw(st.text(min_size=32, max_size=40)).replace(SECRET, ""))
    token = signed(HS256, good_claims())
    if kind == "tampered":
        head, _, signature = token.rpartition(".")
        flipped = "A" if signature[0] != "A" else "B"
        return f"{head}.{flipped}{signature[1:]}"
    if kind == "extra segment":
        return token + "." + b64(draw(st.binary(max_size=16)))
    header = draw(st.sampled_from([b"[]", b"null", b'"HS256"', b"{", b"\xff\xfe", b"[" * 5000 + b"]" * 5000]))
    return b64(header) + token[token.index(".") :]


segments = st.lists(st.binary(max_size=96).map(b64), min_size=1, max_size=5).map(".".join)
json_segments = st.lists(
    st.one_of(
        st.binary(max_size=48).map(b64),
        st.dictionaries(st.text(max_size=6), st.one_of(st.none(), st.integers(), st.text(max_size=8))).map(
            lambda value: b64(dumps(value))
        ),
    ),
    min_size=1,
    max_size=5,
).map(".".join)
any_text = st.text(min_size=1, max_size=200)


def url_for(token: str, room: str = ROOM, client_id: int = CLIENT_ID) -> str:
    return f"/rooms/{room}/ws/{client_id}?token={quote(token, safe='')}"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def server_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if not record.name.startswith(CLIENT_LOGGERS)]


def assert_errors(detail: Any) -> None:
    """A non-empty list of errors in the A4 shape: `type`, `loc` and `msg` each there and not empty."""
    assert isinstance(detail, list) and detail, detail
    for error in detail:
        assert isinstance(error["type"], str) and error["type"], error
        assert isinstance(error["loc"], list) and error["loc"], error
        assert all(isinstance(part, str) for part in error["loc"]), error
        assert isinstance(error["msg"], str) and error["msg"], error


def assert_refused(
    client: TestClient, caplog: pytest.LogCaptureFixture, token: str, *, reads: bool = True
) -> list[dict[str, Any]]:
    """The room socket refuses `token` with 403 and why, and (`reads`) so do presence and the
    listing, with 401; nothing is logged as an error, nor with the token in it. The socket's errors."""
    caplog.clear()
    with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect(url_for(token)):
        pytest.fail(f"accepted: {token[:200]!r}")
    denial = refused.value
    assert denial.status_code == 403, (denial.status_code, denial.text[:500])
    detail: list[dict[str, Any]] = denial.json()["detail"]
    assert_errors(detail)
    bodies = [denial.text]
    if reads:
        query = f"?token={quote(token, safe='')}"
        presence = client.get(f"/rooms/{ROOM}/presence{query}")
        assert presence.status_code == 401, (presence.status_code, presence.text[:500])
        assert_errors(presence.json()["detail"])
        bodies.append(presence.text)
        # The listing refuses a token that does not verify; one that does (the room not among its
        # patterns) sees the rooms it may read.
        verified = {error["type"] for error in detail} <= {"room_not_permitted", "token_subject"}
        listing = client.get(f"/rooms{query}")
        assert listing.status_code == (200 if verified else 401), (detail, listing.status_code)
    records = server_records(caplog)
    assert not [record for record in records if record.levelno >= logging.ERROR], caplog.text
    if len(token) >= NEEDLE:
        for record in records:
            assert token not in FORMAT.format(record), FORMAT.format(record)[:500]
        assert not [body for body in bodies if token in body], "a refusal echoes the token"
    return detail


@fuzz
@given(token=wrong_claims())
@example(token=signed(HS256, good_claims(exp=10**400)))  # past any float
@example(token=signed(HS256, good_claims(sub="1" * 500, rooms=[ROOM] * 1000)))
@example(token=signed(HS256, good_claims(read=[{}], aud=[AUDIENCE, None])))
@pytest.mark.contract("B29")
def test_signed_tokens_with_wrong_claims_are_refused(
    client: TestClient, caplog: pytest.LogCaptureFixture, token: str
) -> None:
    caplog.set_level(logging.DEBUG)
    assert_refused(client, caplog, token)


@fuzz
@given(token=st.one_of(confused_algorithms(), bad_headers()))
@example(token=signed({"alg": "none"}, good_claims()).rsplit(".", 1)[0] + ".")
@example(token=signed({"alg": "HS512"}, good_claims(), digest="sha512"))
@example(token=signed({"alg": "RS256"}, good_claims()))
@pytest.mark.contract("B29")
def test_algorithm_confusion_and_bad_headers_are_refused(
    client: TestClient, caplog: pytest.LogCaptureFixture, token: str
) -> None:
    caplog.set_level(logging.DEBUG)
    assert_refused(client, caplog, token)


@fuzz
@given(token=st.one_of(segments, json_segments, any_text))
@example(token="")  # `?token=`: none given
@example(token="x" * 8000)
@pytest.mark.contract("B29")
def test_random_segments_and_text_are_refused(client: TestClient, caplog: pytest.LogCaptureFixture, token: str) -> None:
    caplog.set_level(logging.DEBUG)
    assert_refused(client, caplog, token)


@fuzz
@given(
    sub=st.integers(0, 10**19 - 1).filter(lambda number: number != CLIENT_ID),
    rooms=st.lists(st.sampled_from([ROOM, "*", "lob*", "*by", "l*y"]), min_size=1, max_size=3),
)
@pytest.mark.contract("B29")
def test_another_clients_token_is_refused(
    client: TestClient, caplog: pytest.LogCaptureFixture, sub: int, rooms: list[str]
) -> None:
    """A good token for another client id: the socket says whose it is (it may still read presence)."""
    caplog.set_level(logging.DEBUG)
    detail = assert_refused(client, caplog, signed(HS256, good_claims(sub=str(sub), rooms=rooms)), reads=False)
    assert [error["type"] for error in detail] == ["token_subject"]
    assert detail[0]["loc"] == ["path", "client_id"]


# Over a real uvicorn: tokens as long as a URL may be, and longer.
URL_LIMIT = 8 * 1024  # starlette_ws/protocol.py: MAX_URL_BYTES, a 414 past it
# Tokens up to WITHIN bytes fit every limit. Past it, the handshake's request line ("GET <url>
# HTTP/1.1") reaches the websockets library's own 8 KiB limit (its 414) before our URL limit does.
WITHIN = 8_100
SIZES = [1_000, 7_000, WITHIN, 8_170, 8_200, 60_000, 100_000, 1_000_000]
WS_PATH = f"/rooms/{ROOM}/ws/{CLIENT_ID}?token="


def huge_token(size: int) -> str:
    """A token of `size` characters signed with the server's secret, its claims wrong (`rooms`
    is one long string) and its text unique, so that a trace of it in the log can be told."""
    claims = good_claims(rooms="", jti=b64(os.urandom(16)))
    claims["rooms"] = "x" * max(0, (size - len(signed(HS256, claims))) * 3 // 4)
    token = signed(HS256, claims)
    while len(token) > size:
        claims["rooms"] = claims["rooms"][:-1]
        token = signed(HS256, claims)
    return token


def exchange(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send a raw request; the response's status and body (up to the server's close)."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # answered and closed before the end
            sock.sendall(request)
        response = b""
        try:
            while chunk := sock.recv(65536):
                response += chunk
                head, found, body = response.partition(b"\r\n\r\n")
                length = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
                if found and length and len(body) >= int(length[0].split(b":")[1]):
                    break
        except ConnectionResetError:
            pass
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), response[:200]
    return int(head.split(b" ")[1]), body


def get(port: int, target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()


@pytest.mark.contract("B29")
def test_huge_tokens_over_uvicorn_get_a_4xx_and_leave_no_trace(tmp_path: Path) -> None:
    tokens = {size: huge_token(size) for size in SIZES}
    assert all(size - 4 <= len(token) <= size for size, token in tokens.items())
    env = {"ROOMS_TOKEN_SECRET": SECRET, "ROOMS_TOKEN_AUDIENCE": AUDIENCE, "ROOMS_TOKEN_ISSUER": ISSUER}
    with UvicornServer(env=env, log_path=tmp_path / "server.log") as server:
        requests: dict[str, Callable[[str], bytes]] = {
            "ws": lambda token: handshake(HOST, server.port, WS_PATH + token),
            "presence": lambda token: get(server.port, f"/rooms/{ROOM}/presence?token={token}"),
            "rooms": lambda token: get(server.port, f"/rooms?token={token}"),
        }
        for size, token in tokens.items():
            for kind, request in requests.items():
                status, body = exchange(server.port, request(token))
                assert 400 <= status < 500, (kind, size, status, body[:300])
                if size <= WITHIN:
                    assert status == {"ws": 403, "presence": 401, "rooms": 401}[kind], (kind, size, status, body[:300])
                    if kind != "rooms":  # the listing is a page
                        assert_errors(json.loads(body)["detail"])
                    assert token not in body.decode(errors="replace")
                elif len(request(token).split(b" ")[1]) > URL_LIMIT:
                    assert status == 414, (kind, size, status, body[:300])
        assert server.health()["status"] == "ok"
        time.sleep(0.2)  # the last access lines
        log = server.log()
    assert "Traceback" not in log, log[-3000:]
    assert errors_in(log) == [], log[-3000:]
    for token in tokens.values():
        assert token[:64] not in log and token[-43:] not in log, "the log carries a token"
