"""`tokens.Tokens`: a token verified once is remembered until its exp, never past it, and never
more than `size` of them; refusals are not remembered."""

from __future__ import annotations

import time

import jwt
import pytest

from starlette_ws import tokens
from starlette_ws.tokens import Tokens, Verifier

SECRET = "a-unit-test-secret-long-enough-for-hs256!"
pytestmark = pytest.mark.contract("B29")


def token(sub: int, exp: float) -> str:
    return jwt.encode({"sub": str(sub), "exp": int(exp), "rooms": ["a"]}, SECRET, algorithm="HS256")


def test_a_token_is_decoded_once_until_its_exp(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = Tokens(Verifier(SECRET, ("HS256",)), size=2)
    decoded: list[str] = []
    real = tokens.identify

    def counting(token: str | None, verifier: Verifier, *, now: float | None = None) -> object:
        decoded.append(str(token))
        return real(token, verifier, now=now)

    monkeypatch.setattr(tokens, "identify", counting)
    exp = int(time.time()) + 1
    soon = token(1, exp)
    first, second = checked.identify(soon), checked.identify(soon)
    assert first == second and first[0] is not None and first[0].client_id == 1 and decoded == [soon]
    time.sleep(exp - time.time() + 0.01)  # past its exp: refused, though it was remembered
    identity, errors = checked.identify(soon)
    assert identity is None and [error["type"] for error in errors] == ["token_expired"]

    bad = token(2, time.time() + 60)[:-2] + "xx"
    for _ in range(2):
        assert checked.identify(bad)[0] is None
    assert decoded.count(bad) == 2  # a refusal is decided again each time

    for sub in (3, 4, 5):
        assert checked.identify(token(sub, time.time() + 60))[0] is not None
    assert len(checked) == 2  # bounded: the least recently used went
