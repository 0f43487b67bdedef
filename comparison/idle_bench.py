"""Idle chat connections as a browser audience holds them: memory per connection, one broadcast.

Run from the repository root: ``python -m comparison.idle_bench [--quick] [--rounds N]``.

Browsers offer permessage-deflate and uvicorn accepts it unless told not to, so each
configuration sets the server's switch (``--ws-per-message-deflate``) and whether the clients
offer the extension:

- ``deflate-offered``: server on, clients offer it (a browser audience against uvicorn's default)
- ``deflate-not-offered``: server on, clients do not offer it (what comparison/bench.py measures)
- ``deflate-off``: server off, clients offer it (a browser audience against `make run`'s default)

Each (round, configuration) gets a fresh server started as `make run` starts it (our protocol
classes, the open-files limit at its hard limit), pinned to one CPU; the clients, spread over
several processes, run on the others. The chat clients (``/ws/{id}``) connect in steps up to
10,000 and the server's RSS growth over an idle baseline (after one warm-up chat session) is
divided by the connections held. Then one more client sends chat lines, one at a time; each is
broadcast to everyone, and every receiver notes when it arrived: p50/p99 of the delivery
latencies and the time until the last receiver had it. These include the clients' own time (10,000
clients share one CPU), so the server's CPU time per broadcast is given too. Rounds interleave the configurations;
the summary is the median over rounds, with each configuration's ratio to ``deflate-off`` of
the same round. Raw figures go to comparison/results/idle_bench.json.

At the end the server is killed before the clients let go: a chat server told each of 10,000
departures would broadcast each to everyone still there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import multiprocessing
import os
import queue
import resource
import signal
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection

from comparison import common, loadgen
from comparison.common import RESULTS, number, placement
from comparison.loadgen import split, tree_rss
from comparison.report.idle import BROADCAST_COLUMNS, summary_rows
from comparison.stats import medians, ratio
from harness.servers import UvicornServer

APP = "starlette_ws.app:app"
MAX_MESSAGE_BYTES = 65536  # `make run`'s default
FD_RESERVE = 100  # as `make run`: the connection cap is the open-files limit less this
SENDER_ID = 1
WARM_UP_ID = 2
FIRST_RECEIVER_ID = 1000
PREFIX = f"Client #{SENDER_ID} says: "
REFERENCE = "deflate-off"
OPEN_WAIT = 120.0  # longest wait for one step of connections to open
DELIVERY_WAIT = 15.0  # longest wait for one broadcast to reach everyone
HOLD_LIMIT = 600.0  # a holder process never waits longer than this for a command


@dataclass(frozen=True)
class Configuration:
    name: str
    server_deflate: bool
    client_offers: bool

    @property
    def compression(self) -> str | None:
        return "deflate" if self.client_offers else None


CONFIGURATIONS = (
    Configuration("deflate-offered", server_deflate=True, client_offers=True),
    Configuration("deflate-not-offered", server_deflate=True, client_offers=False),
    Configuration(REFERENCE, server_deflate=False, client_offers=True),
)


@dataclass(frozen=True)
class Workload:
    """How many connections in which steps, how many broadcasts (--quick: QUICK)."""

    counts: tuple[int, ...]
    broadcasts: int  # measured, after one unmeasured
    processes: int  # client processes
    settle: float  # seconds before each RSS reading


FULL = Workload((1000, 5000, 10000), 5, 4, 1.0)
QUICK = Workload((1000,), 3, 2, 0.5)


# -- client processes ------------------------------------------------------------------------


class Arrivals:
    """When each broadcast (by its sequence number) reached each of this process's clients."""

    def __init__(self) -> None:
        self.latencies: dict[int, list[int]] = {}
        self.last: dict[int, int] = {}
        self.changed = asyncio.Event()

    def note(self, message: str) -> None:
        now = time.time_ns()
        sequence, stamp = (int(part) for part in message[len(PREFIX) :].split(" "))
        self.latencies.setdefault(sequence, []).append(now - stamp)
        self.last[sequence] = max(self.last.get(sequence, 0), now)
        self.changed.set()


