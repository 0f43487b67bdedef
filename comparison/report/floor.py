"""Chat fan-out against the bare floor (floor_bench.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comparison.report.markdown import number, pinning, relative, table, times

SERVERS = ("floor-a", "floor-b", "starlette-ws", "baseline", "fastapi-same-stack", "fastapi")
SHAPES = ("paced", "paced-3", "burst", "burst-3")
OURS = "starlette-ws"

# (goal, shape, floor, bound): starlette-ws's server CPU per delivery ÷ the floor's, at most `bound`
GOALS = (
    ("paced, 1 sender: ≤ 1.25× floor a", "paced", "floor-a", 1.25),
    ("paced, 3 senders: ≤ 1.5× floor b", "paced-3", "floor-b", 1.5),
    ("burst, 1 sender: ≤ 5× floor b", "burst", "floor-b", 5.0),
    ("burst, 3 senders: ≤ 5× floor b", "burst-3", "floor-b", 5.0),
)
WRITES_GOAL = 0.8  # paced, 3 senders: write system calls per delivery


def floor_section(data: dict[str, Any] | None, path: Path) -> str:
    if data is None:
        return f"No results: `python -m comparison.floor_bench` writes {relative(path)}."
    meta, summary, ratios = data["meta"], data["medians"], data.get("ratios", {})
    settings = meta["settings"]
    pinned = pinning(meta)
    parts = [
        f"Measured by `python -m comparison.floor_bench` ({meta['date']}): {settings['receivers']} chat receivers; "
        f"one sender saying {settings['messages']} lines paced ({settings['rate']:g}/s) or back to back (burst), "
        "and the same with three senders in lockstep (`-3`, each saying as many); "
        f"server on CPU {pinned.get('server', 'any')}, load generator on CPU {pinned.get('loadgen', 'any')}. "
        "Floor a is `comparison/floor_server.py`, a bare uvloop server writing a pre-built frame to each member "
        "once per message; floor b joins what a member is given in one loop iteration into one write. "
        "starlette-ws as `make run` serves it; FastAPI's tutorial twice: on the same protocols "
        "(`fastapi-same-stack`: what differs is the app) and as its tutorial serves it, on uvicorn's own "
        "(`fastapi`). The load clients offer no compression, so deflate is off for every server. Writes are the "
        "server's write system calls (`syscw`) per delivery. Latency: from the send to each arrival (p50/p99 "
        "over every delivery), and to the last member of each line (p50/p99 over lines). Medians of "
        f"{settings['rounds']} round(s), the servers' order rotating; the ratios are medians of each round's."
        + (
            f" `baseline` is starlette-ws at {meta['baseline']}, before this path was built, in the same run."
            if meta.get("baseline")
            else ""
        ),
        "",
    ]
    rows = []
    for shape in SHAPES:
        for name in SERVERS:
            runs = [
                run["figures"]["server_cpu_us_per_op"]
                for run in data.get("runs", [])
                if run["scenario"] == shape and run["config"] == name and "figures" in run
            ]
            figures = summary.get(shape, {}).get(name, {})
            if not figures:
                continue
            vs = ratios.get(shape, {}).get(name, {})
            rows.append(
                [
                    shape,
                    name,
                    number(figures.get("server_cpu_us_per_op")),
                    f"{number(min(runs))}–{number(max(runs))}" if runs else "",
                    number(figures.get("writes_per_delivery")),
                    times(vs.get("floor-a")) if vs else "",
                    times(vs.get("floor-b")) if vs else "",
                    f"{number(figures.get('p50_ms'))} / {number(figures.get('p99_ms'))}",
                    f"{number(figures.get('last_p50_ms'))} / {number(figures.get('last_p99_ms'))}",
                ]
            )
    header = ["shape", "server", "CPU µs per delivery", "min–max", "writes per delivery", "÷ floor a", "÷ floor b"]
    parts.append(table([*header, "latency ms p50 / p99", "to the last member"], rows, right=range(2, 9)))
    parts += ["", "Goals (starlette-ws's CPU per delivery ÷ the floor's, paired by round):", ""]
    verdicts = []
    for goal, shape, floor, bound in GOALS:
        found = ratios.get(shape, {}).get(OURS, {}).get(floor)
        verdicts.append([goal, times(found), verdict(found, bound)])
    writes = summary.get("paced-3", {}).get(OURS, {}).get("writes_per_delivery")
    verdicts.append(
        [f"paced, 3 senders: ≤ {WRITES_GOAL:g} writes per delivery", number(writes), verdict(writes, WRITES_GOAL)]
    )
    parts.append(table(["goal", "measured", "met"], verdicts))
    return "\n".join(parts)


def verdict(value: float | None, bound: float) -> str:
    if value is None:
        return "no figure"
    return "yes" if value <= bound else "**no**"
