"""Rooms: what a numbered, kept, recoverable room costs next to the tutorial's chat on the same hub.

Run from the repository root (``make bench`` runs it after ``comparison.hub_bench``)::

    python -m comparison.rooms_bench [--quick] [--rounds N] [--out comparison/results/rooms_bench.json]

1. **fan-out**: ``loadgen.broadcast_fanout`` with 1,000 receivers and one sender saying 150 lines
   back to back (inside the flood burst), once in the tutorial's chat (``/ws/{id}``) and once in
   one room (``/rooms/bench/ws/{id}``), each on a fresh ``starlette_ws.app:app`` on ``memory://``.
   The server is pinned to the first CPU, the load generator to the others; the measured burst
   waits until the sender has heard its own arrival in the room, the last of the joins (past
   ``ROOM_PRESENCE_RATE`` they coalesce into member lists), and until the server is quiet
   (``loadgen.quiet``, for both). The servers take room connections at any rate
   (``UNLIMITED_CONNECTS``): 1,000 from one address would pass ``ROOM_ADDRESS_BURST``. Rounds
   alternate which goes first. Figures: deliveries/s, delivery latency, server CPU per delivery;
   the ratio room / chat.
2. **recovery**: one server per engine (``memory://``, Redis, PostgreSQL; the engines started
   here on free loopback ports), ``ROOM_HISTORY=200``. Each round, in a room of its own: a client
   joins, says one line, notes its offset and epoch, and leaves; another says 100 lines; the
   first comes back with ``?since=<offset>&epoch=<epoch>``. Measured: the time from opening the
   connection to the last of the 100 missed messages replayed (every one checked: once, in
   order, no gap; joins and leaves are live only, never replayed), and, in the
   same round, a plain connect to the same room up to its presence message. Rounds alternate
   the engines and which of the two goes first. Figures: medians, and recovery / plain connect.

An engine that cannot start skips its configuration with a note. Every wait is bounded; every
process started here is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection

from comparison import common, loadgen
from comparison.common import RESULTS, number, placement
from comparison.hub_bench import exit_on_sigterm, start_engines
from comparison.loadgen import Figures, open_ws
from comparison.stats import medians, ratio, times
from harness.servers import UvicornServer

APP = "starlette_ws.app:app"
CHAT, ROOM = "chat", "room"
ROOM_NAME = "bench"
ENGINES = ("memory", "redis", "postgres")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 8.0
READ_TIMEOUT = 10.0  # seconds any one awaited message may take
HISTORY = 200  # ROOM_HISTORY for the recovery servers: the missed lines and the entries around them
# The rooms' connect rates, per client id and per address, out of the way: every client here
# comes from 127.0.0.1, and the recovery rounds reconnect the same client ids again and again.
UNLIMITED_CONNECTS = {
    "ROOM_CONNECT_RATE": "1000000",
    "ROOM_CONNECT_BURST": "1000000",
    "ROOM_ADDRESS_RATE": "1000000",
    "ROOM_ADDRESS_BURST": "1000000",
}


@dataclass(frozen=True)
class Workload:
    rounds: int
    receivers: int
    burst: int  # lines back to back; with the warm-up's, under the flood burst (CHAT_RATE_BURST, 200)
    recovery_rounds: int
    missed: int  # lines said while the recovering client is away


FULL = Workload(rounds=9, receivers=1000, burst=150, recovery_rounds=21, missed=100)
QUICK = Workload(rounds=1, receivers=200, burst=150, recovery_rounds=5, missed=100)


# -- fan-out ----------------------------------------------------------------------------------


def fanout_once(where: str, workload: Workload, logs: Path) -> dict[str, Any]:
    server_cpus, loadgen_cpus = placement(1)
    everything = os.sched_getaffinity(0)
    room = ROOM_NAME if where == ROOM else None
    server = UvicornServer(
        APP,
        env={"BROADCAST_URL": "memory://", "METRICS": "true", **UNLIMITED_CONNECTS},
        cpus=server_cpus,
        log_level="warning",
        log_path=logs / f"rooms-fanout-{where}.log",
        start_timeout=START_TIMEOUT,
        stop_timeout=STOP_TIMEOUT,
    )
    server.start()
    started = time.perf_counter()
    try:
        if loadgen_cpus:
            os.sched_setaffinity(0, loadgen_cpus)  # inherited by the receiver processes
        figures = loadgen.broadcast_fanout(
            server.ws_url, workload.receivers, workload.burst, None, server_pid=server.pid, room=room, settle=True
        )
    finally:
        os.sched_setaffinity(0, everything)
        server.stop()
    return {"figures": figures, "seconds": time.perf_counter() - started, "loadavg_1min": os.getloadavg()[0]}


def fanout_rounds(workload: Workload, logs: Path) -> list[dict[str, Any]]:
    runs = []
    for round_ in range(1, workload.rounds + 1):
        order = (CHAT, ROOM) if round_ % 2 else (ROOM, CHAT)
        for where in order:
            try:
                outcome = fanout_once(where, workload, logs)
            except Exception as error:  # one failed run must not end the study
                outcome = {"error": f"{type(error).__name__}: {error}"}
            print(f"[{round_}/{workload.rounds}] fanout {where:<5} {common.outcome_line(outcome)}", flush=True)
            runs.append({"round": round_, "scenario": "fanout", "config": where, **outcome})
    return runs


# -- recovery ---------------------------------------------------------------------------------


async def next_entry(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(READ_TIMEOUT):
        while True:
            message = await ws.recv()
            if isinstance(message, str):
                entry: dict[str, Any] = json.loads(message)
                return entry


async def until(ws: ClientConnection, **match: Any) -> dict[str, Any]:
    """The next entry whose fields have these values; the ones before it are skipped."""
    while True:
        entry = await next_entry(ws)
        if all(entry.get(key) == value for key, value in match.items()):
            return entry


async def plain_connect(url: str) -> float:
    """Seconds from opening a connection to the room's presence message."""
    started = time.perf_counter()
    async with open_ws(url) as ws:
        await until(ws, type="presence")
        return time.perf_counter() - started


