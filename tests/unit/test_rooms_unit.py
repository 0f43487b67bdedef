"""`starlette_ws.rooms` without a socket: its parameters, good and bad, and which rooms an HTTP
request may see (open rooms, an API key, a room token, or none and why), from real requests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from starlette_ws.app import create_app
from starlette_ws.history import payload
from starlette_ws.params import InvalidValue
from starlette_ws.rooms import (
    parse_client_id,
    parse_epoch,
    parse_room,
    parse_since,
    presence,
    rest_of,
    viewer,
)
from starlette_ws.settings import Settings
from starlette_ws.tokens import make

SECRET = "a-secret-of-at-least-thirty-two-bytes!"
KEY = "an-api-key"


@pytest.mark.parametrize("text", ["a", "lobby", "Team_1.blue-2", "...", "x" * 64, "0"])
def test_a_room_name_is_taken_as_it_is(text: str) -> None:
    assert parse_room(text) == text


@pytest.mark.parametrize("text", ["", ".", "..", "x" * 65, "a b", "a/b", "é", "lobby\n", "a%20b"])
def test_other_room_names_are_refused(text: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_room(text)
    assert caught.value.type == "string_pattern_mismatch"
    assert "1-64 characters" in caught.value.msg


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("7", 7), ("9" * 19, int("9" * 19))])
def test_a_client_id_has_one_spelling(text: str, value: int) -> None:
    assert parse_client_id(text) == value


@pytest.mark.parametrize("text", ["", "01", "00", "-1", "+1", " 1", "1 ", "1_000", "1.0", "1" * 20, "١", "x"])
def test_other_spellings_of_a_client_id_are_refused(text: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_client_id(text)
    assert caught.value.type == "string_pattern_mismatch"


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("12", 12), (" 5 ", 5), ("1_000", 1000), ("3.0", 3)])
def test_since_is_an_offset_of_zero_or_more(text: str, value: int) -> None:
    assert parse_since(text) == value


@pytest.mark.parametrize(
    ("text", "kind"), [("-1", "greater_than_equal"), ("x", "int_parsing"), ("", "int_parsing"), ("1.5", "int_parsing")]
)
def test_since_refuses_what_is_not_such_an_offset(text: str, kind: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_since(text)
    assert caught.value.type == kind


@pytest.mark.parametrize("text", ["0", "9f3c0a1b2c3d4e5f", "f" * 64])
def test_an_epoch_is_hex(text: str) -> None:
    assert parse_epoch(text) == text


@pytest.mark.parametrize("text", ["", "9F3C", "xyz", "f" * 65, " 0", "0x1"])
def test_other_epochs_are_refused(text: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_epoch(text)
    assert caught.value.type == "string_pattern_mismatch"


def test_rest_of_is_the_objects_text_after_its_brace_and_completes_a_payload() -> None:
    entry = {"type": "message", "room": "r", "client_id": 1, "text": 'é "quoted" a:b\n'}
    rest = rest_of(entry)
    assert rest == '"type":"message","room":"r","client_id":1,"text":"é \\"quoted\\" a:b\\n"}'
    assert json.loads(payload(4, "ab", rest)) == {"offset": 4, "epoch": "ab", **entry}


def app_with(**settings: Any) -> Starlette:
    return create_app(Settings(**settings))


def request(app: Starlette, query: str = "", authorization: str | None = None, **scope: Any) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/rooms",
            "query_string": query.encode(),
            "headers": headers,
            "app": app,
            **scope,
        }
    )


def sees(found: tuple[Callable[[str], bool] | None, list[Any]], *rooms: str) -> list[bool]:
    decide, errors = found
    assert decide is not None and errors == []
    return [decide(room) for room in rooms]


def refused(found: tuple[Callable[[str], bool] | None, list[Any]]) -> list[str]:
    decide, errors = found
    assert decide is None
    return [error["type"] for error in errors]


def test_open_rooms_are_all_seen_by_anyone() -> None:
    app = app_with()
    assert sees(viewer(request(app)), "lobby", "secret") == [True, True]
    assert sees(viewer(request(app, "token=nonsense", "Bearer wrong")), "lobby") == [True]


def test_an_api_key_sees_every_room_and_a_wrong_one_none() -> None:
    app = app_with(rooms_token_secret=SECRET, api_keys=(KEY,))
    assert sees(viewer(request(app, authorization=f"Bearer {KEY}")), "lobby", "secret") == [True, True]
    assert sees(viewer(request(app, authorization=f"  bearer {KEY}")), "lobby") == [True]
    assert refused(viewer(request(app, authorization="Bearer not-the-key"))) == ["api_key_invalid"]


def test_a_token_sees_the_rooms_it_may_read() -> None:
    app = app_with(rooms_token_secret=SECRET, api_keys=(KEY,))
    token = make(SECRET, 5, ["lobby", "team-*"], read=["news"])
    assert sees(viewer(request(app, f"token={token}")), "lobby", "team-a", "news", "secret") == [
        True,
        True,
        True,
        False,
    ]
    basic = request(app, f"token={token}", "Basic dXNlcjpwYXNz")  # a proxy's credentials: the token decides
    assert sees(viewer(basic), "lobby", "secret") == [True, False]


def test_without_a_key_or_a_valid_token_no_room_is_seen() -> None:
    app = app_with(rooms_token_secret=SECRET, api_keys=(KEY,))
    assert refused(viewer(request(app))) == ["token_missing"]
    assert refused(viewer(request(app, "token=not.a.jwt"))) == ["token_malformed"]
    assert refused(viewer(request(app, f"token={make('another-secret-of-thirty-two-bytes!!', 5, ['*'])}"))) == [
        "token_signature"
    ]
    assert refused(viewer(request(app, f"token={make(SECRET, 5, ['*'], ttl=-10)}"))) == ["token_expired"]
    no_keys = app_with(rooms_token_secret=SECRET)  # no API keys: a bearer header is no way in
    assert refused(viewer(request(no_keys, authorization=f"Bearer {KEY}"))) == ["token_missing"]


@pytest.mark.anyio
async def test_presence_answers_the_rooms_members_to_whoever_may_see_it() -> None:
    app = app_with(rooms_token_secret=SECRET)
    store = await app.state.hubs.store()
    await store.present("lobby", "tab", "12", 30.0)
    token = make(SECRET, 5, ["lobby"])

    response = await presence(request(app, f"token={token}", path_params={"room": "lobby"}))
    assert response.status_code == 200
    assert json.loads(bytes(response.body)) == {"room": "lobby", "members": [12]}

    response = await presence(request(app, f"token={token}", path_params={"room": "secret"}))
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert json.loads(bytes(response.body))["detail"][0]["type"] == "room_not_permitted"

    response = await presence(request(app, path_params={"room": "lobby"}))
    assert response.status_code == 401
    assert json.loads(bytes(response.body))["detail"][0]["type"] == "token_missing"

    response = await presence(request(app, f"token={token}", path_params={"room": ".."}))
    assert response.status_code == 404
    assert json.loads(bytes(response.body))["detail"][0]["loc"] == ["path", "room"]
