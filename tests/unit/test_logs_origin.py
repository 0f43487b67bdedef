from __future__ import annotations

import logging

import pytest

from starlette_ws.auth import origin_errors
from starlette_ws.logs import RedactSecrets, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('1.2.3.4:5 - "WebSocket /items/x/ws?token=abc" [accepted]', '"WebSocket /items/x/ws?token=[redacted]"'),
        ("/ws?q=1&token=abc&z=2", "/ws?q=1&token=[redacted]&z=2"),
        ("/ws?%74oken=abc", "/ws?%74oken=[redacted]"),
        ("/ws?token=", "/ws?token=[redacted]"),
        ("/ws?tokens=abc&mytoken=x", "/ws?tokens=abc&mytoken=x"),
        ("no query here token=abc", "no query here token=abc"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert expected in redact(text)


def test_filter_rewrites_formatted_records() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s" %s', ("ip", "/i?token=s", 403), None
    )
    assert RedactSecrets().filter(record)
    assert record.getMessage() == 'ip - "WebSocket /i?token=[redacted]" 403'


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
