"""Benchmark starlette-ws against FastAPI's tutorial (and a bare ASGI echo as the floor).

Run from the repository root: ``python -m comparison.bench [--rounds N] [--quick]``.

Every (round, scenario, app) gets a fresh uvicorn subprocess with the same options (the
protocols `make run` serves with, ``harness.servers.PROTOCOL_ARGS``, for every app), so no run inherits
another's memory or leftover connections and the figures differ by the apps alone. Rounds interleave the apps
(ours, FastAPI, bare; again ...) and the summary uses medians, so a noisy moment on the
machine moves one sample, not the verdict. Raw figures go to comparison/results/bench.json.

Environment:
  BENCH_WORKERS  uvicorn worker processes per server (default 1). The reference chat keeps
                 its connections in one process's memory, so with more than one worker its
                 broadcast figures show the missing deliveries.
  BENCH_PIN      1 (default): with one worker and two or more CPUs, the server runs on CPU 0
                 and the load generator on the others; the 1-client echo shares CPU 0 with the
                 server, so it measures the code path, not the VM's cross-CPU wake-up delay.

What counting costs: the echo scenarios also run our app with METRICS=false (nothing counted)
and with prometheus_client's multiprocess mode (values in files, as `make run WORKERS=N` has
them); the summary ends with their ratios to our app as it runs by default.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from comparison import common, loadgen
from comparison.common import RESULTS, number, placement
from comparison.loadgen import Figures
from comparison.stats import lower_is_better, medians, ratio
from harness.servers import ROOT, UvicornServer

OURS, REFERENCE, FLOOR = "starlette-ws", "fastapi", "bare"
# FastAPI's twin as its tutorial runs it, on uvicorn's own protocols: starlette-ws as `make run`
# serves it against FastAPI as one would serve it, beside the same-stack comparison above.
TUTORIAL = "fastapi-uvicorn"
METRICS_OFF, MULTIPROCESS = "starlette-ws-metrics-off", "starlette-ws-multiprocess"
APPS = {
    OURS: "starlette_ws.app:app",
    REFERENCE: "comparison.fastapi_app:app",
    TUTORIAL: "comparison.fastapi_app:app",
    FLOOR: "comparison.bare_app:app",
    METRICS_OFF: "starlette_ws.app:app",
    MULTIPROCESS: "starlette_ws.app:app",
}
ECHO_APPS = (OURS, REFERENCE, FLOOR, METRICS_OFF, MULTIPROCESS)
START_TIMEOUT = 20.0
STOP_TIMEOUT = 3.0


@dataclass(frozen=True)
class Workload:
    """How long and how hard each scenario runs (--quick: QUICK)."""

    echo_seconds: float
    echo_clients: int
    items_seconds: float
    items_workers: int
    broadcast_messages: int
    broadcast_rate: float
    burst_messages: int  # unpaced; with the warm-up's, under the chat's flood burst (CHAT_RATE_BURST, 200)
    rss_counts: tuple[int, ...]


FULL = Workload(3.0, 50, 3.0, 20, 60, 20.0, 150, (1000, 5000))
QUICK = Workload(1.0, 50, 1.0, 20, 10, 20.0, 150, (1000, 5000))


@dataclass(frozen=True)
class Scenario:
    name: str
    apps: tuple[str, ...]
    run: Callable[[str, int, Workload], Figures]  # (base URL, server PID, workload)
    same_cpu: bool = False  # the load generator shares the server's CPU


SCENARIOS = [
    Scenario(
        "echo-1",
        ECHO_APPS,
        lambda url, pid, s: loadgen.echo_round_trips(url, 1, s.echo_seconds, pid),
        same_cpu=True,
    ),
    Scenario(
        "echo-50",
        ECHO_APPS,
        lambda url, pid, s: loadgen.echo_round_trips(url, s.echo_clients, s.echo_seconds, pid),
    ),
    Scenario(
        "items",
        (OURS, REFERENCE),
        lambda url, pid, s: loadgen.items_sessions(url, s.items_workers, s.items_seconds, pid),
    ),
    Scenario(
        "broadcast-100",
        (OURS, REFERENCE),
        lambda url, pid, s: loadgen.broadcast_fanout(url, 100, s.broadcast_messages, s.broadcast_rate, server_pid=pid),
    ),
    Scenario(
        "broadcast-1000",
        (OURS, REFERENCE),
        lambda url, pid, s: loadgen.broadcast_fanout(url, 1000, s.broadcast_messages, s.broadcast_rate, server_pid=pid),
    ),
    Scenario(
        "burst-200",
        (OURS, REFERENCE, TUTORIAL),
        lambda url, pid, s: loadgen.broadcast_fanout(url, 200, s.burst_messages, None, server_pid=pid),
    ),
    Scenario(
        "burst-1000",
        (OURS, REFERENCE, TUTORIAL),
        lambda url, pid, s: loadgen.broadcast_fanout(url, 1000, s.burst_messages, None, server_pid=pid),
    ),
    Scenario(
        "stalled-1000",
        (OURS, REFERENCE),
        lambda url, pid, s: loadgen.broadcast_fanout(url, 1000, s.burst_messages, None, server_pid=pid, stalled=1),
    ),
    Scenario(
        "rss",
        (OURS, REFERENCE),
        lambda url, pid, s: loadgen.rss_per_connection(url, pid, s.rss_counts),
    ),
]


# -- servers ---------------------------------------------------------------------------------


def app_env(app: str, metrics_dir: str) -> dict[str, str]:
    """What the server's environment adds: ours counts by default; the variants switch that."""
    if app == METRICS_OFF:
        return {"METRICS": "false"}
    if app == MULTIPROCESS:
        return {"METRICS": "true", "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    return {"METRICS": "true"}


def importable(app: str) -> str | None:
    """None when the app's module imports in a fresh interpreter, else the last error line."""
    module, attribute = APPS[app].split(":")
    code = f"from {module} import {attribute}"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if done.returncode == 0:
        return None
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


# -- one run ---------------------------------------------------------------------------------


def profile_path(app: str, scenario: str, round_: int) -> Path | None:
    """Where the server's cProfile statistics go when BENCH_PROFILE names a directory."""
    directory = os.environ.get("BENCH_PROFILE")
    if not directory:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    return Path(directory) / f"{app}-{scenario}-{round_}.prof"


def run_once(
    scenario: Scenario, app: str, workload: Workload, workers: int, logs: Path, round_: int = 1
) -> dict[str, Any]:
    server_cpus, loadgen_cpus = placement(workers)
    everything = os.sched_getaffinity(0)
    profile = profile_path(app, scenario.name, round_)
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as metrics_dir:
        server = UvicornServer(
            APPS[app],
            env=app_env(app, metrics_dir),
            workers=workers,
            cpus=server_cpus,
            log_level="warning",
            profile=profile,
            log_path=logs / f"{app}-{scenario.name}.log",
            protocols=app != TUTORIAL,
            start_timeout=START_TIMEOUT,
            # uvicorn re-raises SIGTERM after its shutdown; under cProfile it gets SIGINT and more time to write.
            stop_timeout=STOP_TIMEOUT * 5 if profile else STOP_TIMEOUT,
        )
        server.start()
        started = time.perf_counter()
        try:
            mine = server_cpus if scenario.same_cpu else loadgen_cpus
            if mine:
                os.sched_setaffinity(0, mine)  # inherited by the load generator's processes
            figures = scenario.run(server.ws_url, server.pid, workload)
        finally:
            os.sched_setaffinity(0, everything)
            server.stop()
    seconds = time.perf_counter() - started
    return {"figures": figures, "seconds": seconds, "loadavg_1min": os.getloadavg()[0]}


def progress(step: str, scenario: str, app: str, outcome: dict[str, Any]) -> None:
    print(f"[{step}] {scenario:<15} {app:<13} {common.outcome_line(outcome)}", flush=True)


# -- summary ---------------------------------------------------------------------------------


def versus(table: dict[str, dict[str, float]], metric: str, other: str, ours: str = OURS) -> float | None:
    """`ours` divided by `other` in one scenario's table of medians."""
    return ratio(table.get(ours, {}).get(metric), table.get(other, {}).get(metric))


COUNTING_METRICS = ("server_cpu_us_per_op", "round_trips_per_s", "p50_us")


def counting_cost(summary: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """{scenario: {variant/metrics-off: {metric: ratio}}} for the echo scenarios that ran both."""
    result: dict[str, Any] = {}
    for scenario, table in summary.items():
        if METRICS_OFF not in table:
            continue
        for variant in (OURS, MULTIPROCESS):
            if variant in table:
                pairs = {metric: versus(table, metric, METRICS_OFF, variant) for metric in COUNTING_METRICS}
                result.setdefault(scenario, {})[f"{variant}/{METRICS_OFF}"] = pairs
    return result


def print_counting_cost(cost: dict[str, Any]) -> None:
    if not cost:
        return
    print()
    print("What counting costs (medians; metrics on divided by METRICS=false)")
    for scenario, pairs in cost.items():
        for pair, ratios_ in pairs.items():
            figures = "  ".join(f"{metric} {number(value)}" for metric, value in ratios_.items())
            print(f"  {scenario:<8} {pair:<45} {figures}")


def ratios(summary: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for scenario, table in summary.items():
        metrics = sorted({metric for values in table.values() for metric in values})
        for metric in metrics:
            pairs = {f"{OURS}/{other}": versus(table, metric, other) for other in (REFERENCE, FLOOR, TUTORIAL)}
            result.setdefault(scenario, {})[metric] = pairs
    return result


def print_table(summary: dict[str, dict[str, dict[str, float]]], apps: list[str]) -> None:
    others = (REFERENCE, FLOOR, TUTORIAL)
    header = ["scenario", "metric", "better", *apps, *(f"{OURS}/{other}" for other in others)]
    rows = [header]
    for scenario, table in summary.items():
        metrics = list(dict.fromkeys(m for app in apps for m in table.get(app, {})))
        for metric in metrics:
            row = [scenario, metric, "lower" if lower_is_better(metric) else "higher"]
            row += [number(table.get(app, {}).get(metric)) for app in apps]
            row += [number(versus(table, metric, other)) for other in others]
            rows.append(row)
    print()
    print("Medians per scenario and app (ratios: starlette-ws divided by the other app)")
    print(common.text_table(rows, left=3))


PACKAGES = ("starlette", "fastapi", "uvicorn", "websockets", "uvloop", "httptools")


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="starlette-ws vs FastAPI vs bare ASGI")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (--quick: 1)")
    parser.add_argument("--quick", action="store_true", help="short durations: a smoke run")
    parser.add_argument("--apps", default=",".join(APPS), help="comma-separated subset")
    parser.add_argument(
        "--scenarios", "--only", dest="scenarios", default=",".join(s.name for s in SCENARIOS), help="comma-separated"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "bench.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    workload = QUICK if args.quick else FULL
    workers = int(os.environ.get("BENCH_WORKERS", "1"))
    apps = [app for app in args.apps.split(",") if app in APPS]
    notes = []
    for app in list(apps):
        problem = importable(app)
        if problem:
            apps.remove(app)
            notes.append(f"{app} skipped: {APPS[app]} does not import ({problem})")
    if workers > 1:
        notes.append(f"{workers} workers: the reference chat cannot broadcast across processes")
    for note in notes:
        print(f"note: {note}", flush=True)
    wanted = args.scenarios.split(",")
    scenarios = [s for s in SCENARIOS if s.name in wanted]
    server_cpus, loadgen_cpus = placement(workers)
    print(
        f"{rounds} round(s), {workers} worker(s), server CPUs {server_cpus or 'any'}, "
        f"load generator CPUs {loadgen_cpus or 'any'}",
        flush=True,
    )
    loadgen.raise_nofile(65536)
    logs = common.logs_dir()
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    for number_ in range(1, rounds + 1):
        for scenario in scenarios:
            for app in [app for app in apps if app in scenario.apps]:
                try:
                    outcome = run_once(scenario, app, workload, workers, logs, number_)
                except Exception as error:  # one failed run must not end the study
                    outcome = {"error": f"{type(error).__name__}: {error}"}
                progress(f"{number_}/{rounds}", scenario.name, app, outcome)
                runs.append({"round": number_, "scenario": scenario.name, "app": app, **outcome})
    summary = medians(runs, "scenario", "app")
    print_table(summary, apps)
    cost = counting_cost(summary)
    print_counting_cost(cost)
    report = {
        "meta": {
            **common.machine(PACKAGES),
            "workers": workers,
            "pinning": {"server": sorted(server_cpus or []), "loadgen": sorted(loadgen_cpus or [])},
            "rounds": rounds,
            "settings": asdict(workload),
            "apps": {app: APPS[app] for app in apps},
            "notes": notes,
            "seconds": time.perf_counter() - started,
        },
        "runs": runs,
        "medians": summary,
        "ratios": ratios(summary),
        "counting_cost": cost,
    }
    common.write_json(args.out, report, started)


if __name__ == "__main__":
    main()
