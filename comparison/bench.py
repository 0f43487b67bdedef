"""Benchmark starlette-ws against FastAPI's tutorial (and a bare ASGI echo as the floor).

Run from the repository root: ``python -m comparison.bench [--rounds N] [--quick]``.

Every (round, scenario, app) gets a fresh uvicorn subprocess with the same options (the
protocols `make run` serves with, ``common.PROTOCOLS``, for every app), so no run inherits
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
import contextlib
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from comparison import common, loadgen
from comparison.common import accepts, clean, free_port, number, stop_process
from comparison.loadgen import Figures

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "comparison" / "results"
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
class Settings:
    echo_seconds: float
    echo_clients: int
    items_seconds: float
    items_workers: int
    broadcast_messages: int
    broadcast_rate: float
    burst_messages: int  # unpaced; with the warm-up's, under the chat's flood burst (CHAT_RATE_BURST, 200)
    rss_counts: tuple[int, ...]


FULL = Settings(3.0, 50, 3.0, 20, 60, 20.0, 150, (1000, 5000))
QUICK = Settings(1.0, 50, 1.0, 20, 10, 20.0, 150, (1000, 5000))


@dataclass(frozen=True)
class Scenario:
    name: str
    apps: tuple[str, ...]
    run: Callable[[str, int, Settings], Figures]  # (base URL, server PID, settings)
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


def server_command(app: str, port: int, workers: int, profile: Path | None = None) -> list[str]:
    """uvicorn's command line; with `profile`, run under cProfile, its statistics written there on exit."""
    command = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else [])]
    command += ["-m", "uvicorn", APPS[app], "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", *(() if app == TUTORIAL else common.PROTOCOLS)]
    return command + (["--workers", str(workers)] if workers > 1 else [])


