"""GET /metrics under a real uvicorn with two workers: one scrape sums both.

Which worker holds which connection is read from the kernel (psutil), so the test knows that
both workers had traffic and that neither one's figures alone would add up to the total.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import ClientConnection

from harness.rawws import StalledClient
from harness.servers import UvicornServer
from tests.clients import Reader, ws_connect

MOST_CONNECTIONS = 40
MESSAGES = 2  # per connection
OPEN = "starlette_ws_connections_open"
RECEIVED = "starlette_ws_messages_received_total"
FLUSHED = 3.0  # seconds: each worker writes its message counts to the shared files once a second

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: UvicornServer) -> Samples:
    with urllib.request.urlopen(server.http_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def echo(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset({"endpoint": "echo", **labels}.items())), 0.0)


def wait_for(server: UvicornServer, ready: Callable[[Samples], bool], timeout: float = 10.0) -> Samples:
    deadline = time.monotonic() + timeout
    while not ready(samples := scrape(server)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return samples


def connections_by_worker(server: UvicornServer) -> dict[int, int]:
    """Established connections on the server's port, per worker (a child that listens on it)."""
    assert server.process is not None
    counts = {}
    for child in psutil.Process(server.process.pid).children():
        ours = [c for c in child.net_connections(kind="tcp") if c.laddr.port == server.port]
        if any(c.status == psutil.CONN_LISTEN for c in ours):
            counts[child.pid] = sum(1 for c in ours if c.status == psutil.CONN_ESTABLISHED)
    return counts


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[UvicornServer]:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with UvicornServer(env=env, args=["--workers", "2"]) as server:
        yield server


def spread(server: UvicornServer, stack: contextlib.ExitStack) -> list[ClientConnection]:
    """Echo connections, opened until both workers hold at least two (or MOST_CONNECTIONS)."""
    clients: list[ClientConnection] = []
    while len(clients) < MOST_CONNECTIONS:
        ws = stack.enter_context(ws_connect(server, "/ws"))
        for i in range(MESSAGES):
            ws.send(f"{len(clients)}-{i}")
            assert ws.recv(timeout=5) == f"Message text was: {len(clients)}-{i}"
        clients.append(ws)
        by_worker = connections_by_worker(server)
        if len(by_worker) == 2 and min(by_worker.values()) >= 2:
            break
    return clients


def test_one_scrape_sums_both_workers(two_workers: UvicornServer) -> None:
    with contextlib.ExitStack() as stack:
        clients = spread(two_workers, stack)
        by_worker = connections_by_worker(two_workers)
        assert sorted(by_worker.values())[0] >= 2, f"the kernel gave one worker everything: {by_worker}"
        total = len(clients)
        during = wait_for(two_workers, lambda s: echo(s, RECEIVED) == total * MESSAGES, timeout=FLUSHED)
    assert sum(by_worker.values()) == total
    assert echo(during, OPEN) == total
    assert echo(during, RECEIVED) == total * MESSAGES
    assert echo(during, "starlette_ws_messages_sent_total") == total * MESSAGES
    after = wait_for(two_workers, lambda s: echo(s, OPEN) == 0)
    assert echo(after, OPEN) == 0
    assert echo(after, "starlette_ws_closes_total", code="1000") == total


def test_a_killed_worker_stops_counting_as_open(two_workers: UvicornServer) -> None:
    """uvicorn replaces a worker that dies; its open connections must leave the gauge with it."""
    with contextlib.ExitStack() as stack:
        clients = spread(two_workers, stack)
        by_worker = connections_by_worker(two_workers)
        flushed = wait_for(two_workers, lambda s: echo(s, RECEIVED) == len(clients) * MESSAGES, timeout=FLUSHED)
        assert echo(flushed, OPEN) == len(clients)
        victim, survivor = sorted(by_worker, key=by_worker.__getitem__, reverse=True)
        os.kill(victim, signal.SIGKILL)
        after = wait_for(two_workers, lambda s: echo(s, OPEN) == by_worker[survivor])
        assert echo(after, OPEN) == by_worker[survivor]
        # the dead worker's counts stay: a counter never goes down while the server runs
        assert echo(after, RECEIVED) == len(clients) * MESSAGES


OUTBOX: tuple[str, frozenset[tuple[str, str]]] = ("starlette_ws_chat_outbox_bytes", frozenset())
BIG = "x" * 60_000
BIG_COUNT = 150  # 9 MB: past the loopback buffers (4 MB send side)


def test_bytes_waiting_for_a_stalled_chat_client_show_in_the_outbox_gauge() -> None:
    """A client that stops reading leaves megabytes in its outbox (the bound raised so that it
    is not cut off); the gauge shows them within a second, and 0 again once it is gone."""
    env = {"SEND_QUEUE_BYTES": str(64 * 2**20), "CHAT_RATE_PER_SECOND": "1000", "CHAT_RATE_BURST": "1000"}
    with UvicornServer(env=env) as server:
        stalled = StalledClient(server, "/ws/500")
        try:
            with ws_connect(server, "/ws/501") as sender:
                Reader(sender)
                for i in range(BIG_COUNT):
                    sender.send(f"{i:04d}{BIG}")
                queued = wait_for(server, lambda s: s.get(OUTBOX, 0) > 2**20)
        finally:
            stalled.reset()
        empty = wait_for(server, lambda s: s.get(OUTBOX, 0) == 0)
    assert queued[OUTBOX] > 2**20
    assert empty[OUTBOX] == 0


def test_metrics_off_answers_404() -> None:
    with UvicornServer(env={"METRICS": "false"}) as server:
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(server)
        with refused.value:
            assert refused.value.code == 404
