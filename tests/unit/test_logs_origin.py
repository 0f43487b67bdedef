from __future__ import annotations

import pytest

from starlette_ws.auth import origin_errors


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
