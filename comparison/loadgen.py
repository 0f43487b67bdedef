"""Load generator for the comparison study. It runs in its own processes, never in the server's.

Every scenario is a plain function that takes the server's base URL (``ws://127.0.0.1:PORT``)
and returns a flat dict of figures:

- ``echo_round_trips``: send, await the reply, repeat; 1 or many concurrent clients.
- ``items_sessions``: connect to the items socket, one message, two replies, close; N workers.
- ``broadcast_fanout``: K chat receivers spread over several processes, one sender (paced, or
  unpaced: back to back), optionally clients that never read; delivery latency of every
  broadcast message (timestamps from ``time.time_ns``) and the server's CPU per delivery.
- ``rss_per_connection``: the server's RSS growth per idle connection on ``/ws``.

Every loop is bounded in count and in time. Command line, one JSON object on stdout:
``python -m comparison.loadgen echo ws://127.0.0.1:8000 --clients 50 --duration 3``
"""

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import math
import multiprocessing
import queue
import resource
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psutil
from websockets.asyncio.client import ClientConnection, connect

from harness.rawws import OP_TEXT, RawWebSocket, StalledClient, open_raw, text_frame

Figures = dict[str, float]
T = TypeVar("T")
C = TypeVar("C")

OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
GRACE = 10.0  # extra seconds any wait may take beyond its planned length
CONNECT_CONCURRENCY = 64  # handshakes in flight per process (keeps the accept backlog sane)
ITEMS_PATH = "/items/foo/ws?token=some-key-token"
SENDER_ID = 1
MORE_SENDERS = 900  # and up: the second sender's client id, the third's, ...
STALLED_ID = 2  # and up: the chat clients that never read
WARM_UP = 0.5  # seconds of unmeasured load before echo and items measure
WARM_MESSAGES = 3  # unmeasured broadcasts before the measured ones
WARM_PAUSE = 0.2  # unpaced: seconds between the warm-up broadcasts and the measured burst
FIRST_RECEIVER_ID = 1000
SLOWEST_FANOUT = 10_000  # deliveries/s the broadcast wait allows for, beyond GRACE
HOLD_LIMIT = 300.0  # a receiver process never lives longer than this
QUIET_WINDOW = 0.3  # seconds; see quiet()
QUIET_SHARE = 0.05
QUIET_LIMIT = 60.0
ARRIVAL_LIMIT = 30.0  # seconds a room's sender waits to hear its own arrival; see own_arrival()


# -- helpers ---------------------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when it is installed (as uvicorn[standard] installs it)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def open_ws(url: str, compression: str | None = None) -> connect:
    """A client as alike as possible for every server: no proxy, no compression, no pings.

    ``compression="deflate"`` offers permessage-deflate, as browsers do (idle_bench.py).
    """
    return connect(
        url,
        proxy=None,
        compression=compression,
        ping_interval=None,
        open_timeout=OPEN_TIMEOUT,
        close_timeout=CLOSE_TIMEOUT,
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values; NaN when there are none."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(values)))
    return values[min(rank, len(values)) - 1]


def raise_nofile(wanted: int) -> None:
    """Raise this process's open-file limit towards ``wanted`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def tree_rss(pid: int) -> int:
    """RSS of a process and all its children (uvicorn workers), in bytes."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def tree_cpu(pid: int) -> float:
    """CPU seconds so far of a process and its children; NaN without a PID.

    Linux's scheduler statistics count every thread's time on a CPU to the nanosecond; the user
    and system times `psutil` reads elsewhere move in 10 ms ticks, too coarse for one burst.
    """
    if not pid:
        return math.nan
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            total += scheduled_seconds(proc)
    return total


def scheduled_seconds(proc: psutil.Process) -> float:
    tasks = Path(f"/proc/{proc.pid}/task")
    if not tasks.is_dir():
        times = proc.cpu_times()
        return float(times.user + times.system)
    return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks.iterdir()) / 1e9


def split(total: int, parts: int) -> list[int]:
    """``total`` items dealt into ``parts`` near-equal shares."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def open_many(
    urls: Iterable[str],
    opener: Callable[[str], Awaitable[C]] = open_ws,  # type: ignore[assignment]
) -> tuple[list[C], int]:
    """Open one connection per URL, a bounded number at a time; returns (open, failed)."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(url: str) -> C | None:
        async with gate:
            try:
                async with asyncio.timeout(OPEN_TIMEOUT):
                    return await opener(url)
            except Exception:
                return None

    opened = await asyncio.gather(*(one(url) for url in urls))
    good = [ws for ws in opened if ws is not None]
    return good, len(opened) - len(good)


