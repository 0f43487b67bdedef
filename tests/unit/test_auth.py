"""The handshake's credential (cookie or token) and the Origin check, which follows the Host check."""

from __future__ import annotations

import pytest

from starlette_ws.auth import cookie_or_token, origin_errors
from starlette_ws.settings import Settings

DEFAULT = Settings().allowed_hosts
PATTERNS = ("chat.example", "*.corp.example", "[::1]")


@pytest.mark.parametrize(
    ("session", "token", "value"),
    [
        ("c", None, "c"),
        (None, "t", "t"),
        ("c", "t", "c"),  # the cookie wins
        (None, "", ""),  # an empty token is still a token
        ("", "t", "t"),  # an empty cookie does not win
        ("", None, None),  # present but empty: accepted, shown as None (as the reference does)
        ("🍪", None, "🍪"),
    ],
)
def test_cookie_or_token(session: str | None, token: str | None, value: str | None) -> None:
    assert cookie_or_token(session, token) == (value, [])


def test_neither_cookie_nor_token_is_an_error() -> None:
    value, errors = cookie_or_token(None, None)
    assert value is None
    assert [(e["type"], e["loc"]) for e in errors] == [("missing", ["query", "token"])]


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        (None, "a:1", (), True),  # not a browser
        ("http://a:1", "a:1", (), True),
        ("https://A:1", "a:1", (), True),  # scheme aside (TLS proxy), case-insensitive
        ("http://evil", "a:1", (), False),
        ("null", "a:1", (), False),
        ("http://a:1", None, (), False),
        ("https://good", "a:1", ("https://good/",), True),
        ("http://a:1", "a:1", ("https://good",), False),  # a list replaces the own-host default
        ("http://anything", "a:1", ("*",), True),
    ],
)
def test_origin_errors(origin: str | None, host: str | None, allowed: tuple[str, ...], ok: bool) -> None:
    errors = origin_errors(origin, host, allowed)
    assert (errors == []) is ok
    if not ok:
        assert errors[0]["loc"] == ["header", "origin"]


REBOUND = "http://evil.example:8000", "evil.example:8000"


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "hosts", "ok"),
    [
        (*REBOUND, (), DEFAULT, False),  # DNS rebinding: its own origin, but not one of our names
        ("http://localhost:8000", "localhost:8000", (), DEFAULT, True),
        ("http://[::1]:8000", "[::1]:8000", (), DEFAULT, True),
        ("http://localhost:8000", "localhost:9000", (), DEFAULT, False),  # the port must match the Host
        ("http://a.corp.example", "a.corp.example", (), PATTERNS, True),
        (*REBOUND, (), ("*",), True),  # `*` hosts: the own-host rule alone, as before
        (*REBOUND, ("http://evil.example:8000",), DEFAULT, True),  # an explicit origin list decides
        ("http://localhost:8000", "localhost:8000", ("https://good",), DEFAULT, False),
        (None, "evil.example", (), DEFAULT, True),  # not a browser: the Host check is the middleware's
    ],
)
def test_origin_follows_the_allowed_hosts(
    origin: str | None, host: str, allowed: tuple[str, ...], hosts: tuple[str, ...], ok: bool
) -> None:
    errors = origin_errors(origin, host, allowed, hosts)
    assert (errors == []) is ok
    if not ok:
        assert errors[0]["loc"] == ["header", "origin"]


def test_origin_check_defaults_to_any_host() -> None:
    """Callers that pass no host list keep the old own-host rule."""
    assert origin_errors(*REBOUND, ()) == []