def wait_for_port(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
        if accepts(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not accept on port {port} within {START_TIMEOUT} s")


def app_env(app: str, metrics_dir: str) -> dict[str, str]:
    """The server's environment: ours counts by default; the variants switch that."""
    if app == METRICS_OFF:
        return {**os.environ, "METRICS": "false"}
    if app == MULTIPROCESS:
        return {**os.environ, "METRICS": "true", "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    return {**os.environ, "METRICS": "true"}


def start_server(
    app: str,
    port: int,
    workers: int,
    cpus: set[int] | None,
    log: Path,
    env: dict[str, str],
    profile: Path | None = None,
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            server_command(app, port, workers, profile),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if cpus:
        os.sched_setaffinity(proc.pid, cpus)
    try:
        wait_for_port(proc, port, log)
    except BaseException:
        stop_process(proc, STOP_TIMEOUT)
        raise
    return proc


def importable(app: str) -> str | None:
    """None when the app's module imports in a fresh interpreter, else the last error line."""
    module, attribute = APPS[app].split(":")
    code = f"from {module} import {attribute}"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if done.returncode == 0:
        return None
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


# -- CPU placement ---------------------------------------------------------------------------


def placement(workers: int) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load generator CPUs), or (None, None) when nothing is pinned."""
    available = os.sched_getaffinity(0)
    if os.environ.get("BENCH_PIN", "1") == "0" or workers > 1 or len(available) < 2:
        return None, None
    server = {min(available)}
    return server, available - server


# -- one run ---------------------------------------------------------------------------------


def profile_path(app: str, scenario: str, round_: int) -> Path | None:
    """Where the server's cProfile statistics go when BENCH_PROFILE names a directory."""
    directory = os.environ.get("BENCH_PROFILE")
    if not directory:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    return Path(directory) / f"{app}-{scenario}-{round_}.prof"


def run_once(
    scenario: Scenario, app: str, settings: Settings, workers: int, logs: Path, round_: int = 1
) -> dict[str, Any]:
    server_cpus, loadgen_cpus = placement(workers)
    everything = os.sched_getaffinity(0)
    port = free_port()
    profile = profile_path(app, scenario.name, round_)
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as metrics_dir:
        env = app_env(app, metrics_dir)
        log = logs / f"{app}-{scenario.name}.log"
        proc = start_server(app, port, workers, server_cpus, log, env, profile)
        started = time.perf_counter()
        try:
            mine = server_cpus if scenario.same_cpu else loadgen_cpus
            if mine:
                os.sched_setaffinity(0, mine)  # inherited by the load generator's processes
            figures = scenario.run(f"ws://127.0.0.1:{port}", proc.pid, settings)
        finally:
            os.sched_setaffinity(0, everything)
            # uvicorn re-raises SIGTERM after its shutdown; SIGINT ends in KeyboardInterrupt: cProfile writes.
            if profile:
                proc.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=STOP_TIMEOUT * 5)
            stop_process(proc, STOP_TIMEOUT)
    seconds = time.perf_counter() - started
    return {"figures": figures, "seconds": seconds, "loadavg_1min": os.getloadavg()[0]}


def progress(step: str, scenario: str, app: str, outcome: dict[str, Any]) -> None:
    if "error" in outcome:
        detail = f"ERROR {outcome['error']}"
    else:
        figures = " ".join(f"{k}={number(v)}" for k, v in outcome["figures"].items())
        detail = f"{figures} ({outcome['seconds']:.1f} s, load {outcome['loadavg_1min']:.1f})"
    print(f"[{step}] {scenario:<15} {app:<13} {detail}", flush=True)


# -- summary ---------------------------------------------------------------------------------


def lower_is_better(metric: str) -> bool:
    return not (metric.endswith("_per_s") or metric == "delivered")


def medians(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{scenario: {app: {metric: median over rounds}}}; NaN samples are left out."""
    samples: dict[str, dict[str, dict[str, list[float]]]] = {}
    for run in runs:
        for metric, value in run.get("figures", {}).items():
            if not math.isnan(value):
                by_app = samples.setdefault(run["scenario"], {}).setdefault(run["app"], {})
                by_app.setdefault(metric, []).append(value)
    return {
        scenario: {
            app: {metric: statistics.median(values) for metric, values in metrics.items()}
            for app, metrics in by_app.items()
        }
        for scenario, by_app in samples.items()
    }


def ratio(table: dict[str, dict[str, float]], metric: str, other: str, ours: str = OURS) -> float | None:
    mine = table.get(ours, {}).get(metric)
    theirs = table.get(other, {}).get(metric)
    if mine is None or theirs is None or theirs == 0:
        return None
    return mine / theirs


COUNTING_METRICS = ("server_cpu_us_per_op", "round_trips_per_s", "p50_us")


def counting_cost(summary: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """{scenario: {variant/metrics-off: {metric: ratio}}} for the echo scenarios that ran both."""
    result: dict[str, Any] = {}
    for scenario, table in summary.items():
        if METRICS_OFF not in table:
            continue
        for variant in (OURS, MULTIPROCESS):
            if variant in table:
                pairs = {metric: ratio(table, metric, METRICS_OFF, variant) for metric in COUNTING_METRICS}
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
            pairs = {f"{OURS}/{other}": ratio(table, metric, other) for other in (REFERENCE, FLOOR, TUTORIAL)}
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
            row += [number(ratio(table, metric, other)) for other in others]
            rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print()
    print("Medians per scenario and app (ratios: starlette-ws divided by the other app)")
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if column < 3 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def versions() -> dict[str, str]:
    return common.versions(("starlette", "fastapi", "uvicorn", "websockets", "uvloop", "httptools"))


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
    settings = QUICK if args.quick else FULL
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
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    for number_ in range(1, rounds + 1):
        for scenario in scenarios:
            for app in [app for app in apps if app in scenario.apps]:
                try:
                    outcome = run_once(scenario, app, settings, workers, logs, number_)
                except Exception as error:  # one failed run must not end the study
                    outcome = {"error": f"{type(error).__name__}: {error}"}
                progress(f"{number_}/{rounds}", scenario.name, app, outcome)
                runs.append({"round": number_, "scenario": scenario.name, "app": app, **outcome})
    summary = medians(runs)
    print_table(summary, apps)
    cost = counting_cost(summary)
    print_counting_cost(cost)
    report = {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "versions": versions(),
            "workers": workers,
            "pinning": {"server": sorted(server_cpus or []), "loadgen": sorted(loadgen_cpus or [])},
            "rounds": rounds,
            "settings": asdict(settings),
            "apps": {app: APPS[app] for app in apps},
            "notes": notes,
            "seconds": time.perf_counter() - started,
        },
        "runs": runs,
        "medians": summary,
        "ratios": ratios(summary),
        "counting_cost": cost,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(clean(report), indent=2) + "\n")
    print(f"\nraw figures: {args.out} ({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