def abort_all(connections: Iterable[ClientConnection]) -> None:
    """Drop connections without a closing handshake (the scenario is over)."""
    for ws in connections:
        ws.transport.abort()


# -- (a) echo round trips --------------------------------------------------------------------


async def echo_client(ws: RawWebSocket, deadline: float) -> tuple[list[float], int]:
    frame = text_frame("ping")
    expected = (OP_TEXT, b"Message text was: ping")
    latencies: list[float] = []
    errors = 0
    try:
        async with asyncio.timeout(deadline - time.perf_counter() + GRACE):
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                ws.send(frame)
                reply = await ws.recv()
                latencies.append(time.perf_counter() - started)
                errors += reply != expected
    except Exception:
        errors += 1
    return latencies, errors


async def echo_async(base_url: str, clients: int, duration: float, server_pid: int) -> Figures:
    async with asyncio.timeout(OPEN_TIMEOUT):
        opened = await asyncio.gather(*(open_raw(f"{base_url}/ws") for _ in range(clients)), return_exceptions=True)
    connections = [ws for ws in opened if isinstance(ws, RawWebSocket)]
    warm_until = time.perf_counter() + WARM_UP
    await asyncio.gather(*(echo_client(ws, warm_until) for ws in connections))
    cpu_before = tree_cpu(server_pid)
    started = time.perf_counter()
    deadline = started + duration
    results = await asyncio.gather(*(echo_client(ws, deadline) for ws in connections))
    elapsed = time.perf_counter() - started
    cpu = tree_cpu(server_pid) - cpu_before
    await asyncio.gather(*(ws.close() for ws in connections))
    latencies = sorted(value for values, _ in results for value in values)
    return {
        "round_trips_per_s": len(latencies) / elapsed,
        "p50_us": percentile(latencies, 0.50) * 1e6,
        "p99_us": percentile(latencies, 0.99) * 1e6,
        "server_cpu_us_per_op": cpu / max(len(latencies), 1) * 1e6,
        "errors": float(clients - len(connections) + sum(errors for _, errors in results)),
    }


def echo_round_trips(base_url: str, clients: int = 1, duration: float = 3.0, server_pid: int = 0) -> Figures:
    """Round trips per second on ``/ws`` with ``clients`` concurrent clients.

    Uses the raw-frame client (see harness/rawws.py) so that the server, not the load
    generator, is what saturates. With ``server_pid``, also the server's CPU per round trip.
    """
    return run(echo_async(base_url, clients, duration, server_pid))


# -- (b) items sessions ----------------------------------------------------------------------


async def items_worker(url: str, deadline: float) -> tuple[int, int]:
    sessions = errors = 0
    while time.perf_counter() < deadline:
        try:
            async with open_ws(url) as ws:
                await ws.send("hello")
                first = await ws.recv()
                second = await ws.recv()
            ok = str(first).startswith("Session cookie or query token value is: ")
            ok = ok and str(second) == "Message text was: hello, for item ID: foo"
            sessions += ok
            errors += not ok
        except Exception:
            errors += 1
            await asyncio.sleep(0.01)
    return sessions, errors


async def items_async(base_url: str, workers: int, duration: float, server_pid: int) -> Figures:
    url = base_url + ITEMS_PATH
    async with asyncio.timeout(WARM_UP + GRACE):
        warm_until = time.perf_counter() + WARM_UP
        await asyncio.gather(*(items_worker(url, warm_until) for _ in range(workers)))
    cpu_before = tree_cpu(server_pid)
    started = time.perf_counter()
    deadline = started + duration
    async with asyncio.timeout(duration + GRACE):
        results = await asyncio.gather(*(items_worker(url, deadline) for _ in range(workers)))
    elapsed = time.perf_counter() - started
    cpu = tree_cpu(server_pid) - cpu_before
    sessions = sum(ok for ok, _ in results)
    return {
        "sessions_per_s": sessions / elapsed,
        "server_cpu_us_per_op": cpu / max(sessions, 1) * 1e6,
        "errors": float(sum(bad for _, bad in results)),
    }


