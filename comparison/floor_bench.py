"""Chat fan-out against its floor: starlette-ws and the FastAPI tutorial next to a bare uvloop server.

Run from the repository root (``make bench`` runs it)::

    python -m comparison.floor_bench [--quick] [--rounds N] [--shapes paced,burst] [--out FILE]

``loadgen.broadcast_fanout``: 200 chat receivers and one sender saying 150 lines, paced (40/s) and
unpaced (back to back), then the same with three senders in lockstep (``-3``: each says 150 lines,
the three at the same moments), to four servers in turn, each pinned to the first CPU with the
load generator on the others:

- **floor a**: ``comparison/floor_server.py``, one ``transport.write`` of a pre-built frame per
  member per message;
- **floor b**: the same with ``--joined``: one write per member per loop iteration;
- **starlette-ws** as ``make run`` serves it, and **FastAPI**'s tutorial chat twice: on the same
  protocols (``fastapi-same-stack``: the difference is the app's) and on uvicorn's own, as its
  tutorial serves it (``fastapi``). The load clients offer no compression: deflate is off for all.

Figures per delivery: the server's CPU time and its write system calls (``syscw`` of
``/proc/PID/io``), with the spread over rounds; ratios to each floor, medians of each round's; the
latency from send to arrival, p50/p99 over every delivery, and to the last member of each line.
Rounds rotate the order of the servers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from comparison import common, loadgen
from comparison.common import RESULTS, number
from comparison.hub_bench import exit_on_sigterm
from comparison.stats import medians, times
from harness.net import accepts, free_port
from harness.servers import ROOT, UvicornServer

# FastAPI's tutorial twice: on the protocols starlette-ws is served with (the same stack: what
# differs is the app), and as its tutorial serves it (uvicorn's own protocols). The load clients
# offer no compression, so deflate is off for every server either way.
SERVERS = ("floor-a", "floor-b", "starlette-ws", "fastapi-same-stack", "fastapi")
BASELINE = "baseline"  # --baseline: starlette-ws at another commit, in the same run
SHAPES = ("paced", "paced-3", "burst", "burst-3")  # "-3": three senders in lockstep
START_TIMEOUT = 20.0


@dataclass(frozen=True)
class Workload:
    rounds: int
    receivers: int
    messages: int
    rate: float  # paced lines per second


FULL = Workload(rounds=7, receivers=200, messages=150, rate=40.0)
QUICK = Workload(rounds=1, receivers=100, messages=100, rate=40.0)


@contextlib.contextmanager
def floor_server(joined: bool, cpus: set[int] | None) -> Iterator[tuple[str, int]]:
    port = free_port()
    command = [sys.executable, "-m", "comparison.floor_server", "--port", str(port), *(["--joined"] if joined else [])]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        if cpus:
            os.sched_setaffinity(process.pid, cpus)
        deadline = time.monotonic() + START_TIMEOUT
        while not accepts(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the floor server did not start")
            time.sleep(0.05)
        yield f"ws://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def server(name: str, cpus: set[int] | None, logs: Path, baseline: Path | None = None) -> Iterator[tuple[str, int]]:
    if name.startswith("floor"):
        with floor_server(name == "floor-b", cpus) as found:
            yield found
        return
    app = "starlette_ws.app:app" if name in ("starlette-ws", BASELINE) else "comparison.fastapi_app:app"
    ours = name != "fastapi"
    env = {"BROADCAST_URL": "memory://"}
    cwd = ROOT
    if name == BASELINE:  # another checkout of starlette-ws, served from there
        assert baseline is not None
        env["PYTHONPATH"] = str(baseline)
        cwd = baseline
    with UvicornServer(
        app,
        env=env,
        cpus=cpus,
        log_level="warning",
        log_path=logs / f"floor-{name}.log",
        protocols=ours,
        cwd=cwd,
    ) as served:
        yield served.ws_url, served.pid


def senders_of(shape: str) -> int:
    return int(shape.rpartition("-")[2]) if "-" in shape else 1


def writes(pid: int) -> int:
    return int(psutil.Process(pid).io_counters().write_count)


def once(name: str, shape: str, workload: Workload, logs: Path, baseline: Path | None = None) -> dict[str, Any]:
    server_cpus, loadgen_cpus = common.placement(1)
    everything = os.sched_getaffinity(0)
    started = time.perf_counter()
    with server(name, server_cpus, logs, baseline) as (url, pid):
        try:
            if loadgen_cpus:
                os.sched_setaffinity(0, loadgen_cpus)
            before = writes(pid)
            rate = workload.rate if shape.startswith("paced") else None
            senders = senders_of(shape)
            figures = loadgen.broadcast_fanout(
                url, workload.receivers, workload.messages, rate, server_pid=pid, senders=senders
            )
            written = writes(pid) - before
        finally:
            os.sched_setaffinity(0, everything)
    deliveries = workload.receivers * workload.messages * senders
    figures["writes_per_delivery"] = written / deliveries  # the warm-up's and the handshakes' too: a little over
    return {"figures": figures, "seconds": time.perf_counter() - started, "loadavg_1min": os.getloadavg()[0]}


def rounds(
    workload: Workload,
    logs: Path,
    shapes: Sequence[str] = SHAPES,
    servers: Sequence[str] = SERVERS,
    baseline: Path | None = None,
) -> list[dict[str, Any]]:
    runs = []
    for round_ in range(1, workload.rounds + 1):
        shift = (round_ - 1) % len(servers)
        for shape in shapes:
            for name in (*servers[shift:], *servers[:shift]):
                try:
                    outcome = once(name, shape, workload, logs, baseline)
                except Exception as error:  # one failed run must not end the study
                    outcome = {"error": f"{type(error).__name__}: {error}"}
                print(f"[{round_}/{workload.rounds}] {shape:<6} {name:<13} {common.outcome_line(outcome)}", flush=True)
                runs.append({"round": round_, "scenario": shape, "config": name, **outcome})
    return runs


def paired(runs: list[dict[str, Any]], shape: str, name: str, floor: str) -> float | None:
    """The median over rounds of name / floor, server CPU per delivery, within each round."""
    ratios = []
    for round_ in {run["round"] for run in runs}:
        found = {
            run["config"]: run["figures"]["server_cpu_us_per_op"]
            for run in runs
            if run["round"] == round_ and run["scenario"] == shape and "figures" in run
        }
        if found.get(name) and found.get(floor):
            ratios.append(found[name] / found[floor])
    return statistics.median(ratios) if ratios else None


def spread(runs: list[dict[str, Any]], shape: str, name: str) -> list[float]:
    values = sorted(
        run["figures"]["server_cpu_us_per_op"]
        for run in runs
        if run["scenario"] == shape and run["config"] == name and "figures" in run
    )
    return [values[0], values[-1]] if values else []


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "floor_bench.json")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"some of {','.join(SHAPES)}")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout of starlette-ws (an earlier commit) to serve as one more server"
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    workload = Workload(**{**asdict(base), "rounds": args.rounds or base.rounds})
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    loadgen.raise_nofile(65536)
    started = time.perf_counter()
    shapes = [shape for shape in args.shapes.split(",") if shape]
    if unknown := set(shapes) - set(SHAPES):
        parser.error(f"unknown shapes: {', '.join(sorted(unknown))}")
    servers = [*SERVERS[:3], *([BASELINE] if args.baseline else []), *SERVERS[3:]]
    runs = rounds(workload, common.logs_dir(), shapes, servers, args.baseline and args.baseline.resolve())
    summary = medians(runs, "scenario", "config")
    ratios = {
        shape: {
            name: {floor: paired(runs, shape, name, floor) for floor in ("floor-a", "floor-b")} for name in servers[2:]
        }
        for shape in shapes
    }
    header = ["shape", "server", "CPU µs/delivery", "min–max", "writes/delivery", "÷ floor a", "÷ floor b"]
    rows = [[*header, "p50/p99 ms", "to the last"]]
    for shape in shapes:
        for name in servers:
            figures = summary.get(shape, {}).get(name, {})
            low_high = "–".join(number(v) for v in spread(runs, shape, name))
            vs = ratios[shape].get(name, {})
            rows.append(
                [
                    shape,
                    name,
                    number(figures.get("server_cpu_us_per_op")),
                    low_high,
                    number(figures.get("writes_per_delivery")),
                    times(vs.get("floor-a")),
                    times(vs.get("floor-b")),
                    f"{number(figures.get('p50_ms'))}/{number(figures.get('p99_ms'))}",
                    f"{number(figures.get('last_p50_ms'))}/{number(figures.get('last_p99_ms'))}",
                ]
            )
    print(common.text_table(rows))
    server_cpus, loadgen_cpus = common.placement(1)
    pinning = {"server": sorted(server_cpus or []), "loadgen": sorted(loadgen_cpus or [])}
    meta: dict[str, Any] = {"pinning": pinning, "settings": asdict(workload)}
    if args.baseline:
        meta["baseline"] = subprocess.run(
            ["git", "-C", str(args.baseline), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    packages = ["starlette", "uvicorn", "websockets", "uvloop", "fastapi"]
    common.write_results(args.out, started, packages, meta, summary, ratios, runs)


if __name__ == "__main__":
    main()
