"""Room tokens and the server API over Starlette's TestClient (memory://): every refusal reason,
read-only members, one rate per client id, presence and listing behind tokens, the API's routes
and errors, the token command, and keys other than an HMAC secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from starlette_ws import tokens
from starlette_ws.app import create_app
from starlette_ws.settings import Settings
from tests.clients import session_json as receive
from tests.clients import session_until as until

OTHER_SECRET = "another-secret-of-64-bytes-so-that-tokens-of-any-size-can-be-made"
SECRET = "a-secret-of-64-bytes-so-that-tokens-of-any-hmac-size-can-be-made!"
KEY = "an-api-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
pytestmark = pytest.mark.contract("B29")


def token(
    sub: int = 7, rooms: tuple[str, ...] = ("team-*",), read: tuple[str, ...] = (), ttl: float = 60, **claims: Any
) -> str:
    made = {"sub": str(sub), "exp": int(time.time() + ttl), "rooms": list(rooms), "read": list(read)}
    made.update(claims)
    return jwt.encode(made, SECRET, algorithm="HS256")


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings(
        rooms_token_secret=SECRET, api_keys=(KEY, "next-key"), chat_rate_burst=6, chat_rate_per_second=0.1
    )
    with TestClient(create_app(settings)) as client:
        yield client


def refusal(client: TestClient, path: str) -> tuple[int, list[dict[str, Any]]]:
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(path):
        pass
    response = denied.value
    return response.status_code, json.loads(response.content)["detail"]


def types(detail: list[dict[str, Any]]) -> list[str]:
    return [error["type"] for error in detail]


DAY = 86_400  # tokens made when the tests are collected must still be valid when they run


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "token_missing"),
        ("?token=", "token_missing"),
        ("?token=not.a.jwt", "token_malformed"),
        ("?token=abc", "token_malformed"),
        (
            f"?token={jwt.encode({'sub': '7', 'exp': int(time.time()) + DAY, 'rooms': ['*']}, OTHER_SECRET)}",
            "token_signature",
        ),
        (f"?token={token(ttl=-5)}", "token_expired"),
        (f"?token={token(sub=8, ttl=DAY)}", "token_subject"),
        (f"?token={token(rooms=('other',), ttl=DAY)}", "room_not_permitted"),
        (f"?token={jwt.encode({'sub': '7', 'rooms': ['*']}, SECRET)}", "token_claims"),  # no exp
        (
            f"?token={jwt.encode({'sub': '7', 'exp': int(time.time()) + DAY, 'rooms': 'team-a'}, SECRET)}",
            "token_claims",
        ),
        (f"?token={token(sub=7, exp='soon')}", "token_malformed"),
        (
            f"?token={jwt.encode({'sub': '7', 'exp': int(time.time()) + DAY}, SECRET, algorithm='HS512')}",
            "token_algorithm",
        ),
        (f"?token={jwt.encode({'sub': '7', 'exp': int(time.time()) + DAY}, '', algorithm='none')}", "token_algorithm"),
    ],
    # the tokens carry the time they were made: named ones keep every xdist worker's collection the same
    ids=[
        "absent",
        "empty",
        "not-a-jwt",
        "one-part",
        "other-secret",
        "expired",
        "other-sub",
        "other-room",
        "no-exp",
        "rooms-not-a-list",
        "exp-not-a-number",
        "hs512",
        "alg-none",
    ],
)
def test_every_refusal_is_a_403_that_says_why(client: TestClient, query: str, reason: str) -> None:
    status, detail = refusal(client, f"/rooms/team-a/ws/7{query}")
    assert status == 403 and types(detail) == [reason]
    assert all(error["input"] is None and error["msg"] for error in detail)  # never the token itself


def test_audience_and_issuer_are_checked_when_set() -> None:
    settings = Settings(
        rooms_token_secret=SECRET, rooms_token_audience="rooms", rooms_token_issuer="https://auth.example"
    )
    with TestClient(create_app(settings)) as client:
        good = token(aud="rooms", iss="https://auth.example")
        with client.websocket_connect(f"/rooms/team-a/ws/7?token={good}") as ws:
            assert receive(ws)["type"] == "presence"
        assert types(
            refusal(client, f"/rooms/team-a/ws/7?token={token(aud='other', iss='https://auth.example')}")[1]
        ) == ["token_audience"]
        assert types(
            refusal(client, f"/rooms/team-a/ws/7?token={token(aud='rooms', iss='https://evil.example')}")[1]
        ) == ["token_issuer"]
        assert types(refusal(client, f"/rooms/team-a/ws/7?token={token(iss='https://auth.example')}")[1]) == [
            "token_claims"
        ]


def test_a_read_only_member_receives_and_is_closed_with_1008_when_it_sends(client: TestClient) -> None:
    reader = token(sub=2, rooms=(), read=("team-*",))
    with client.websocket_connect(f"/rooms/team-a/ws/1?token={token(sub=1)}") as writer:
        until(writer, "join", client_id=1)
        with client.websocket_connect(f"/rooms/team-a/ws/2?token={reader}") as ws:
            until(ws, "join", client_id=2)
            writer.send_text("for everyone")
            assert until(ws, "message")["text"] == "for everyone"
            ws.send_text("may I?")
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:
                    ws.receive_text()
            assert closed.value.code == 1008 and "Read-only" in closed.value.reason


def test_two_tabs_are_one_member_with_one_rate(client: TestClient) -> None:
    """Burst 6 per client id: two connections of client 5 share it, the seventh line closes its sender."""
    five = token(sub=5)
    with client.websocket_connect(f"/rooms/team-a/ws/9?token={token(sub=9)}") as watcher:
        until(watcher, "join", client_id=9)
        with client.websocket_connect(f"/rooms/team-a/ws/5?token={five}") as one:
            until(watcher, "join", client_id=5)
            with client.websocket_connect(f"/rooms/team-a/ws/5?token={five}") as two:
                assert receive(two)["members"] == [5, 9]  # listed once
                for n in range(3):
                    one.send_text(f"one {n}")
                    two.send_text(f"two {n}")
                assert [until(watcher, "message")["text"] for _ in range(6)][-1] == "two 2"
                two.send_text("over the limit")
                with pytest.raises(WebSocketDisconnect) as closed:
                    while True:
                        two.receive_text()
                assert closed.value.code == 1008
            watcher.send_text("ping")  # the other tab is still there: no leave came for 5 before this
            assert (receive(watcher)["type"], client.get("/rooms/team-a/presence", headers=AUTH).json()["members"]) == (
                "message",
                [5, 9],
            )
        assert until(watcher, "leave")["client_id"] == 5  # its last connection has gone
    deadline = time.monotonic() + 5
    while len(client.app.state.room_buckets) and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    assert len(client.app.state.room_buckets) == 0  # type: ignore[attr-defined]  # each rate went with its last connection


def test_presence_and_the_listing_need_a_token_or_a_key(client: TestClient) -> None:
    with client.websocket_connect(f"/rooms/team-a/ws/7?token={token()}") as ws:
        until(ws, "join", client_id=7)
        anonymous = client.get("/rooms/team-a/presence")
        assert anonymous.status_code == 401 and types(anonymous.json()["detail"]) == ["token_missing"]
        assert anonymous.headers["www-authenticate"] == "Bearer"
        elsewhere = client.get(f"/rooms/team-a/presence?token={token(rooms=('news',))}")
        assert elsewhere.status_code == 401 and types(elsewhere.json()["detail"]) == ["room_not_permitted"]
        assert client.get(f"/rooms/team-a/presence?token={token(rooms=(), read=('team-a',))}").json()["members"] == [7]
        assert client.get("/rooms/team-a/presence", headers=AUTH).json()["members"] == [7]
        assert client.get("/rooms/team-a/presence", headers={"Authorization": "Bearer wrong"}).status_code == 401
        proxied = client.get(f"/rooms/team-a/presence?token={token()}", headers={"Authorization": "Basic dTpw"})
        assert proxied.json()["members"] == [7]  # a proxy's Basic credentials are not an API key
        huge = client.get(f"/rooms/team-a/presence?token={'a' * 5000}")
        assert huge.status_code == 401 and "longer than 4096" in huge.json()["detail"][0]["msg"]
        listing = client.get("/rooms")
        assert listing.status_code == 401 and "team-a" not in listing.text
        assert "team-a" in client.get(f"/rooms?token={token()}").text
        assert "team-a" not in client.get(f"/rooms?token={token(rooms=('news',))}").text


def test_without_token_settings_rooms_stay_open_and_say_so() -> None:
    with TestClient(create_app(Settings())) as client:
        with client.websocket_connect("/rooms/team-a/ws/7") as ws:
            assert receive(ws)["type"] == "presence"
        assert client.get("/rooms/team-a/presence").status_code == 200
        assert "Rooms are open on this server" in client.get("/rooms/team-a").text
        assert client.get("/api/rooms", headers=AUTH).status_code == 404  # no API_KEYS: no API


def test_the_api_says_posts_pages_resets_lists_and_removes(client: TestClient) -> None:
    with client.websocket_connect(f"/rooms/team-a/ws/7?token={token()}") as ws:
        until(ws, "join", client_id=7)
        ws.send_text("from a member")
        first = until(ws, "message")
        posted = client.post("/api/rooms/team-a/messages", json={"text": "from the app", "client_id": 3}, headers=AUTH)
        assert posted.status_code == 201
        assert posted.json() == {"room": "team-a", "offset": first["offset"] + 1, "epoch": first["epoch"]}
        entry = until(ws, "message")
        assert (entry["offset"], entry["text"], entry["client_id"]) == (first["offset"] + 1, "from the app", 3)
        anonymous = client.post(
            "/api/rooms/team-a/messages", json={"text": "no sender"}, headers={"Authorization": "Bearer next-key"}
        )
        assert anonymous.status_code == 201 and until(ws, "message")["client_id"] is None

        page = client.get("/api/rooms/team-a/history?since=0&limit=2", headers=AUTH).json()
        assert [e["text"] for e in page["entries"]] == ["from a member", "from the app"]
        assert (page["room"], page["epoch"], page["missed"], page["last"]) == ("team-a", first["epoch"], 0, 3)
        rest = client.get(f"/api/rooms/team-a/history?since=2&epoch={first['epoch']}", headers=AUTH).json()
        assert [e["offset"] for e in rest["entries"]] == [3]
        assert client.get("/api/rooms/team-a/presence", headers=AUTH).json() == {"room": "team-a", "members": [7]}
        assert client.get("/api/rooms", headers=AUTH).json() == {"rooms": [{"room": "team-a", "members": 1}]}

        assert client.delete("/api/rooms/team-a/history", headers=AUTH).status_code == 204
        gap = until(ws, "gap")  # told at once: what it had is another history now
        assert gap["missed"] is None and gap["epoch"] != first["epoch"]
        fresh = client.get(f"/api/rooms/team-a/history?since=3&epoch={first['epoch']}", headers=AUTH).json()
        assert (fresh["epoch"], fresh["missed"], fresh["entries"]) == (gap["epoch"], None, [])

        assert client.delete("/api/rooms/team-a/members/7", headers=AUTH).status_code == 204
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                ws.receive_text()
        assert closed.value.code == 4003 and "Removed" in closed.value.reason


@pytest.mark.contract("B30")
@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "kind"),
    [
        ("GET", "/api/rooms", {"headers": {}}, 401, "missing"),
        ("GET", "/api/rooms", {"headers": {"Authorization": "Bearer wrong"}}, 401, "api_key_invalid"),
        ("GET", "/api/rooms", {"headers": {"Authorization": f"Basic {KEY}"}}, 401, "api_key_malformed"),
        ("POST", "/api/rooms/team-a/messages", {"content": b"{not json"}, 422, "json_invalid"),
        ("POST", "/api/rooms/team-a/messages", {"json": ["text"]}, 422, "model_type"),
        ("POST", "/api/rooms/team-a/messages", {"json": {}}, 422, "missing"),
        ("POST", "/api/rooms/team-a/messages", {"json": {"text": "x", "client_id": "7"}}, 422, "client_id"),
        ("POST", "/api/rooms/team-a/messages", {"json": {"text": "x", "client_id": True}}, 422, "client_id"),
        ("POST", "/api/rooms/team-a/messages", {"json": {"text": "x", "to": 1}}, 422, "extra_forbidden"),
        ("POST", "/api/rooms/team-a/messages", {"json": {"text": "x" * 70_000}}, 413, "too_large"),
        ("POST", "/api/rooms/no%20spaces/messages", {"json": {"text": "x"}}, 422, "string_pattern_mismatch"),
        ("GET", "/api/rooms/team-a/history?since=-1", {}, 422, "greater_than_equal"),
        ("GET", "/api/rooms/team-a/history?limit=0", {}, 422, "limit"),
        ("GET", "/api/rooms/team-a/history?epoch=xyz", {}, 422, "string_pattern_mismatch"),
        ("DELETE", "/api/rooms/team-a/members/007", {}, 422, "string_pattern_mismatch"),
        ("POST", "/api/rooms/team-a/messages", {"content": b'{"text": "a\\ud800b"}'}, 422, "string_unicode"),
        ("POST", "/api/rooms/team-a/messages", {"content": b"[" * 50_000}, 422, "json_invalid"),
        ("POST", "/api/rooms/../messages", {"json": {"text": "x"}}, 404, ""),  # the client's URL: /api/messages
        ("POST", "/api/rooms/%2E%2E/messages", {"json": {"text": "x"}}, 422, "string_pattern_mismatch"),
    ],
)
def test_the_api_refuses_with_a_status_and_reasons(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any], status: int, kind: str
) -> None:
    kwargs = {"headers": AUTH, **kwargs}
    response = client.request(method, path, **kwargs)
    assert response.status_code == status
    if kind:
        assert kind in types(response.json()["detail"])


def test_the_token_command_makes_a_token_the_server_takes(client: TestClient, tmp_path: Any) -> None:
    env = {**os.environ, "ROOMS_TOKEN_SECRET": SECRET}
    command = [sys.executable, "-m", "starlette_ws", "token", "--sub", "42", "--rooms", "team-*", "--ttl", "60"]
    made = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.strip()
    with client.websocket_connect(f"/rooms/team-b/ws/42?token={made}") as ws:
        assert receive(ws)["members"] == [42]
    refused = subprocess.run([*command[:5], "007"], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--sub" in refused.stderr
    unset = subprocess.run(command, env={**os.environ, "ROOMS_TOKEN_SECRET": ""}, capture_output=True, text=True)
    assert unset.returncode == 2 and "ROOMS_TOKEN_SECRET" in unset.stderr


def test_a_public_key_verifies_tokens_of_its_private_key(tmp_path: Any) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(pem)
    settings = Settings.from_environ({"ROOMS_TOKEN_PUBLIC_KEY": str(key_file)})
    with TestClient(create_app(settings)) as client:
        signed = jwt.encode({"sub": "7", "exp": int(time.time()) + 60, "rooms": ["*"]}, private, algorithm="ES256")
        with client.websocket_connect(f"/rooms/any/ws/7?token={signed}") as ws:
            assert receive(ws)["type"] == "presence"
        hmac_forged = jwt.encode({"sub": "7", "exp": int(time.time()) + 60, "rooms": ["*"]}, SECRET, algorithm="HS256")
        assert types(refusal(client, f"/rooms/any/ws/7?token={hmac_forged}")[1]) == ["token_algorithm"]


def test_settings_that_cannot_work_fail_at_start() -> None:
    with pytest.raises(ValueError, match="not both"):
        create_app(Settings(rooms_token_secret=SECRET, rooms_token_public_key="-----BEGIN PUBLIC KEY-----"))
    with pytest.raises(ValueError, match="none"):
        create_app(Settings(rooms_token_secret=SECRET, rooms_token_algorithms=("none",)))
    assert SECRET not in repr(Settings(rooms_token_secret=SECRET)) and KEY not in repr(Settings(api_keys=(KEY,)))


@pytest.mark.parametrize(
    ("pattern", "room", "expected"),
    [
        ("team-a", "team-a", True),
        ("team-a", "team-ab", False),
        ("team-*", "team-", True),
        ("team-*", "team-xyz", True),
        ("team-*", "teams", False),
        ("*", "anything", True),
        ("*-ops", "a-ops", True),
        ("a*b*c", "abc", True),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "acb", False),
        ("ab*ba", "aba", False),
        ("*.*", "x.y", True),
    ],
)
def test_room_patterns(pattern: str, room: str, expected: bool) -> None:
    assert tokens.matches(pattern, room) is expected
