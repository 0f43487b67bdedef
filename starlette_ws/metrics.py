"""Prometheus metrics: every metric object, and `GET /metrics`.

The objects live at module level, so each process registers them once however many apps it
creates. With several workers, `PROMETHEUS_MULTIPROC_DIR` (set before prometheus_client is first
imported: the server command does it) makes every worker write its values to files there, and a
scrape answered by any worker sums them all (the app's `Settings.metrics_dir`, read from the same
variable, says where to read them).

Per-message counts cost a plain addition: they are kept in a `Tally` (bound once per endpoint
class, `counts_for`) and added to their Prometheus counter when flushed, before each scrape and,
with several workers, once a second in every worker (`flushing`). An `inc()` on the counter itself
costs 0.8 us, 1.9 us in multiprocess mode (a lock and a file write), several times a message's
own cost in the echo loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from starlette.requests import Request
from starlette.responses import Response

from starlette_ws.params import Error

CONNECTIONS_OPEN = Gauge(
    "starlette_ws_connections_open",
    "WebSocket connections admitted and not yet ended, per endpoint.",
    ["endpoint"],
    multiprocess_mode="livesum",
)
HANDSHAKES_REFUSED = Counter(
    "starlette_ws_handshakes_refused",
    "Handshakes refused, per reason type (a handshake refused for two reasons counts under both).",
    ["reason"],
)
MESSAGES_RECEIVED = Counter(
    "starlette_ws_messages_received", "Data frames received from clients, per endpoint.", ["endpoint"]
)
MESSAGES_SENT = Counter("starlette_ws_messages_sent", "Messages sent to clients, per endpoint.", ["endpoint"])
CLOSES = Counter(
    "starlette_ws_closes",
    "Connections ended, per endpoint and close code: the server's code when it closed first, "
    "else the client's (1005: no code given, 1006: the connection dropped; codes outside 1000-1015: other).",
    ["endpoint", "code"],
)
CHAT_OUTBOX_BYTES = Gauge(
    "starlette_ws_chat_outbox_bytes",
    "Bytes queued in chat outboxes, waiting for slow sockets (sampled once a second).",
    multiprocess_mode="livesum",
)
CHAT_SLOW_CLIENTS = Counter(
    "starlette_ws_chat_slow_clients", "Chat clients closed with 1013 because their outbox was full."
)
PUBLISH_FAILURES = Counter(
    "starlette_ws_broadcast_publish_failures",
    "Chat broadcasts that did not certainly reach the engine, per reason: not_sent (engine down), "
    "uncertain (sent, no answer), error (a bug), too_large, busy (the sender's previous one still waits).",
    ["reason"],
)
BACKEND_OUTAGES = Counter(
    "starlette_ws_backend_outages", "Broadcast engine connections lost (one per outage).", ["backend"]
)
BACKEND_RECONNECTS = Counter(
    "starlette_ws_backend_reconnects", "Broadcast engine connections back after an outage.", ["backend"]
)
BROADCAST_DELIVERY = Histogram(
    "starlette_ws_broadcast_delivery_seconds",
    "Seconds from a chat message's publish to its own copy reaching this process's fan-out (the "
    "round trip through the engine). Copies later than 0.5 s are no longer waited for and not observed.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
)
ENGINE_UP = Gauge(
    "starlette_ws_engine_up",
    "1 when the latest engine probe found the broadcast engine and the room store answering, 0 when not "
    "(with several workers: the lowest of them).",
    multiprocess_mode="livemin",
)
ENGINE_PROBE_FAILURES = Counter(
    "starlette_ws_engine_probe_failures",
    "Engine pings that failed or got no answer within ENGINE_PROBE_SECONDS, per target (broadcast, room_store).",
    ["target"],
)
ROOM_STORE_ERRORS = Counter(
    "starlette_ws_room_store_errors",
    "Room store operations that failed, per operation "
    "(append, replay, top, renew, present, absent, members, rooms, clean).",
    ["operation"],
)
ROOM_GAPS = Counter("starlette_ws_room_gaps", "Gap messages sent to room members: entries they can no longer be given.")
ROOM_HISTORIES_LOST = Counter(
    "starlette_ws_room_histories_lost",
    "Rooms whose engine history went back below what was delivered (a failover lost entries): a new epoch began.",
)
ROOM_HOLES_FILLED = Counter(
    "starlette_ws_room_holes_filled",
    "Entries a live room member had not received in order and was sent from the store (a hole filled).",
)
ROOM_POOL_WAITS = Counter(
    "starlette_ws_room_pool_waits",
    "Room store calls that found every pooled engine connection busy and waited for one.",
)
ROOM_CONNECTS_REFUSED = Counter(
    "starlette_ws_room_connects_refused",
    "Room connections refused before they joined, per reason (rate, address, client_id, store).",
    ["reason"],
)
ROOM_TOKENS_EXPIRED = Counter(
    "starlette_ws_room_tokens_expired",
    "Room connections closed with 4001 at their token's exp.",
)
API_REQUESTS = Counter(
    "starlette_ws_api_requests",
    "Server API requests, per operation and HTTP status.",
    ["operation", "status"],
)


class Inc(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class Level(Inc, Protocol):
    def dec(self, amount: float = 1) -> None: ...


class Tally:
    """A count kept as a number until `flush` adds it to its Prometheus counter."""

    __slots__ = ("counter", "pending")

    def __init__(self, counter: Inc) -> None:
        self.counter = counter
        self.pending: float = 0
        TALLIES.append(self)

    def inc(self, amount: float = 1) -> None:
        self.pending += amount

    def flush(self) -> None:
        if self.pending:
            pending, self.pending = self.pending, 0
            self.counter.inc(pending)


TALLIES: list[Tally] = []


def flush() -> None:
    for tally in TALLIES:
        tally.flush()


async def flushing(interval: float = 1.0) -> None:
    """With several workers a scrape reads every worker's files: each worker writes its tallies
    there once a second (a worker that dies loses at most that second's counts)."""
    while True:
        await asyncio.sleep(interval)
        flush()


class Counts:
    """One endpoint's counters, labelled once."""

    def __init__(self, endpoint: str, open: Level, received: Inc, sent: Inc) -> None:
        self.endpoint = endpoint
        self.open = open
        self.received = received
        self.sent = sent

    def closed(self, code: int) -> None:
        CLOSES.labels(endpoint=self.endpoint, code=code_label(code)).inc()


class Nothing:
    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass


class NoCounts(Counts):
    """What a connection counts with when the METRICS setting is off: nothing."""

    def __init__(self) -> None:
        super().__init__("", Nothing(), Nothing(), Nothing())

    def closed(self, code: int) -> None:
        pass


NO_COUNTS = NoCounts()


def code_label(code: int) -> str:
    """The protocol's own codes as they are; a client's private codes (3000-4999) would make a
    series each, so they count together."""
    return str(code) if 1000 <= code <= 1015 else "other"


def endpoint_name(cls: type) -> str:
    """`EchoEndpoint` -> `echo`."""
    return cls.__name__.removesuffix("Endpoint").lower()


@functools.cache
def counts_for(endpoint: str) -> Counts:
    return Counts(
        endpoint,
        CONNECTIONS_OPEN.labels(endpoint=endpoint),
        Tally(MESSAGES_RECEIVED.labels(endpoint=endpoint)),
        Tally(MESSAGES_SENT.labels(endpoint=endpoint)),
    )


def refused(errors: Iterable[Error]) -> None:
    for reason in {error["type"] for error in errors}:
        HANDSHAKES_REFUSED.labels(reason=reason).inc()


def check_metrics_dir(directory: Path | None) -> None:
    """A clear error when the app is told of a multiprocess directory prometheus_client does not
    write to: its mode is chosen from the environment when it is first imported."""
    if directory is not None and not getattr(values.ValueClass, "_multiprocess", False):
        raise ValueError(
            f"metrics_dir is {str(directory)!r} but prometheus_client is not in multiprocess mode:"
            " set PROMETHEUS_MULTIPROC_DIR in the environment before the process starts"
        )


async def scrape(request: Request) -> Response:
    """`GET /metrics`: this process's metrics, or with several workers every worker's, summed.

    On the event loop, as the tallies are counted there: a flush in another thread could lose counts."""
    flush()
    directory: Path | None = request.app.state.settings.metrics_dir
    if directory is None:
        registry = REGISTRY
    else:
        forget_dead(str(directory))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, str(directory))  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def forget_dead(path: str) -> None:
    """Drop the live gauges of workers that are gone.

    uvicorn replaces a worker that dies but has no hook to tell us, so a worker killed with open
    connections would otherwise count them for as long as the directory lives.
    """
    for pid in dead_pids(os.listdir(path)):
        with contextlib.suppress(FileNotFoundError):  # a scrape at the same moment removed it first
            multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def dead_pids(names: Sequence[str]) -> set[int]:
    pids = {int(match[1]) for name in names if (match := LIVE_FILE.fullmatch(name))}
    return {pid for pid in pids if not alive(pid)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: not ours, but not gone either
        return True
    return True