def items_sessions(base_url: str, workers: int = 20, duration: float = 3.0, server_pid: int = 0) -> Figures:
    """Whole sessions per second on the items socket (connect, 1 message, 2 replies, close)."""
    return run(items_async(base_url, workers, duration, server_pid))


# -- (c) broadcast fan-out -------------------------------------------------------------------


def chat_path(client_id: int, room: str | None) -> str:
    """The tutorial chat's socket, or a room's (its messages are JSON entries)."""
    return f"/ws/{client_id}" if room is None else f"/rooms/{room}/ws/{client_id}"


def sender_ids(senders: int) -> list[int]:
    """The client ids of ``senders`` senders."""
    return [SENDER_ID, *range(MORE_SENDERS, MORE_SENDERS + senders - 1)]


@functools.cache
def sender_marks(room: str | None, senders: int) -> tuple[bytes, ...]:
    """What starts a sender's line in the chat, or comes just before its text in a room's entry."""
    if room is None:
        return tuple(f"Client #{client_id} says: ".encode() for client_id in sender_ids(senders))
    # in a room, only messages have a text
    return tuple(f'"client_id":{client_id},"text":"'.encode() for client_id in sender_ids(senders))


def sender_line(payload: bytes, room: str | None, senders: int = 1) -> bytes | None:
    """A sender's line in a broadcast frame; None for anything else (joins, presence, other clients).

    A room's entries are JSON objects whose members come in one order (``rooms.RoomEndpoint.append``):
    ``{"offset":7,"epoch":"…","type":"message","room":"…","client_id":1,"text":"…","time":…}``.
    """
    marks = sender_marks(room, senders)
    if room is None:
        return payload.partition(b" says: ")[2] if payload.startswith(marks) else None
    for mark in marks:
        start = payload.find(mark)
        if start >= 0:
            start += len(mark)
            return payload[start : payload.index(b'"', start)]
    return None


async def receive_broadcasts(
    ws: RawWebSocket,
    expected: int,
    latencies: list[int],
    last: list[int],
    room: str | None,
    since_ns: int = 0,
    senders: int = 1,
    slowest: dict[int, int] | None = None,
) -> None:
    """Latency of every measured broadcast from the senders, until ``expected`` (of each) arrived;
    ``slowest``: by send stamp, the latest arrival (the last member's latency).

    The sender's lines are ``{sequence} {time_ns}``; negative sequences are the warm-up. Lines
    stamped before ``since_ns`` are an earlier run's, which a room sends a newcomer first (its
    recent messages): not counted.
    """
    seen = 0
    while seen < (expected + WARM_MESSAGES) * senders:
        opcode, payload = await ws.recv()
        line = sender_line(payload, room, senders) if opcode == OP_TEXT else None
        if line is not None:
            now = time.time_ns()
            sequence, stamp = line.split(b" ")
            if int(stamp) < since_ns:
                continue
            seen += 1
            if int(sequence) >= 0:
                latency = now - int(stamp)
                latencies.append(latency)
                last[0] = max(last[0], now)
                if slowest is not None and latency > slowest.get(int(stamp), 0):
                    slowest[int(stamp)] = latency


@dataclasses.dataclass(frozen=True)
class Receivers:
    """One receiver process's share: its client ids, and what each of them is to receive."""

    base_url: str
    ids: range
    expected: int  # lines of each sender
    room: str | None
    senders: int = 1


async def receivers_async(share: Receivers, queues: tuple[Any, Any], events: tuple[Event, Event]) -> None:
    """Receive until every broadcast arrived or ``finish`` is set, report, hold until ``release``.

    The receivers are raw clients (see harness/rawws.py): the ``websockets`` client would cost the
    load generator's CPU more per message than the servers spend. Connections stay open until
    the parent has read the server's CPU time, so that the departures (and the reference chat's
    "left the chat" storm) are not counted.
    """
    ready, results = queues
    finish, release = events
    base_url, expected, room, senders = share.base_url, share.expected, share.room, share.senders
    since_ns = time.time_ns()
    connections, failed = await open_many([base_url + chat_path(i, room) for i in share.ids], open_raw)
    ready.put((len(connections), failed))
    latencies: list[int] = []
    slowest: dict[int, int] = {}
    last = [0]
    tasks = [
        asyncio.create_task(receive_broadcasts(ws, expected, latencies, last, room, since_ns, senders, slowest))
        for ws in connections
    ]
    deadline = time.monotonic() + HOLD_LIMIT
    while not finish.is_set() and time.monotonic() < deadline:
        if all(task.done() for task in tasks):
            break
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    results.put({"latencies": latencies, "last_ns": last[0], "open": len(connections), "slowest": slowest})
    remaining = max(0.0, deadline - time.monotonic())
    await asyncio.get_running_loop().run_in_executor(None, release.wait, remaining)
    for ws in connections:
        ws.abort()


