"""The hub and backends benchmark (hub_bench.json): the chat's fan-out on each engine, then the
stalled client, each as a table of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comparison.report.markdown import number, relative, table, times

CPU = "server_cpu_us_per_op"


def is_number(item: Any) -> bool:
    return isinstance(item, int | float) and not isinstance(item, bool)


def flat(medians: Any) -> bool:
    """Whether medians are shaped {scenario: {metric: number or null}}."""
    return isinstance(medians, dict) and all(
        isinstance(entry, dict) and all(is_number(v) or v is None for v in entry.values()) for entry in medians.values()
    )


def mapping(item: Any) -> dict[str, Any]:
    return item if isinstance(item, dict) else {}


def cell(item: Any) -> str:
    return number(float(item)) if is_number(item) else "-"


def fanout_table(medians: dict[str, Any], configs: dict[str, Any], ratios: dict[str, Any], baseline: str) -> str:
    """One row per engine configuration, one column per metric, and the CPU ratio to the baseline."""
    scenarios = [scenario for scenario in medians if scenario in configs]
    metrics = list(dict.fromkeys(metric for scenario in scenarios for metric in medians[scenario]))
    header = ["scenario", "engine", *(f"`{metric}`" for metric in metrics)]
    if baseline:
        header.append(f"`{CPU}` / `{baseline}`")
    rows = []
    for scenario in scenarios:
        row = [f"`{scenario}`", str(configs[scenario].get("label", scenario))]
        row += [cell(medians[scenario].get(metric)) for metric in metrics]
        if baseline:
            found = ratios.get(scenario, {}).get(CPU)
            row.append(times(float(found)) if is_number(found) else "-")
        rows.append(row)
    return table(header, rows, right=range(2, len(header)))


def hub_section(data: dict[str, Any] | None, path: Path) -> str:
    if data is None:
        return f"Not included: `{relative(path)}` does not exist (the hub/backends benchmark has not been run)."
    medians = data.get("medians", data)
    if not flat(medians):
        return f"`{relative(path)}` exists but its medians are not shaped `{{scenario: {{metric: value}}}}`; not shown."
    meta, ratios = mapping(data.get("meta")), mapping(data.get("ratios"))
    configs = mapping(meta.get("configs"))
    baseline = str(meta.get("baseline") or "")
    parts = []
    if any(scenario in configs for scenario in medians):
        parts.append(
            "**Fan-out on each broadcast engine**: one chat sender paced inside the flood limit, the receivers "
            "in another process, `starlette_ws.app` served on every engine (medians of "
            f"{meta.get('rounds', '?')} round(s), the configurations alternated; nothing pinned to a CPU). "
            "`server_cpu_us_per_op`: server CPU µs per delivery; `busiest_worker_share`: the largest uvicorn "
            "worker's share of the connections (0.5 is an even split over two).\n\n"
            + fanout_table(medians, configs, ratios, baseline)
        )
    for scenario, entry in medians.items():
        if scenario in configs:
            continue
        rows = [[f"`{metric}`", cell(item)] for metric, item in entry.items()]
        lead = f"**`{scenario}`**"
        if scenario == "stalled-client":
            lead += (
                ": chat messages of 60 KiB broadcast to two live readers and to a client that never reads; the "
                "hub should cut that client off with 1013 once its outbox overflows, so the server's RSS stays "
                "near idle and the live readers get every message"
            )
        parts.append(f"{lead}:\n\n" + table(["metric", "value"], rows, right=(1,)))
    return "\n\n".join(parts)
