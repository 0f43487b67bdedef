"""The benchmark (bench.json): the machine it ran on, the medians, the broadcast scenarios side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comparison.report.charts import Chart
from comparison.report.markdown import number, relative, scrub, table, times
from comparison.report.results import (
    FLOOR,
    OURS,
    REFERENCE,
    TUTORIAL,
    Medians,
    cross_ratio,
    median_or_none,
    ratio,
    value,
)
from comparison.stats import lower_is_better

CPU = "server_cpu_us_per_op"


def machine_section(bench: dict[str, Any], environment: dict[str, Any] | None) -> str:
    meta = bench.get("meta", {})
    machine = (environment or {}).get("machine", {})
    versions = ", ".join(f"{name} {version}" for name, version in meta.get("versions", {}).items())
    loads = [run["loadavg_1min"] for run in bench.get("runs", []) if "loadavg_1min" in run]
    pinning = meta.get("pinning", {})
    cpu = f"{machine.get('cpu_model', 'unknown')}, {machine.get('logical_cpus', '?')} logical CPUs"
    rows = [
        ["CPU", f"{cpu} (bench saw {meta.get('cpus', '?')})"],
        ["memory", machine.get("memory", "unknown")],
        ["system", meta.get("platform", "?")],
        ["Python", meta.get("python", "?")],
        ["packages", versions or "-"],
        ["run", f"{meta.get('date', '?')}, {meta.get('rounds', '?')} round(s), {meta.get('seconds', 0):.0f} s"],
        ["settings", ", ".join(f"{k}={v}" for k, v in meta.get("settings", {}).items()) or "-"],
        [
            "placement",
            f"server CPUs {pinning.get('server') or 'any'}, load generator {pinning.get('loadgen') or 'any'}",
        ],
        ["uvicorn workers", str(meta.get("workers", "?"))],
        ["1-min load average", f"median {number(median_or_none(loads))}, max {number(max(loads, default=None))}"],
    ]
    return table(["", "this run"], rows)


HOW_TO_READ = (
    "**How to read these figures.** Every figure is the median over the rounds of one run (a fresh uvicorn "
    "process per round, scenario and app; apps interleaved). The machine is a small shared VM (see above) "
    "where other work runs at the same time, so throughput and latency figures move by tens of percent "
    "between runs; a ratio within about ±10% of 1.0 is not a difference. `server_cpu_us_per_op` (the "
    "server's CPU time per round trip, session or delivery) is the steadier figure: it does not depend on "
    "how long the server waited for a CPU. Ratios divide starlette-ws by the other app; for figures where "
    "lower is better (latencies, CPU, bytes) a ratio below 1.0 is in our favour."
)


def bench_rows(medians: Medians) -> list[list[str]]:
    rows = []
    for scenario, by_app in medians.items():
        metrics = list(dict.fromkeys(metric for app in (OURS, REFERENCE, FLOOR) for metric in by_app.get(app, {})))
        for metric in metrics:
            row = [scenario, f"`{metric}`", "lower" if lower_is_better(metric) else "higher"]
            row += [number(value(medians, scenario, app, metric)) for app in (OURS, REFERENCE, FLOOR)]
            row += [times(ratio(medians, scenario, metric, other)) for other in (REFERENCE, FLOOR)]
            rows.append(row)
    return rows


def failed_runs(bench: dict[str, Any]) -> list[str]:
    return [
        f"round {run.get('round')} {run.get('scenario')} {run.get('app')}: {scrub(str(run['error']))}"
        for run in bench.get("runs", [])
        if "error" in run
    ]


def bench_section(
    bench: dict[str, Any] | None, environment: dict[str, Any] | None, path: Path, charts: list[Chart]
) -> str:
    if bench is None:
        return f"No benchmark results: `{relative(path)}` does not exist (run `python -m comparison.bench`)."
    medians: Medians = bench.get("medians", {})
    header = ["scenario", "metric", "better", OURS, REFERENCE, FLOOR, f"{OURS}/{REFERENCE}", f"{OURS}/{FLOOR}"]
    parts = [
        f"From `{relative(path)}`.",
        "",
        "### Machine",
        "",
        machine_section(bench, environment),
        "",
        HOW_TO_READ,
        "",
        "### Medians",
        "",
        table(header, bench_rows(medians), right=(3, 4, 5, 6, 7)),
    ]
    broadcast = broadcast_section(medians)
    if broadcast:
        parts += ["", "### Broadcast: paced, unpaced, one stalled client", "", broadcast]
    problems = failed_runs(bench) + list(bench.get("meta", {}).get("notes", []))
    if problems:
        parts += ["", "Runs that failed or were skipped:", "", *(f"- {problem}" for problem in problems)]
    parts += ["", "### Charts", ""]
    parts += [f"![{chart.title}](charts/{chart.file})" for chart in charts]
    return "\n".join(parts)


BROADCASTS = (  # (scenario, the sender, receivers)
    ("broadcast-100", "paced, 20/s", "100"),
    ("broadcast-1000", "paced, 20/s", "1000"),
    ("burst-200", "unpaced", "200"),
    ("burst-1000", "unpaced", "1000"),
    ("stalled-1000", "unpaced", "1000 + 1 that never reads"),
)


def pair(medians: Medians, scenario: str, metric: str) -> str:
    """`ours / FastAPI's` of one metric, e.g. `12.0 / 14.1`."""
    return f"{number(value(medians, scenario, OURS, metric))} / {number(value(medians, scenario, REFERENCE, metric))}"


def broadcast_section(medians: Medians) -> str:
    """The chat broadcast scenarios side by side: the sender paced or not, and one client that never reads."""
    rows = []
    for scenario, sender, receivers in BROADCASTS:
        if scenario not in medians:
            continue
        rows.append(
            [
                f"`{scenario}`",
                sender,
                receivers,
                pair(medians, scenario, CPU),
                times(ratio(medians, scenario, CPU, REFERENCE)),
                times(ratio(medians, scenario, CPU, TUTORIAL)),
                times(ratio(medians, scenario, "deliveries_per_s", REFERENCE)),
                pair(medians, scenario, "p50_ms"),
                pair(medians, scenario, "p99_ms"),
                pair(medians, scenario, "delivered"),
            ]
        )
    if not rows:
        return ""
    header = [
        "scenario",
        "sender",
        "receivers",
        "server CPU µs per delivery (ours / FastAPI)",
        "CPU ratio",
        "CPU ratio, FastAPI on uvicorn's protocols",
        "deliveries/s ratio",
        "p50 ms",
        "p99 ms",
        "delivered",
    ]
    lines = [
        "One chat sender, the receivers spread over load-generator processes (raw clients), the server on "
        "its own CPU. Paced: 20 messages/s, well inside what both servers deliver, so deliveries/s is the "
        "offered load on both and server CPU per delivery is the figure that tells them apart. Unpaced: the "
        "sender's lines go back to back (each send awaited), under the chat's flood burst of 200. Stalled: the "
        "unpaced 1000 plus one chat client that never reads (a 4 KiB receive buffer); its messages are not "
        "counted. Ratios: starlette-ws / FastAPI.",
        "",
        table(header, rows, right=(3, 4, 5, 6, 7, 8, 9)),
        "",
        "Every app is served on the protocols `make run` serves starlette-ws with (`starlette_ws/protocol.py`), "
        "so the CPU ratio is the apps' difference alone. Those protocols write a text frame straight to the "
        "socket, built once per broadcast, and that write (a system call per delivery, ~10 µs here) is most of "
        "what both apps pay. The next column serves FastAPI's twin on uvicorn's own protocols instead, as its "
        "tutorial runs it (`fastapi-uvicorn`): what a user gets from each.",
    ]
    stalled = cross_ratio(medians, "stalled-1000", "burst-1000", CPU)
    if stalled is not None:
        p99 = cross_ratio(medians, "stalled-1000", "burst-1000", "p99_ms")
        delivered = value(medians, "stalled-1000", OURS, "delivered")
        lines += [
            "",
            f"What one stalled client costs starlette-ws (`stalled-1000` / `burst-1000`, ours alone): server CPU per "
            f"delivery {times(stalled)}, p99 latency {times(p99)}, {number(delivered)} of the others' messages "
            "delivered.",
        ]
    return "\n".join(lines)