def receivers_process(share: Receivers, queues: tuple[Any, Any], events: tuple[Event, Event]) -> None:
    raise_nofile(len(share.ids) + 256)
    run(receivers_async(share, queues, events))


async def drain(ws: ClientConnection) -> None:
    """Keep reading the sender's own socket so the server never waits on it."""
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def quiet(server_pid: int, limit: float = QUIET_LIMIT) -> None:
    """Wait (at most ``limit`` s) until the server's CPU stays under ``QUIET_SHARE`` of one core
    for one ``QUIET_WINDOW``: what earlier steps set off (a room's join announcements) is over."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = tree_cpu(server_pid)
        await asyncio.sleep(QUIET_WINDOW)
        if tree_cpu(server_pid) - before < QUIET_SHARE * QUIET_WINDOW:
            return


async def own_arrival(ws: ClientConnection, client_id: int = SENDER_ID, limit: float = ARRIVAL_LIMIT) -> None:
    """In a room, wait (at most ``limit`` s) until the sender hears its own arrival: its ``join``,
    or past the room's ``ROOM_PRESENCE_RATE`` a member list with it after the one every connection
    starts with. It came last: the receivers' joins were published before it."""
    first = True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            async for message in ws:
                entry = json.loads(message)
                kind = entry.get("type")
                if kind == "join" and entry.get("client_id") == client_id:
                    return
                if kind == "presence":
                    if not first and client_id in entry.get("members", ()):
                        return
                    first = False


async def send_lines(
    base_url: str,
    messages: int,
    rate: float | None,
    server_pid: int,
    collect: Callable[[], T],
    room: str | None = None,
    settle: bool = False,
    more_pids: Sequence[int] = (),
    senders: int = 1,
) -> tuple[int, float, T]:
    """Send chat lines, each stamped with time.time_ns: at ``rate`` per second, or back to back;
    ``senders`` clients say each line in turn, in lockstep (each sends ``messages``).

    ``rate`` None: unpaced, each send awaited (so as fast as the socket takes them) and the next
    one sent at once. ``WARM_MESSAGES`` unmeasured lines go first. The sender stays in the chat
    until ``collect`` (blocking: it waits for the receivers) has returned and the server's CPU
    time has been read: a sender that left earlier would have its last lines dropped, and its
    departure counted. Returns the send time of the first measured line, the server's CPU seconds
    from just before it to then, and what ``collect`` returned. ``settle``: the burst waits for
    the server to be ``quiet`` first, and in a room for the sender's own arrival (``own_arrival``).
    """
    async with contextlib.AsyncExitStack() as stack:
        ids = sender_ids(senders)
        sockets = [await stack.enter_async_context(open_ws(base_url + chat_path(i, room))) for i in ids]
        if room is not None and settle:
            await own_arrival(sockets[-1], ids[-1])  # it came last
        readers = [asyncio.create_task(drain(ws)) for ws in sockets]
        first_ns = 0
        cpu_before = math.nan
        started = time.perf_counter()
        for index, sequence in enumerate(range(-WARM_MESSAGES, messages)):
            # Unpaced, only the burst waits: until the warm-up's broadcasts are out.
            delay = started + index / rate - time.perf_counter() if rate else WARM_PAUSE * (sequence == 0)
            if delay > 0:
                await asyncio.sleep(delay)
            if sequence == 0 and settle:
                await quiet(server_pid)
            if sequence == 0:
                cpu_before = tree_cpu(server_pid) + sum(tree_cpu(pid) for pid in more_pids)
            now = time.time_ns()
            first_ns = first_ns or (now if sequence == 0 else 0)
            for ws in sockets:
                await ws.send(f"{sequence} {now}")
        collected = await asyncio.get_running_loop().run_in_executor(None, collect)
        cpu = tree_cpu(server_pid) + sum(tree_cpu(pid) for pid in more_pids) - cpu_before
        for reader in readers:
            reader.cancel()
        abort_all(sockets)
    return first_ns, cpu, collected