async def recover(url: str, since: int, epoch: str, last: int, missed: int) -> float:
    """Seconds from opening a connection with `since` to the last missed message, checking every
    one arrives once, in order, with no gap (a join or a leave has no offset: live only)."""
    started = time.perf_counter()
    lines = []
    async with open_ws(f"{url}?since={since}&epoch={epoch}") as ws:
        while True:
            entry = await next_entry(ws)
            if entry["type"] == "gap":
                raise RuntimeError(f"a gap on recovery: {entry}")
            if entry["type"] == "message":
                lines.append(entry["text"])
            if entry.get("offset") == last:
                elapsed = time.perf_counter() - started
                break
    if lines != [f"line {i}" for i in range(missed)]:
        raise RuntimeError(f"recovered {len(lines)} lines, not the {missed} said, in order")
    return elapsed


async def recovery_round(base_url: str, room: str, missed: int, plain_first: bool) -> Figures:
    away, talker, newcomer = (f"{base_url}/rooms/{room}/ws/{i}" for i in (2, 1, 3))
    async with open_ws(away) as ws:  # its last message seen: its own
        await ws.send("seen")
        seen = await until(ws, type="message", client_id=2, text="seen")
    async with open_ws(talker) as ws:
        for i in range(missed):
            await ws.send(f"line {i}")
        last = (await until(ws, type="message", text=f"line {missed - 1}"))["offset"]
        plain = await plain_connect(newcomer) if plain_first else 0.0
        recovered = await recover(away, seen["offset"], seen["epoch"], last, missed)
        if not plain_first:
            plain = await plain_connect(newcomer)
    return {"recover_ms": recovered * 1e3, "connect_ms": plain * 1e3, "recover_per_connect": recovered / plain}


def recovery_rounds(urls: dict[str, str], workload: Workload, logs: Path) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    server_cpus, client_cpus = placement(1)
    everything = os.sched_getaffinity(0)
    with contextlib.ExitStack() as stack:
        servers = {}
        for engine, url in urls.items():
            server = UvicornServer(
                APP,
                env={"BROADCAST_URL": url, "ROOM_HISTORY": str(HISTORY), **UNLIMITED_CONNECTS},
                cpus=server_cpus,
                log_level="warning",
                log_path=logs / f"rooms-recovery-{engine}.log",
                start_timeout=START_TIMEOUT,
                stop_timeout=STOP_TIMEOUT,
            )
            servers[engine] = stack.enter_context(server)
        try:
            if client_cpus:
                os.sched_setaffinity(0, client_cpus)
            engines = list(servers)
            for engine in engines:  # unmeasured: the first room use connects the engine's pool
                loadgen.run(recovery_round(servers[engine].ws_url, "warm-up", workload.missed, True))
            for round_ in range(1, workload.recovery_rounds + 1):
                shift = round_ % len(engines)
                for engine in engines[shift:] + engines[:shift]:
                    room = f"recover-{round_}"
                    began = time.perf_counter()
                    try:
                        coro = recovery_round(servers[engine].ws_url, room, workload.missed, round_ % 2 == 0)
                        outcome: dict[str, Any] = {"figures": loadgen.run(coro)}
                    except Exception as error:
                        outcome = {"error": f"{type(error).__name__}: {error}"}
                    outcome.update(seconds=time.perf_counter() - began, loadavg_1min=os.getloadavg()[0])
                    print(f"[{round_}/{workload.recovery_rounds}] recovery {engine:<8} {common.outcome_line(outcome)}")
                    runs.append({"round": round_, "scenario": "recovery", "config": engine, **outcome})
        finally:
            os.sched_setaffinity(0, everything)
    return runs


