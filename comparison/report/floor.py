"""Chat fan-out against the bare floor (floor_bench.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comparison.report.markdown import number, pinning, relative, table, times

SERVERS = ("floor-a", "floor-b", "starlette-ws", "fastapi")


def floor_section(data: dict[str, Any] | None, path: Path) -> str:
    if data is None:
        return f"No results: `python -m comparison.floor_bench` writes {relative(path)}."
    meta, summary, ratios = data["meta"], data["medians"], data.get("ratios", {})
    settings = meta["settings"]
    pinned = pinning(meta)
    parts = [
        f"Measured by `python -m comparison.floor_bench` ({meta['date']}): {settings['receivers']} chat receivers, "
        f"one sender saying {settings['messages']} lines paced ({settings['rate']:g}/s) or back to back (burst); "
        f"server on CPU {pinned.get('server', 'any')}, load generator on CPU {pinned.get('loadgen', 'any')}. "
        "Floor a is `comparison/floor_server.py`, a bare uvloop server writing a pre-built frame to each member "
        "once per message; floor b joins what a member is given in one loop iteration into one write. "
        "starlette-ws as `make run` serves it; FastAPI's tutorial on uvicorn's own protocols. Writes are the "
        "server's write system calls (`syscw`) per delivery. Medians of "
        f"{settings['rounds']} round(s), the servers' order rotating; the ratios are medians of each round's.",
        "",
    ]
    rows = []
    for shape in ("paced", "burst"):
        for name in SERVERS:
            runs = [
                run["figures"]["server_cpu_us_per_op"]
                for run in data.get("runs", [])
                if run["scenario"] == shape and run["config"] == name and "figures" in run
            ]
            figures = summary.get(shape, {}).get(name, {})
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
                ]
            )
    header = ["shape", "server", "CPU µs per delivery", "min–max", "writes per delivery", "÷ floor a", "÷ floor b"]
    parts.append(table(header, rows, right=range(2, 7)))
    return "\n".join(parts)
