from __future__ import annotations

import pytest

from starlette_ws.auth import cookie_or_token
from starlette_ws.deny import MAX_REASON_BYTES, close_reason
from starlette_ws.params import Error
from starlette_ws.ratelimit import TokenBucket
from starlette_ws.settings import Settings


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


def test_close_reason_fits_a_close_frame() -> None:
    errors: list[Error] = [{"type": "int_parsing", "loc": ["query", "é" * 100], "msg": "", "input": "x"}] * 3
    reason = close_reason(errors)
    assert len(reason.encode()) <= MAX_REASON_BYTES
    assert reason.startswith("query.éé")
    assert close_reason([{"type": "missing", "loc": ["query", "token"], "msg": "", "input": None}]) == (
        "query.token: missing"
    )


def test_token_bucket_allows_bursts_then_the_sustained_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.1
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] += 100  # refills only up to the burst
    assert sum(bucket.take() for _ in range(10)) == 3


def test_settings_from_environment() -> None:
    settings = Settings.from_environ(
        {"BROADCAST_URL": "redis://127.0.0.1:1/0", "MAX_MESSAGE_BYTES": "10", "ALLOWED_ORIGINS": "https://a, https://b"}
    )
    assert settings.broadcast_url == "redis://127.0.0.1:1/0"
    assert settings.max_message_bytes == 10
    assert settings.allowed_origins == ("https://a", "https://b")
    assert settings.allowed_hosts == ("localhost", "127.0.0.1", "[::1]", "testserver")
    assert Settings.from_environ({}) == Settings()


@pytest.mark.parametrize(
    ("value", "hosts"),
    [
        ("127.0.0.1,localhost,127.0.0.1,[::1]", ("127.0.0.1", "localhost", "127.0.0.1", "[::1]")),  # make run's
        (" chat.example , *.corp.example ", ("chat.example", "*.corp.example")),
        ("*", ("*",)),
        ("", Settings().allowed_hosts),  # empty is unset, not "refuse everything"
    ],
)
def test_allowed_hosts_from_environment(value: str, hosts: tuple[str, ...]) -> None:
    assert Settings.from_environ({"ALLOWED_HOSTS": value}).allowed_hosts == hosts
