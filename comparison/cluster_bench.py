"""Redis Cluster against one Redis: what the cluster engine costs the app, and what sharding buys.

Run from the repository root (``make bench`` runs it after ``comparison.rooms_bench``)::

    python -m comparison.cluster_bench [--quick] [--rounds N] [--out comparison/results/cluster_bench.json]

1. **cross-process fan-out**: two app processes A and B (``starlette_ws.app:app``, both pinned to
   the first CPU), receivers on A, the sender on B, so every delivery crosses the engine:
   ``loadgen.broadcast_fanout`` with the server CPU of A and B together per delivery, in the
   tutorial's chat and in one room, on one Redis and on a 3-master cluster (a replica each). The
   load generator and the engines share the other CPU. Rounds alternate the engines.
2. **publish rate, 1 shard against 3**: clients in two processes append (the rooms' one script:
   keep, trim, SPUBLISH) to 96 rooms as fast as they can for a few seconds, while a subscriber
   process hears every room; on a cluster of one master, then of three (no replicas). Figures:
   appends/s, and each master's CPU time per append: the busiest master's share is what limits
   the rate once clients are not the limit (on this 2-CPU machine they are), so its inverse is the
   capacity figure, and 3 shards against 1 is the point of sharding.

Every engine is started here on free loopback ports and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from comparison import common, loadgen
from comparison.common import RESULTS, number
from comparison.hub_bench import exit_on_sigterm
from comparison.stats import medians, ratio, times
from harness import services
from harness.servers import UvicornServer

APP = "starlette_ws.app:app"
CHAT, ROOM = "chat", "room"
ROOMS = 96
UNLIMITED_CONNECTS = {
    name: "1000000" for name in ("ROOM_CONNECT_RATE", "ROOM_CONNECT_BURST", "ROOM_ADDRESS_RATE", "ROOM_ADDRESS_BURST")
}


@dataclass(frozen=True)
class Workload:
    rounds: int
    receivers: int
    messages: int
    rate: float  # the sender's lines per second (inside the chat's flood limit)
    publish_seconds: float
    publishers: int  # concurrent appends per client process (under the store's pool of 50 connections)


FULL = Workload(rounds=7, receivers=200, messages=150, rate=40.0, publish_seconds=4.0, publishers=40)
QUICK = Workload(rounds=1, receivers=100, messages=60, rate=40.0, publish_seconds=2.0, publishers=32)


@contextlib.contextmanager
def engines(cpus: set[int] | None) -> Iterator[dict[str, Any]]:
    with contextlib.ExitStack() as stack:
        redis = services.start_redis()
        stack.callback(redis.close)
        cluster = services.start_redis_cluster()
        stack.callback(cluster.close)
        if cpus:
            for pid in [redis.pid, *(node.pid for node in cluster.nodes)]:
                os.sched_setaffinity(pid, cpus)
        yield {"redis": redis.url, "cluster": cluster.url}


def fanout_once(url: str, where: str, workload: Workload, logs: Path) -> dict[str, Any]:
    server_cpus, loadgen_cpus = common.placement(1)
    everything = os.sched_getaffinity(0)
    env = {"BROADCAST_URL": url, "CHANNEL_PREFIX": f"bench{time.monotonic_ns()}:", **UNLIMITED_CONNECTS}
    room = "bench" if where == ROOM else None
    servers = [
        UvicornServer(APP, env=env, cpus=server_cpus, log_level="warning", log_path=logs / f"cluster-{name}.log")
        for name in ("a", "b")
    ]
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.enter_context(server)
        a, b = servers
        try:
            if loadgen_cpus:
                os.sched_setaffinity(0, loadgen_cpus)
            figures = loadgen.broadcast_fanout(
                a.ws_url,
                workload.receivers,
                workload.messages,
                workload.rate,
                server_pid=a.pid,
                room=room,
                settle=room is not None,
                sender_url=b.ws_url,
                more_pids=[b.pid],
            )
        finally:
            os.sched_setaffinity(0, everything)
    return {"figures": figures, "seconds": time.perf_counter() - started, "loadavg_1min": os.getloadavg()[0]}


def fanout_rounds(urls: dict[str, str], workload: Workload, logs: Path) -> list[dict[str, Any]]:
    runs = []
    for round_ in range(1, workload.rounds + 1):
        order = ("redis", "cluster") if round_ % 2 else ("cluster", "redis")
        for where in (CHAT, ROOM):
            for engine in order:
                try:
                    outcome = fanout_once(urls[engine], where, workload, logs)
                except Exception as error:  # one failed run must not end the study
                    outcome = {"error": f"{type(error).__name__}: {error}"}
                config = f"{where}-{engine}"
                print(f"[{round_}/{workload.rounds}] fanout {config:<13} {common.outcome_line(outcome)}", flush=True)
                runs.append({"round": round_, "scenario": "fanout", "config": config, **outcome})
    return runs


# -- 2. publish rate ---------------------------------------------------------------------------


def room_names() -> list[str]:
    return [f"room-{n}" for n in range(ROOMS)]


async def appending(url: str, prefix: str, publishers: int, seconds: float) -> tuple[int, int]:
    from starlette_ws.engines import Engine
    from starlette_ws.history import HistoryError

    store = Engine(url).store(prefix, 100, 300.0)
    await store.connect()
    rooms = room_names()
    count = failed = 0
    deadline = time.monotonic() + seconds

    async def publisher(index: int) -> None:
        nonlocal count, failed
        n = index
        while time.monotonic() < deadline:
            try:
                await store.append(rooms[n % ROOMS], '"type":"message","text":"x"}')
            except HistoryError:  # counted: an engine past its capacity says so in time
                failed += 1
            else:
                count += 1
            n += publishers

    try:
        await asyncio.gather(*(publisher(i) for i in range(publishers)))
    finally:
        await store.disconnect()
    return count, failed


def appender(url: str, prefix: str, publishers: int, seconds: float, start: Any, results: Any) -> None:
    start.wait()
    results.put(asyncio.run(appending(url, prefix, publishers, seconds)))


async def hearing(url: str, prefix: str, ready: Any, stop: Any, results: Any) -> None:
    from starlette_ws.engines import Engine
    from starlette_ws.history import room_channel

    backend = Engine(url).backend()
    await backend.connect()
    for room in room_names():
        await backend.subscribe(room_channel(prefix, room))
    ready.set()
    heard = 0
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await backend.next_published()
                    heard += 1
    finally:
        await backend.disconnect()
        results.put(heard)


def subscriber(url: str, prefix: str, ready: Any, stop: Any, results: Any) -> None:
    asyncio.run(hearing(url, prefix, ready, stop, results))


def publish_once(shards: int, workload: Workload) -> dict[str, Any]:
    started = time.perf_counter()
    cluster = services.start_redis_cluster(shards, 0)
    context = multiprocessing.get_context("spawn")
    start, ready, stop = context.Event(), context.Event(), context.Event()
    counts, heard = context.Queue(), context.Queue()
    prefix = f"rate{time.monotonic_ns()}:"
    args = (cluster.url, prefix, workload.publishers, workload.publish_seconds, start, counts)
    clients = [context.Process(target=appender, args=args, daemon=True) for _ in range(2)]
    listener = context.Process(target=subscriber, args=(cluster.url, prefix, ready, stop, heard), daemon=True)
    try:
        listener.start()
        ready.wait(30)
        for client in clients:
            client.start()
        masters = {node.port: psutil.Process(node.pid) for node in cluster.masters()}
        before = {port: loadgen.scheduled_seconds(process) for port, process in masters.items()}
        began = time.perf_counter()
        start.set()
        answers = [counts.get(timeout=60) for _ in clients]
        appended, failed = sum(a for a, _ in answers), sum(f for _, f in answers)
        elapsed = time.perf_counter() - began
        cpu = {port: loadgen.scheduled_seconds(process) - before[port] for port, process in masters.items()}
        stop.set()
        delivered = heard.get(timeout=30)
    finally:
        stop.set()
        for process in (*clients, listener):
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
        cluster.close()
    busiest = max(cpu.values()) / max(appended, 1) * 1e6
    return {
        "figures": {
            "appends_per_s": appended / elapsed,
            "failed": failed / max(appended + failed, 1),
            "delivered": delivered / max(appended, 1),
            "busiest_master_us_per_append": busiest,
            "engine_us_per_append": sum(cpu.values()) / max(appended, 1) * 1e6,
            "capacity_appends_per_s": 1e6 / busiest if busiest else float("nan"),
        },
        "seconds": time.perf_counter() - started,
        "loadavg_1min": os.getloadavg()[0],
    }


def publish_rounds(workload: Workload) -> list[dict[str, Any]]:
    runs = []
    for round_ in range(1, workload.rounds + 1):
        for shards in (1, 3) if round_ % 2 else (3, 1):
            try:
                outcome = publish_once(shards, workload)
            except Exception as error:
                outcome = {"error": f"{type(error).__name__}: {error}"}
            config = f"{shards}-shard" + ("s" if shards > 1 else "")
            print(f"[{round_}/{workload.rounds}] publish {config:<8} {common.outcome_line(outcome)}", flush=True)
            runs.append({"round": round_, "scenario": "publish", "config": config, **outcome})
    return runs


def summarize(summary: dict[str, Any]) -> dict[str, Any]:
    def figure(scenario: str, config: str, name: str) -> float | None:
        value = summary.get(scenario, {}).get(config, {}).get(name)
        return float(value) if value is not None else None

    ratios: dict[str, Any] = {}
    for where in (CHAT, ROOM):
        ratios[f"{where}_cpu_cluster_over_redis"] = ratio(
            figure("fanout", f"{where}-cluster", "server_cpu_us_per_op"),
            figure("fanout", f"{where}-redis", "server_cpu_us_per_op"),
        )
    for name in ("appends_per_s", "capacity_appends_per_s"):
        ratios[f"{name}_3_over_1"] = ratio(figure("publish", "3-shards", name), figure("publish", "1-shard", name))
    return ratios


def print_summary(summary: dict[str, Any], ratios: dict[str, Any]) -> None:
    rows = [["configuration", "server CPU µs/delivery", "deliveries/s", "p50 ms", "p99 ms"]]
    for config, figures in sorted(summary.get("fanout", {}).items()):
        rows.append(
            [
                config,
                *(number(figures.get(k)) for k in ("server_cpu_us_per_op", "deliveries_per_s", "p50_ms", "p99_ms")),
            ]
        )
    print(common.text_table(rows))
    rows = [["shards", "appends/s", "busiest master µs/append", "engine µs/append", "capacity appends/s"]]
    for config, figures in sorted(summary.get("publish", {}).items()):
        keys = ("appends_per_s", "busiest_master_us_per_append", "engine_us_per_append", "capacity_appends_per_s")
        rows.append([config, *(number(figures.get(k)) for k in keys)])
    print(common.text_table(rows))
    for name, value in ratios.items():
        print(f"{name}: {times(value)}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of a smaller workload")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster_bench.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    workload = Workload(**{**asdict(base), "rounds": args.rounds or base.rounds})
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    loadgen.raise_nofile(65536)
    logs = common.logs_dir()
    started = time.perf_counter()
    server_cpus, loadgen_cpus = common.placement(1)
    print(f"servers' CPUs {server_cpus or 'any'}, load generator and engines' CPUs {loadgen_cpus or 'any'}", flush=True)
    with engines(loadgen_cpus) as urls:
        runs = fanout_rounds(urls, workload, logs)
    runs += publish_rounds(workload)
    summary = medians(runs, "scenario", "config")
    ratios = summarize(summary)
    print_summary(summary, ratios)
    pinning = {"servers": sorted(server_cpus or []), "loadgen_and_engines": sorted(loadgen_cpus or [])}
    meta = {"pinning": pinning, "settings": asdict(workload)}
    common.write_results(
        args.out, started, ["starlette", "uvicorn", "websockets", "redis"], meta, summary, ratios, runs
    )


if __name__ == "__main__":
    main()
