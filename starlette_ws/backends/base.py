from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Event:
    channel: str
    message: str


class BackendError(Exception):
    """A publish that the broadcast engine did not take (outage, payload too large, ...)."""


class MessageTooLarge(BackendError):
    """The engine cannot carry a message this long (PostgreSQL NOTIFY: under 8,000 bytes)."""


class Backend(Protocol):
    """The transport between processes. One instance per process, owned by the hub.

    `next_published` blocks until an event arrives on a subscribed channel; a backend that
    loses its server reconnects and re-subscribes inside it, so the caller never sees an outage.
    `publish` raises `BackendError` when the message cannot be handed to the engine.
    """

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...

    async def publish(self, channel: str, message: str) -> None: ...

    async def next_published(self) -> Event: ...
