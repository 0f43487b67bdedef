from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

# The longest channel name every engine takes, in UTF-8 bytes: PostgreSQL's, whose channels are
# identifiers (NAMEDATALEN - 1). LISTEN would truncate a longer name silently while pg_notify()
# refuses it, so the two would never meet.
MAX_CHANNEL_BYTES = 63


def address_of(url: str, default_port: int) -> str:
    """`host:port` of an engine's URL, as log lines and errors name it (never the password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or default_port}"


@dataclass(frozen=True, slots=True)
class Event:
    channel: str
    message: str


class BackendError(Exception):
    """A publish that the broadcast engine did not take (outage, payload too large, ...)."""


class PublishUncertain(BackendError):
    """The message went out but no answer came back (a timeout, a connection lost while waiting):
    the engine may or may not have taken it, and may still deliver it."""


class MessageTooLarge(BackendError):
    """The engine cannot carry a message this long (PostgreSQL NOTIFY: under 8,000 bytes)."""


class Backend(Protocol):
    """The transport between processes. One instance per process, owned by the hub.

    `next_published` blocks until an event arrives on a subscribed channel; a backend that
    loses its server reconnects and re-subscribes inside it, so the caller never sees an outage.
    `publish` raises `BackendError` when the message was not handed to the engine, and its
    subclass `PublishUncertain` when it was sent but never confirmed. `listening` is true while
    this process's subscription is up, so that a message published now comes back to it. `ping`
    makes one round trip to the engine, raising `BackendError` when no answer comes (a stalled
    engine keeps its sockets open, so `listening` stays true). `resubscribed` counts the times the
    subscription was made again after it was lost: what was published meanwhile never arrived.
    `in_process` is true for an engine in this process, whose `publish` never suspends: the hub
    runs it inline rather than in a task of its own.
    """

    in_process: bool

    @property
    def listening(self) -> bool: ...

    @property
    def resubscribed(self) -> int: ...

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...

    async def publish(self, channel: str, message: str) -> None: ...

    async def next_published(self) -> Event: ...

    async def ping(self) -> None: ...
