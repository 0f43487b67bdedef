from __future__ import annotations

from urllib.parse import urlsplit

from starlette_ws.backends.base import Backend, BackendError, Event, MessageTooLarge, PublishUncertain

__all__ = ["Backend", "BackendError", "Event", "MessageTooLarge", "PublishUncertain", "backend_for_url"]


def backend_for_url(url: str) -> Backend:
    """Pick the backend by the URL's scheme: memory://, redis://, rediss://, postgres(ql)://."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from starlette_ws.backends.memory import MemoryBackend

        return MemoryBackend(url)
    if scheme in ("redis", "rediss"):
        from starlette_ws.backends.redis import RedisBackend

        return RedisBackend(url)
    if scheme in ("postgres", "postgresql"):
        from starlette_ws.backends.postgres import PostgresBackend

        return PostgresBackend(url)
    raise ValueError(f"BROADCAST_URL: unknown scheme {scheme!r} (memory://, redis://, postgres://)")
