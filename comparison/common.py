"""What the benchmark scripts share: figures as text, the JSON they write, the run's metadata, CPU placement."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.git import commit

# The report builder (comparison/report.py) still imports these three from here.
from harness.net import accepts as accepts
from harness.net import free_port as free_port
from harness.net import stop_process as stop_process
from harness.servers import ROOT

RESULTS = ROOT / "comparison" / "results"


def number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def clean(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean(item) for item in value]
    return value


def versions(names: Iterable[str]) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine(packages: Iterable[str]) -> dict[str, Any]:
    """The run's date, the commit it measured, the interpreter, the system and the versions of `packages`."""
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions(packages),
    }


def placement(workers: int) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load generator CPUs): with one worker and two CPUs or more, the server gets the
    first and the load generator the others; (None, None) when nothing is pinned (BENCH_PIN=0)."""
    available = os.sched_getaffinity(0)
    if os.environ.get("BENCH_PIN", "1") == "0" or workers > 1 or len(available) < 2:
        return None, None
    server = {min(available)}
    return server, available - server


def outcome_line(outcome: dict[str, Any]) -> str:
    """One run's figures (or its error) for the progress lines."""
    if "error" in outcome:
        return f"ERROR {outcome['error']}"
    figures = " ".join(f"{k}={number(v)}" for k, v in outcome["figures"].items())
    return f"{figures} ({outcome['seconds']:.1f} s, load {outcome['loadavg_1min']:.1f})"


def text_table(rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """Aligned columns, the first `left` of them to the left, a rule under the header row."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def logs_dir() -> Path:
    """Where the servers' logs go (created on first use)."""
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs


def write_results(
    out: Path,
    started: float,
    packages: Iterable[str],
    meta: dict[str, Any],
    summary: dict[str, Any],
    ratios: dict[str, Any],
    runs: list[dict[str, Any]],
) -> None:
    """A benchmark's result file: the machine and `meta` (pinning, settings, ...), how long it took,
    the medians, the ratios and every run."""
    machine_meta = {**machine(packages), **meta, "seconds": time.perf_counter() - started}
    write_json(out, {"meta": machine_meta, "medians": summary, "ratios": ratios, "runs": runs}, started)


def write_json(out: Path, report: dict[str, Any], started: float) -> None:
    """Write the raw figures (NaN as null) and say where, with the time the whole run took."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(clean(report), indent=2) + "\n")
    print(f"\nraw figures: {out} ({time.perf_counter() - started:.0f} s in all)")
