"""Targets: the ratios the project aims at, and whether the benchmark medians meet them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comparison.report.markdown import table, times
from comparison.report.results import FLOOR, OURS, REFERENCE, TUTORIAL, Medians, cross_ratio, ratio

CPU = "server_cpu_us_per_op"


@dataclass(frozen=True)
class Target:
    text: str
    scenario: str
    metric: str
    other: str
    bound: float
    at_least: bool  # True: ratio >= bound; False: ratio <= bound
    base: str = ""  # a scenario: the ratio is ours in `scenario` / ours in `base` (`other` is then OURS)


TARGETS = (
    Target("echo, 1 client: round trips/s ≥ 1.0× FastAPI", "echo-1", "round_trips_per_s", REFERENCE, 1.0, True),
    Target("echo, 1 client: round trips/s ≥ 0.95× bare", "echo-1", "round_trips_per_s", FLOOR, 0.95, True),
    Target("echo, 50 clients: round trips/s ≥ 1.0× FastAPI", "echo-50", "round_trips_per_s", REFERENCE, 1.0, True),
    Target("echo, 50 clients: round trips/s ≥ 0.95× bare", "echo-50", "round_trips_per_s", FLOOR, 0.95, True),
    Target("echo, 50 clients: server CPU per round trip ≤ 1.05× bare", "echo-50", CPU, FLOOR, 1.05, False),
    Target("echo, 50 clients: server CPU per round trip ≤ 0.95× FastAPI", "echo-50", CPU, REFERENCE, 0.95, False),
    Target("items: sessions/s ≥ 1.3× FastAPI", "items", "sessions_per_s", REFERENCE, 1.3, True),
    Target(
        "fan-out, 100 clients: deliveries/s ≥ 1.0× FastAPI", "broadcast-100", "deliveries_per_s", REFERENCE, 1.0, True
    ),
    Target(
        "fan-out, 1000 clients: deliveries/s ≥ 1.0× FastAPI", "broadcast-1000", "deliveries_per_s", REFERENCE, 1.0, True
    ),
    Target(
        "fan-out, 200 clients, unpaced: server CPU per delivery ≤ 0.9× FastAPI", "burst-200", CPU, REFERENCE, 0.9, False
    ),
    Target(
        "fan-out, 1000 clients, unpaced: server CPU per delivery ≤ 0.9× FastAPI",
        "burst-1000",
        CPU,
        REFERENCE,
        0.9,
        False,
    ),
    Target(
        "fan-out, 200 clients, unpaced: server CPU per delivery ≤ 0.9× FastAPI served as its tutorial does",
        "burst-200",
        CPU,
        TUTORIAL,
        0.9,
        False,
    ),
    Target(
        "fan-out, 1000 clients, unpaced: server CPU per delivery ≤ 0.9× FastAPI served as its tutorial does",
        "burst-1000",
        CPU,
        TUTORIAL,
        0.9,
        False,
    ),
    Target(
        "fan-out, 1000 clients, one stalled: server CPU per delivery ≤ 1.1× without it",
        "stalled-1000",
        CPU,
        OURS,
        1.1,
        False,
        base="burst-1000",
    ),
    Target("memory per idle connection (1000) ≤ FastAPI's", "rss", "bytes_per_conn_1000", REFERENCE, 1.0, False),
    Target("memory per idle connection (5000) ≤ FastAPI's", "rss", "bytes_per_conn_5000", REFERENCE, 1.0, False),
)


def verdict(target: Target, medians: Medians) -> tuple[str, float | None]:
    if target.base:
        found = cross_ratio(medians, target.scenario, target.base, target.metric, target.other)
    else:
        found = ratio(medians, target.scenario, target.metric, target.other)
    if found is None:
        return "no data", None
    met = found >= target.bound if target.at_least else found <= target.bound
    return ("met" if met else "**MISSED**"), found


def targets_section(bench: dict[str, Any] | None) -> tuple[str, str]:
    """(the targets table, a one-line summary for the top of the report)."""
    if bench is None:
        return "No benchmark results, so no verdicts.", "targets: no benchmark results"
    medians: Medians = bench.get("medians", {})
    rows, missed, met = [], [], 0
    for target in TARGETS:
        outcome, found = verdict(target, medians)
        base = f" / `{target.base}`" if target.base else ""
        rows.append([target.text, f"`{target.scenario}`{base} `{target.metric}`", times(found, 3), outcome])
        met += outcome == "met"
        if outcome != "met":
            missed.append(f"{target.text} ({outcome.strip('*').lower()}, {times(found, 3)})")
    summary = f"Targets: **{met} of {len(TARGETS)} met**" + (f"; not met: {'; '.join(missed)}." if missed else ".")
    text = (
        "From the benchmark medians below (ratio: starlette-ws / the other app, or / its own figure in the "
        "scenario named after the slash)."
    )
    text += "\n\n" + table(["target", "figure", "ratio", "verdict"], rows, right=(2,))
    return text, summary