def collect_reports(results: Any, count: int, finish: Event, grace: float) -> list[dict[str, Any]]:
    """The receiver processes' reports; stragglers get ``grace`` s to finish, then report what they have."""
    reports: list[dict[str, Any]] = []
    finish_at = time.monotonic() + grace
    while len(reports) < count:
        if time.monotonic() >= finish_at:
            finish.set()
        try:
            reports.append(results.get(timeout=0.5))
        except queue.Empty:
            if time.monotonic() > finish_at + GRACE:
                break
    return reports


def broadcast_fanout(
    base_url: str,
    receivers: int = 100,
    messages: int = 60,
    rate: float | None = 20.0,
    processes: int = 0,
    server_pid: int = 0,
    stalled: int = 0,
    room: str | None = None,
    settle: bool = False,
    sender_url: str | None = None,
    more_pids: Sequence[int] = (),
    senders: int = 1,
) -> Figures:
    """Deliveries per second, p50/p99 delivery latency and server CPU per delivery of a chat broadcast.

    ``processes`` receiver processes (0: one per 250 receivers) each hold a share of the
    ``receivers`` chat clients; one sender in this process sends ``messages`` at ``rate``/s, or
    back to back when ``rate`` is None. ``stalled`` more chat clients join first and never read
    (what they are sent is not counted). ``room``: everyone is in that room instead of the
    tutorial's chat. ``settle``: the measured lines wait until the server is quiet.
    ``sender_url``: the sender talks to that server instead (another process, on the same engine);
    ``more_pids``: processes whose CPU time counts too (that server's). ``senders``: that many
    clients send (``send_lines``), every receiver counts each one's lines.
    """
    processes = processes or max(1, math.ceil(receivers / 250))
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    finish, release = context.Event(), context.Event()
    workers = []
    first = FIRST_RECEIVER_ID
    for share in split(receivers, processes):
        receivers_share = Receivers(base_url, range(first, first + share), messages, room, senders)
        args = (receivers_share, (ready, results), (finish, release))
        workers.append(context.Process(target=receivers_process, args=args, daemon=True))
        first += share
    for worker in workers:
        worker.start()
    held: list[StalledClient] = []
    port = urlsplit(base_url).port or 80
    try:
        held += [StalledClient(port, chat_path(STALLED_ID + i, room), timeout=OPEN_TIMEOUT) for i in range(stalled)]
        opened = failed = 0
        for _ in workers:
            got_open, got_failed = ready.get(timeout=60)
            opened += got_open
            failed += got_failed
        # Unpaced, the sender is done long before the server: the wait allows for a slow one.
        grace = GRACE + receivers * messages * senders / SLOWEST_FANOUT
        collect = functools.partial(collect_reports, results, len(workers), finish, grace)
        sending = send_lines(
            sender_url or base_url, messages, rate, server_pid, collect, room, settle, more_pids, senders
        )
        first_ns, cpu, reports = run(sending)
    finally:
        finish.set()
        release.set()
        for client in held:
            client.close()
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
    latencies = sorted(value for report in reports for value in report["latencies"])
    slowest: dict[int, int] = {}
    for report in reports:
        for stamp, latency in report["slowest"].items():
            slowest[stamp] = max(slowest.get(stamp, 0), latency)
    to_last = sorted(slowest.values())
    last_ns = max((report["last_ns"] for report in reports), default=0)
    elapsed = max(last_ns - first_ns, 1) / 1e9
    return {
        "deliveries_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) / 1e6,
        "p99_ms": percentile(latencies, 0.99) / 1e6,
        "last_p50_ms": percentile(to_last, 0.50) / 1e6,  # from the send to the last member, per line
        "last_p99_ms": percentile(to_last, 0.99) / 1e6,
        "delivered": len(latencies) / max(opened * messages * senders, 1),
        "server_cpu_us_per_op": cpu / max(len(latencies), 1) * 1e6,
        "connect_failures": float(failed),
    }


