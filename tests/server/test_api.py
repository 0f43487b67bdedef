"""The server API under real uvicorn servers: `docs/api.md`'s curl examples, run as written and
answered as shown, and the API across two processes on Redis and PostgreSQL (a message, a reset
and a removal asked of one process reach the members connected to the other)."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from harness.servers import UvicornServer
from harness.services import PostgresServer, RedisServer
from tests.clients import closed_with, next_json, until, ws_connect
from tests.services import start_redis

KEY = "doc-example-key"
DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ANY = "…"
pytestmark = pytest.mark.contract("B30")


def examples(text: str) -> list[tuple[str, str, str]]:
    """Each `sh` block followed by its answer block: (command, answer language, answer)."""
    blocks = re.findall(r"```(\w+)\n(.*?)```", text, flags=re.DOTALL)
    return [
        (command, language, answer)
        for (kind, command), (language, answer) in itertools.pairwise(blocks)
        if kind == "sh" and language in ("json", "text")
    ]


def like(expected: Any, got: Any) -> bool:
    """Whether `got` is `expected`, where `…` stands for any value."""
    if expected == ANY:
        return True
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and expected.keys() == got.keys()
            and all(like(v, got[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return isinstance(got, list) and len(expected) == len(got) and all(map(like, expected, got))
    return bool(expected == got and type(expected) is type(got))


def test_every_curl_example_in_the_api_doc_answers_as_shown() -> None:
    found = examples(DOC.read_text())
    assert len(found) >= 8
    with (
        UvicornServer(env={"API_KEYS": f"other-key, {KEY}"}) as server,
        ws_connect(server, "/rooms/team-a/ws/7") as member,
    ):
        until(member, "join", client_id=7)
        env = {**os.environ, "SERVER": server.http_url, "API_KEY": KEY}
        for command, language, answer in found:
            done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=10)
            assert done.returncode == 0, (command, done.stderr)
            if language == "json":
                assert like(json.loads(answer), json.loads(done.stdout)), (command, done.stdout)
            else:
                assert done.stdout.strip() == answer.strip(), (command, done.stdout)
        kinds = []
        with pytest.raises(ConnectionClosed) as closed:  # what the member saw of it all
            while True:
                kinds.append(next_json(member)["type"])
        assert kinds == ["message", "gap"]
        assert closed_with(closed.value) == (4003, "Removed from room 'team-a' by the server")


def two_processes(url: str) -> Iterator[tuple[UvicornServer, UvicornServer]]:
    env = {"BROADCAST_URL": url, "CHANNEL_PREFIX": f"api{time.monotonic_ns()}:", "API_KEYS": KEY}
    with UvicornServer(env=env) as a, UvicornServer(env=env) as b:
        yield a, b


@pytest.fixture(params=["redis", "postgres"])
def pair(
    request: pytest.FixtureRequest, redis_server: RedisServer, postgres_server: PostgresServer
) -> Iterator[tuple[UvicornServer, UvicornServer]]:
    yield from two_processes(redis_server.url if request.param == "redis" else postgres_server.url)


def call(server: UvicornServer, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    request = urllib.request.Request(server.http_url + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
        return response.status, json.loads(text) if text else None


def test_what_one_process_is_asked_reaches_the_members_of_the_other(pair: tuple[UvicornServer, UvicornServer]) -> None:
    a, b = pair
    with ws_connect(a, "/rooms/ops/ws/7") as here, ws_connect(a, "/rooms/ops/ws/8") as other:
        until(here, "presence")
        until(other, "presence")
        with ws_connect(b, "/rooms/ops/ws/7") as there:
            until(there, "presence")
            status, posted = call(b, "POST", "/api/rooms/ops/messages", {"text": "from b's api"})
            assert status == 201
            for ws in (here, there, other):
                entry = until(ws, "message")
                assert (entry["offset"], entry["epoch"], entry["text"], entry["client_id"]) == (
                    posted["offset"],
                    posted["epoch"],
                    "from b's api",
                    None,
                )
            assert call(a, "GET", "/api/rooms/ops/presence") == (200, {"room": "ops", "members": [7, 8]})
            assert call(b, "GET", "/api/rooms")[1]["rooms"] == [{"room": "ops", "members": 2}]
            history = call(a, "GET", f"/api/rooms/ops/history?since={posted['offset'] - 1}")[1]
            assert [entry["text"] for entry in history["entries"]] == ["from b's api"]

            assert call(a, "DELETE", "/api/rooms/ops/history") == (204, None)
            gap = until(there, "gap")  # told at once, in the other process too
            assert gap["missed"] is None and gap["epoch"] != posted["epoch"]

            assert call(b, "DELETE", "/api/rooms/ops/members/7") == (204, None)
            for ws in (here, there):  # both of 7's connections, one in each process
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        next_json(ws)
                assert closed_with(closed.value) == (4003, "Removed from room 'ops' by the server")
        assert until(other, "leave", client_id=7)["room"] == "ops"  # 8 is still there, told 7 left


def test_an_engine_that_is_down_is_a_503_that_says_so() -> None:
    redis = start_redis()
    try:
        env = {"BROADCAST_URL": redis.url, "API_KEYS": KEY, "ENGINE_PROBE_SECONDS": "0.5"}
        with UvicornServer(env=env) as server:
            assert call(server, "POST", "/api/rooms/ops/messages", {"text": "up"})[0] == 201
            redis.stop()
            with pytest.raises(urllib.error.HTTPError) as refused:
                call(server, "POST", "/api/rooms/ops/messages", {"text": "down"})
            answer = refused.value
            assert answer.code == 503 and answer.headers["Retry-After"] == "1"
            assert [error["type"] for error in json.load(answer)["detail"]] == ["unavailable"]
            assert "Traceback" not in server.log()
    finally:
        redis.close()
