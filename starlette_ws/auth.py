from __future__ import annotations

import hmac
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette_ws.hosts import host_allowed
from starlette_ws.params import Error, error, missing

NO_CREDENTIALS = "Field required: a 'session' cookie or a 'token' query parameter"


def cookie_or_token(session: str | None, token: str | None) -> tuple[str | None, list[Error]]:
    """The tutorial's credential: the session cookie unless it is empty, else the token.

    Only a missing pair is an error; an empty cookie with no token gives None, as the reference
    does (its reply then reads "... value is: None").
    """
    if session is None and token is None:
        return None, [missing("query", "token", NO_CREDENTIALS)]
    return session or token, []


def origin_errors(
    origin: str | None, host: str | None, allowed: Sequence[str], allowed_hosts: Sequence[str] = ("*",)
) -> list[Error]:
    """Cross-site WebSocket hijacking guard: browsers always send Origin, other clients need not.

    With no allow-list only the page's own host may connect (scheme aside, as behind a TLS proxy),
    and only when that host is one of `allowed_hosts` (a rebound name is its own host too);
    `*` in the list allows every origin.
    """
    if origin is None or "*" in allowed:
        return []
    if allowed:
        ok = origin.rstrip("/") in {entry.rstrip("/") for entry in allowed}
    else:
        own = host is not None and urlsplit(origin).netloc.lower() == host.lower()
        ok = own and host_allowed(host, allowed_hosts)
    if ok:
        return []
    return [error("origin", ["header", "origin"], f"Origin not allowed: {origin}", origin)]


def api_key_errors(authorization: str | None, keys: Sequence[str]) -> list[Error]:
    """Why an `Authorization` header does not carry one of `keys` as a bearer key (nothing when it
    does). Every key is compared, each in constant time, so the answer's timing says nothing."""
    loc = ["header", "authorization"]
    if authorization is None:
        return [missing("header", "authorization", "An API key is required: Authorization: Bearer <key>")]
    scheme, _, given = authorization.strip().partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return [error("api_key_malformed", loc, "Expected Authorization: Bearer <key>")]
    found = False
    for key in keys:
        found |= hmac.compare_digest(given.encode(), key.encode())
    if found:
        return []
    return [error("api_key_invalid", loc, "This API key is not valid")]
