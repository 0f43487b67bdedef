"""Engines by URL: what a `BROADCAST_URL` gives the app, chosen here and nowhere else.

An engine provides the chat's broadcast backend (`backends`) and the rooms' store (`history`:
entries, positions, presence). `memory://` is one process's engine: its backends and its store
share one `MemoryBus`, so the hubs of every event loop in the process hear each other. The
engine modules are imported on first use, so that Redis and PostgreSQL stay optional extras.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette_ws.backends.base import Backend
from starlette_ws.backends.memory import MemoryBackend, MemoryBus
from starlette_ws.history.base import RoomStore

# Each scheme a BROADCAST_URL may have, and the engine it names.
SCHEMES = {
    "memory": "memory",
    "redis": "redis",
    "rediss": "redis",
    "redis+cluster": "cluster",
    "rediss+cluster": "cluster",
    "postgres": "postgres",
    "postgresql": "postgres",
}


class Engine:
    """The engine at `url`: it makes the backends and stores that talk to it."""

    def __init__(self, url: str) -> None:
        scheme = urlsplit(url).scheme
        kind = SCHEMES.get(scheme)
        if kind is None:
            known = ", ".join(f"{name}://" for name in SCHEMES)
            raise ValueError(f"BROADCAST_URL: unknown scheme {scheme!r} (one of {known})")
        self.url = url
        self.scheme = scheme
        self.kind = kind
        self.bus = MemoryBus() if kind == "memory" else None

    @property
    def in_process(self) -> bool:
        """Whether it is this process's own (memory://): nothing outside it can fail or be reached."""
        return self.bus is not None

    def backend(self) -> Backend:
        """A new broadcast backend (one per hub: it holds that hub's subscriptions)."""
        if self.bus is not None:
            return MemoryBackend(self.url, self.bus)
        if self.kind == "redis":
            from starlette_ws.backends.redis import RedisBackend

            return RedisBackend(self.url)
        if self.kind == "cluster":
            from starlette_ws.backends.cluster import ClusterBackend

            return ClusterBackend(self.url)
        from starlette_ws.backends.postgres import PostgresBackend

        return PostgresBackend(self.url)

    def store(self, prefix: str, history: int, seconds: float) -> RoomStore:
        """A new room store: `history` entries younger than `seconds` per room, under `prefix`."""
        if self.bus is not None:
            from starlette_ws.history.memory import MemoryStore

            return MemoryStore(self.url, prefix, history, seconds, self.bus)
        if self.kind == "redis":
            from starlette_ws.history.redis import RedisStore

            return RedisStore(self.url, prefix, history, seconds)
        if self.kind == "cluster":
            from starlette_ws.history.cluster import ClusterStore

            return ClusterStore(self.url, prefix, history, seconds)
        from starlette_ws.history.postgres import PostgresStore

        return PostgresStore(self.url, prefix, history, seconds)