# -- (d) RSS per idle connection -------------------------------------------------------------


async def idle_holder_async(base_url: str, commands: Any, replies: Any) -> None:
    held: list[ClientConnection] = []
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                command = await loop.run_in_executor(None, commands.get, True, 120)
            except queue.Empty:
                break
            if command is None:
                break
            connections: list[ClientConnection]
            connections, failed = await open_many([f"{base_url}/ws"] * (command - len(held)))
            held.extend(connections)
            replies.put((len(held), failed))
    finally:
        abort_all(held)


def idle_holder_process(base_url: str, commands: Any, replies: Any, most: int) -> None:
    raise_nofile(most + 256)
    run(idle_holder_async(base_url, commands, replies))


async def warm_up(base_url: str) -> None:
    """One full echo session, so lazily imported code is not counted as per-connection cost."""
    async with open_ws(f"{base_url}/ws") as ws:
        await ws.send("warm-up")
        await ws.recv()


def rss_per_connection(
    base_url: str,
    server_pid: int,
    counts: Sequence[int] = (1000, 5000),
    processes: int = 2,
    settle: float = 1.0,
) -> Figures:
    """The server's RSS growth per idle ``/ws`` connection, at each total in ``counts``."""
    raise_nofile(max(counts) + 256)
    run(warm_up(base_url))
    time.sleep(settle)
    before = tree_rss(server_pid)
    figures: Figures = {"rss_before_mib": before / 2**20}
    context = multiprocessing.get_context("spawn")
    replies = context.Queue()
    channels = [context.Queue() for _ in range(processes)]
    most = max(counts)
    workers = [
        context.Process(target=idle_holder_process, args=(base_url, c, replies, most), daemon=True) for c in channels
    ]
    for worker in workers:
        worker.start()
    try:
        for count in sorted(counts):
            for channel, share in zip(channels, split(count, processes), strict=True):
                channel.put(share)
            held = failed = 0
            for _ in workers:
                got_held, got_failed = replies.get(timeout=60 + count / 100)
                held += got_held
                failed += got_failed
            time.sleep(settle)
            after = tree_rss(server_pid)
            figures[f"bytes_per_conn_{count}"] = (after - before) / max(held, 1)
            figures[f"failed_{count}"] = float(failed)
    finally:
        for channel in channels:
            channel.put(None)
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    return figures


# -- command line ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("scenario", choices=["echo", "items", "broadcast", "rss"])
    parser.add_argument("base_url", help="ws://127.0.0.1:PORT")
    parser.add_argument("--clients", type=int, default=1, help="echo: concurrent clients")
    parser.add_argument("--workers", type=int, default=20, help="items: concurrent workers")
    parser.add_argument("--duration", type=float, default=3.0, help="echo, items: seconds")
    parser.add_argument("--receivers", type=int, default=100, help="broadcast: receivers")
    parser.add_argument("--messages", type=int, default=60, help="broadcast: messages")
    parser.add_argument("--rate", type=float, default=20.0, help="broadcast: messages/s (0: unpaced)")
    parser.add_argument("--stalled", type=int, default=0, help="broadcast: clients that never read")
    parser.add_argument(
        "--room",
        default=None,
        help="broadcast: in this room instead of the chat (the server must take that many room connects from "
        "one address: raise its ROOM_ADDRESS_RATE and ROOM_ADDRESS_BURST)",
    )
    parser.add_argument("--processes", type=int, default=0, help="broadcast, rss: processes")
    parser.add_argument("--pid", type=int, default=0, help="the server's PID (rss: required)")
    parser.add_argument("--counts", default="1000,5000", help="rss: connection totals")
    args = parser.parse_args(argv)
    if args.scenario == "echo":
        figures = echo_round_trips(args.base_url, args.clients, args.duration, args.pid)
    elif args.scenario == "items":
        figures = items_sessions(args.base_url, args.workers, args.duration, args.pid)
    elif args.scenario == "broadcast":
        rate = args.rate or None
        figures = broadcast_fanout(
            args.base_url, args.receivers, args.messages, rate, args.processes, args.pid, args.stalled, args.room
        )
    else:
        counts = [int(count) for count in args.counts.split(",")]
        figures = rss_per_connection(args.base_url, args.pid, counts, args.processes or 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