# -- summary ----------------------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Room / chat in each fan-out round (the two ran back to back), median over rounds."""
    by_round: dict[int, dict[str, Figures]] = {}
    for run in runs:
        if run["scenario"] == "fanout" and "figures" in run:
            by_round.setdefault(run["round"], {})[run["config"]] = run["figures"]
    paired: dict[str, Any] = {}
    for metric in ("server_cpu_us_per_op", "deliveries_per_s", "p50_ms", "p99_ms"):
        values = [ratio(pair[ROOM].get(metric), pair[CHAT].get(metric)) for pair in by_round.values() if len(pair) == 2]
        kept = [value for value in values if value is not None]
        paired[metric] = statistics.median(kept) if kept else None
    return {"fanout": paired}


def print_summary(summary: dict[str, Any], ratios: dict[str, Any], workload: Workload) -> None:
    fanout = summary.get("fanout", {})
    rows = [["", "deliveries/s", "p50 ms", "p99 ms", "server CPU µs/delivery"]]
    for where in (CHAT, ROOM):
        figures = fanout.get(where, {})
        rows.append(
            [where] + [number(figures.get(m)) for m in ("deliveries_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_op")]
        )
    rows.append(["room / chat"] + [times(ratios["fanout"][m]) for m in ("deliveries_per_s", "p50_ms", "p99_ms")])
    rows[-1].append(times(ratios["fanout"]["server_cpu_us_per_op"]))
    print(f"\nfan-out, {workload.receivers} receivers, {workload.burst} lines back to back (medians)")
    print(common.text_table(rows))
    recovery = summary.get("recovery", {})
    rows = [["engine", f"recover {workload.missed} ms", "plain connect ms", "recover / connect"]]
    for engine, figures in recovery.items():
        recovered, connected = number(figures.get("recover_ms")), number(figures.get("connect_ms"))
        rows.append([engine, recovered, connected, times(figures.get("recover_per_connect"))])
    print(f"\nrecovery of {workload.missed} missed lines (medians)")
    print(common.text_table(rows))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="starlette-ws rooms: fan-out against the chat, recovery per engine")
    parser.add_argument("--rounds", type=int, default=None, help="fan-out rounds (default 9, --quick: 1)")
    parser.add_argument("--recovery-rounds", type=int, default=None, help="recovery rounds (default 21)")
    parser.add_argument("--quick", action="store_true", help="200 receivers, one fan-out round, 5 recoveries")
    parser.add_argument("--engines", default=",".join(ENGINES), help="recovery: comma-separated subset")
    parser.add_argument("--no-fanout", action="store_true", help="recovery only")
    parser.add_argument("--out", type=Path, default=RESULTS / "rooms_bench.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    rounds, recovery_rounds_ = args.rounds or base.rounds, args.recovery_rounds or base.recovery_rounds
    workload = Workload(rounds, base.receivers, base.burst, recovery_rounds_, base.missed)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    loadgen.raise_nofile(65536)
    logs = common.logs_dir()
    notes: list[str] = []
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    server_cpus, loadgen_cpus = placement(1)
    print(f"server CPUs {server_cpus or 'any'}, load generator CPUs {loadgen_cpus or 'any'}", flush=True)
    if not args.no_fanout:
        runs += fanout_rounds(workload, logs)
    with contextlib.ExitStack() as stack:
        urls = start_engines(set(args.engines.split(",")), stack, notes)
        for note in notes:
            print(f"note: {note}", flush=True)
        runs += recovery_rounds(urls, workload, logs)
    summary = medians(runs, "scenario", "config")
    ratios = summarize(runs)
    print_summary(summary, ratios, workload)
    pinning = {"server": sorted(server_cpus or []), "loadgen": sorted(loadgen_cpus or [])}
    meta = {"pinning": pinning, "settings": asdict(workload), "history": HISTORY, "notes": notes}
    packages = ["starlette", "uvicorn", "websockets", "redis", "asyncpg"]
    common.write_results(args.out, started, packages, meta, summary, ratios, runs)


if __name__ == "__main__":
    main()
