"""The one place a BROADCAST_URL becomes an engine: its backend and its store, by scheme."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from starlette_ws.backends.cluster import ClusterBackend
from starlette_ws.backends.memory import MemoryBackend
from starlette_ws.backends.postgres import PostgresBackend
from starlette_ws.backends.redis import RedisBackend
from starlette_ws.engines import SCHEMES, Engine
from starlette_ws.history import room_channel, unpack
from starlette_ws.history.cluster import ClusterStore
from starlette_ws.history.memory import MemoryStore
from starlette_ws.history.postgres import PostgresStore
from starlette_ws.history.redis import RedisStore


@pytest.mark.parametrize(
    ("url", "backend", "store"),
    [
        ("memory://", MemoryBackend, MemoryStore),
        ("redis://127.0.0.1:1/0", RedisBackend, RedisStore),
        ("rediss://127.0.0.1:1/0", RedisBackend, RedisStore),
        ("postgres://u@127.0.0.1:1/d", PostgresBackend, PostgresStore),
        ("postgresql://u@127.0.0.1:1/d", PostgresBackend, PostgresStore),
        ("redis+cluster://127.0.0.1:1,127.0.0.1:2", ClusterBackend, ClusterStore),
        ("rediss+cluster://u:p@127.0.0.1:1", ClusterBackend, ClusterStore),
    ],
)
def test_each_scheme_names_its_backend_and_store(url: str, backend: type, store: type) -> None:
    engine = Engine(url)  # nothing connects until asked to
    assert isinstance(engine.backend(), backend)
    made: Any = engine.store("p:", 5, 1.0)
    assert (made.prefix, made.history, made.seconds) == ("p:", 5, 1.0)
    assert isinstance(made, store)
    assert engine.in_process is (url == "memory://")


@pytest.mark.parametrize("url", ["ftp://x", "redis-cluster://x", "", "memory"])
def test_an_unknown_scheme_is_refused_with_the_known_ones(url: str) -> None:
    with pytest.raises(ValueError, match="unknown scheme") as refused:
        Engine(url)
    assert all(f"{scheme}://" in str(refused.value) for scheme in SCHEMES)


@pytest.mark.anyio
async def test_a_memory_engine_s_store_publishes_to_its_own_backends_only() -> None:
    engine, other = Engine("memory://"), Engine("memory://")
    store = engine.store("p:", 5, 60.0)
    ours, theirs = engine.backend(), other.backend()
    channel = room_channel("p:", "lobby")
    for backend in (ours, theirs):
        await backend.connect()
        await backend.subscribe(channel)
    try:
        entry = await store.append("lobby", '"text":"hi"}')
        with anyio.fail_after(2):
            event = await ours.next_published()
        position, payload = unpack(event.message)
        assert position is not None
        assert (event.channel, position.offset, position.epoch) == (channel, entry.offset, entry.epoch)
        assert json.loads(payload) == {"offset": 1, "epoch": entry.epoch, "text": "hi"}
        with anyio.move_on_after(0.2) as waited:
            await theirs.next_published()
        assert waited.cancelled_caught  # another engine (another app) hears nothing of it
    finally:
        for backend in (ours, theirs):
            await backend.disconnect()