async def listen(ws: ClientConnection, arrivals: Arrivals) -> None:
    try:
        async for message in ws:
            if isinstance(message, str) and message.startswith(PREFIX):
                arrivals.note(message)
    except Exception:
        return


def negotiated(ws: ClientConnection) -> bool:
    """Whether the server's handshake response named an extension (permessage-deflate)."""
    return ws.response is not None and "Sec-WebSocket-Extensions" in ws.response.headers


async def collect(arrivals: Arrivals, sequence: int, expected: int, wait: float) -> dict[str, Any]:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait):
            while len(arrivals.latencies.get(sequence, ())) < expected:
                arrivals.changed.clear()
                await arrivals.changed.wait()
    return {"latencies": arrivals.latencies.pop(sequence, []), "last_ns": arrivals.last.pop(sequence, 0)}


async def holder_async(base_url: str, first_id: int, compression: str | None, commands: Any, replies: Any) -> None:
    """Hold chat connections; commands: ("open", total), ("collect", sequence), None to stop."""
    held: list[ClientConnection] = []
    listeners: list[asyncio.Task[None]] = []
    arrivals = Arrivals()
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                command = await loop.run_in_executor(None, commands.get, True, HOLD_LIMIT)
            except queue.Empty:
                break
            if command is None:
                break
            if command[0] == "open":
                ids = range(first_id + len(held), first_id + command[1])
                opened, failed = await loadgen.open_many(
                    [f"{base_url}/ws/{i}" for i in ids], functools.partial(loadgen.open_ws, compression=compression)
                )
                listeners += [asyncio.create_task(listen(ws, arrivals)) for ws in opened]
                held += opened
                extensions = sum(
                    bool(ws.response and ws.response.headers.get("Sec-WebSocket-Extensions")) for ws in held
                )
                replies.put({"held": len(held), "failed": failed, "extensions": extensions})
            else:
                replies.put(await collect(arrivals, command[1], len(held), DELIVERY_WAIT))
    finally:
        for task in listeners:
            task.cancel()
        loadgen.abort_all(held)


