from __future__ import annotations

from starlette_ws.params import Error, missing

NO_CREDENTIALS = "Field required: a 'session' cookie or a 'token' query parameter"


def cookie_or_token(session: str | None, token: str | None) -> tuple[str | None, list[Error]]:
    """The tutorial's credential: the session cookie unless it is empty, else the token.

    Only a missing pair is an error; an empty cookie with no token gives None, as the reference
    does (its reply then reads "... value is: None").
    """
    if session is None and token is None:
        return None, [missing("query", "token", NO_CREDENTIALS)]
    return session or token, []