def holder_process(base_url: str, first_id: int, compression: str | None, commands: Any, replies: Any) -> None:
    loadgen.raise_nofile(resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    loadgen.run(holder_async(base_url, first_id, compression, commands, replies))


# -- the server ------------------------------------------------------------------------------


def start_server(deflate: bool, cpus: set[int] | None, log: Path) -> UvicornServer:
    """uvicorn as `make run` runs it, with the permessage-deflate switch set."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - FD_RESERVE
    args = [
        "--ws-per-message-deflate", "true" if deflate else "false", "--limit-concurrency", str(limit),
        "--log-config", "starlette_ws/logging.json", "--ws-max-size", str(MAX_MESSAGE_BYTES),
    ]  # fmt: skip
    return UvicornServer(APP, args=args, cpus=cpus, log_path=log, start_timeout=20.0, stop_timeout=10.0).start()


# -- one run ---------------------------------------------------------------------------------


async def warm_up(base_url: str, compression: str | None) -> None:
    """One chat session, so lazily built code and tables are not counted per connection."""
    async with asyncio.timeout(loadgen.OPEN_TIMEOUT):
        async with loadgen.open_ws(f"{base_url}/ws/{WARM_UP_ID}", compression) as ws:
            await ws.send("warm-up")
            await ws.recv()
            await ws.recv()


class Sender:
    """The one client that speaks; the server's replies to it are read and dropped."""

    def __init__(self, base_url: str, compression: str | None) -> None:
        self.loop = asyncio.new_event_loop()
        self.ws = self.loop.run_until_complete(loadgen.open_ws(f"{base_url}/ws/{SENDER_ID}", compression))
        self.reader = self.loop.create_task(loadgen.drain(self.ws))

    def send(self, sequence: int) -> None:
        async def send() -> None:
            await self.ws.send(f"{sequence} {time.time_ns()}")
            await asyncio.sleep(0.05)  # lets the reader take the echo

        self.loop.run_until_complete(asyncio.wait_for(send(), DELIVERY_WAIT))

    def close(self) -> None:
        self.reader.cancel()
        loadgen.abort_all([self.ws])
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


def gather_replies(replies: Any, processes: int, wait: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + wait
    return [replies.get(timeout=max(0.1, deadline - time.monotonic())) for _ in range(processes)]


def broadcast_figures(reports: list[dict[str, Any]], sent_ns: int, receivers: int) -> dict[str, float]:
    latencies = sorted(value for report in reports for value in report["latencies"])
    last_ns = max((report["last_ns"] for report in reports), default=0)
    return {
        "p50_ms": loadgen.percentile(latencies, 0.50) / 1e6,
        "p99_ms": loadgen.percentile(latencies, 0.99) / 1e6,
        "last_ms": (last_ns - sent_ns) / 1e6 if last_ns else math.nan,
        "delivered": len(latencies) / max(receivers, 1),
    }


def measure(server: UvicornServer, configuration: Configuration, workload: Workload) -> dict[str, float]:
    """Every figure of one run; the server is killed at the end, before the clients stop."""
    compression = configuration.compression
    base_url = server.ws_url
    loadgen.run(warm_up(base_url, compression))
    time.sleep(workload.settle)
    baseline = tree_rss(server.pid)
    figures: dict[str, float] = {"rss_baseline_mib": baseline / 2**20}
    context = multiprocessing.get_context("spawn")
    replies = context.Queue()
    channels = [context.Queue() for _ in range(workload.processes)]
    most = max(workload.counts)
    firsts = [FIRST_RECEIVER_ID + sum(split(most, workload.processes)[:i]) for i in range(workload.processes)]
    workers = [
        context.Process(target=holder_process, args=(base_url, first, compression, channel, replies), daemon=True)
        for first, channel in zip(firsts, channels, strict=True)
    ]
    for worker in workers:
        worker.start()
    sender: Sender | None = None
    try:
        held = 0
        for count in sorted(workload.counts):
            for channel, share in zip(channels, split(count, workload.processes), strict=True):
                channel.put(("open", share))
            steps = gather_replies(replies, len(workers), OPEN_WAIT)
            held = sum(step["held"] for step in steps)
            time.sleep(workload.settle)
            figures[f"kb_per_conn_{count}"] = (tree_rss(server.pid) - baseline) / max(held, 1) / 1000
            figures[f"failed_{count}"] = float(sum(step["failed"] for step in steps))
            figures[f"negotiated_{count}"] = sum(step["extensions"] for step in steps) / max(held, 1)
        sender = Sender(base_url, compression)
        runs = []
        for sequence in range(-1, workload.broadcasts):
            cpu_before = loadgen.tree_cpu(server.pid)
            sent_ns = time.time_ns()
            sender.send(sequence)
            for channel in channels:
                channel.put(("collect", sequence))
            reports = gather_replies(replies, len(workers), DELIVERY_WAIT + 5)
            if sequence >= 0:
                cpu_ms = (loadgen.tree_cpu(server.pid) - cpu_before) * 1e3
                runs.append({**broadcast_figures(reports, sent_ns, held), "server_cpu_ms": cpu_ms})
            time.sleep(0.5)
        for metric in BROADCAST_COLUMNS:
            figures[f"broadcast_{metric}"] = statistics.median(run[metric] for run in runs)
        figures["receivers"] = float(held)
    finally:
        kill(server)
        if sender is not None:
            sender.close()
        for channel in channels:
            channel.put(None)
        stop_workers(workers)
    return figures


def stop_workers(workers: list[Any]) -> None:
    for worker in workers:
        worker.join(timeout=10)
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=5)


def kill(server: UvicornServer) -> None:
    """SIGKILL: a graceful stop would broadcast every departure to everyone left."""
    server.stop(signal.SIGKILL)


def run_once(configuration: Configuration, workload: Workload, logs: Path) -> dict[str, Any]:
    server_cpus, client_cpus = placement(1)
    everything = os.sched_getaffinity(0)
    server = start_server(configuration.server_deflate, server_cpus, logs / f"idle-{configuration.name}.log")
    started = time.perf_counter()
    try:
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)  # inherited by the client processes
        figures = measure(server, configuration, workload)
    finally:
        os.sched_setaffinity(0, everything)
        kill(server)
    return {"figures": figures, "seconds": time.perf_counter() - started, "loadavg_1min": os.getloadavg()[0]}


# -- summary ---------------------------------------------------------------------------------


def paired_ratios(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{configuration: {metric: median over rounds of (its figure / deflate-off's, same round)}}."""
    by_round: dict[int, dict[str, dict[str, float]]] = {}
    for run in runs:
        by_round.setdefault(run["round"], {})[run["configuration"]] = run.get("figures", {})
    samples: dict[str, dict[str, list[float]]] = {}
    for configurations in by_round.values():
        reference = configurations.get(REFERENCE, {})
        for name, figures in configurations.items():
            for metric, value in figures.items():
                paired = ratio(value, reference.get(metric))
                if name != REFERENCE and paired is not None:
                    samples.setdefault(name, {}).setdefault(metric, []).append(paired)
    return {name: {m: statistics.median(v) for m, v in metrics.items()} for name, metrics in samples.items()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="idle chat connections: RSS per connection, one broadcast to all")
    parser.add_argument("--quick", action="store_true", help="1,000 connections only: a smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="default 2 (--quick: 1)")
    parser.add_argument("--configurations", default=",".join(c.name for c in CONFIGURATIONS))
    parser.add_argument("--out", type=Path, default=RESULTS / "idle_bench.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workload = QUICK if args.quick else FULL
    rounds = args.rounds or (1 if args.quick else 2)
    wanted = args.configurations.split(",")
    configurations = [c for c in CONFIGURATIONS if c.name in wanted]
    loadgen.raise_nofile(resource.getrlimit(resource.RLIMIT_NOFILE)[1])  # the server inherits it
    server_cpus, client_cpus = placement(1)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    print(
        f"{rounds} round(s), up to {max(workload.counts):,} connections, open-files limit {nofile}, "
        f"server CPUs {server_cpus or 'any'}, client CPUs {client_cpus or 'any'}",
        flush=True,
    )
    logs = common.logs_dir()
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    for round_ in range(1, rounds + 1):
        for configuration in configurations:
            try:
                outcome = run_once(configuration, workload, logs)
                detail = " ".join(f"{k}={number(v)}" for k, v in outcome["figures"].items())
                detail += f" ({outcome['seconds']:.0f} s, load {outcome['loadavg_1min']:.1f})"
            except Exception as error:  # one failed run must not end the study
                outcome = {"error": f"{type(error).__name__}: {error}"}
                detail = f"ERROR {outcome['error']}"
            print(f"[{round_}/{rounds}] {configuration.name:<20} {detail}", flush=True)
            runs.append({"round": round_, "configuration": configuration.name, **outcome})
    summary = medians(runs, "configuration")
    ratios = paired_ratios(runs)
    print("\nMedians over rounds (KB = 1,000 bytes of server RSS per idle chat connection)")
    print(common.text_table(summary_rows(summary, [asdict(c) for c in CONFIGURATIONS], workload.counts)))
    if ratios:
        print(f"\nPaired ratios to {REFERENCE} (same round), medians")
        for name, metrics in ratios.items():
            shown = ("kb_per_conn_", "broadcast_p99_ms", "broadcast_last_ms", "broadcast_server_cpu_ms")
            print(f"  {name:<20} " + "  ".join(f"{m} {number(v)}" for m, v in metrics.items() if m.startswith(shown)))
    report = {
        "meta": {
            **common.machine(("starlette", "uvicorn", "websockets", "uvloop", "httptools")),
            "pinning": {"server": sorted(server_cpus or []), "clients": sorted(client_cpus or [])},
            "open_files_limit": nofile,
            "rounds": rounds,
            "settings": asdict(workload),
            "configurations": [asdict(c) for c in configurations],
            "reference": REFERENCE,
            "seconds": time.perf_counter() - started,
        },
        "runs": runs,
        "medians": summary,
        "ratios": ratios,
    }
    common.write_json(args.out, report, started)


if __name__ == "__main__":
    main()
