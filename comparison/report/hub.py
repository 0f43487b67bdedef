"""The hub and backends benchmark (hub_bench.json), rendered as found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comparison.report.markdown import number, relative, table


def is_number(item: Any) -> bool:
    return isinstance(item, int | float) and not isinstance(item, bool)


def generic_rows(data: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """Rows for {scenario: {metric: value}} or {scenario: {app: {metric: value}}}; None for any other shape."""
    rows = []
    for scenario, entry in data.items():
        if not isinstance(entry, dict):
            return None
        for key, item in entry.items():
            if is_number(item):
                rows.append([scenario, "", f"`{key}`", number(float(item))])
            elif isinstance(item, dict) and all(is_number(v) or v is None for v in item.values()):
                rows += [[scenario, key, f"`{m}`", number(None if v is None else float(v))] for m, v in item.items()]
            else:
                return None
    return ["scenario", "app / backend", "metric", "median"], rows


def hub_section(data: dict[str, Any] | None, path: Path) -> str:
    if data is None:
        return f"Not included: `{relative(path)}` does not exist (the hub/backends benchmark has not been run)."
    medians = data.get("medians", data)
    shaped = generic_rows(medians) if isinstance(medians, dict) else None
    if shaped is None:
        return f"`{relative(path)}` exists but its medians are not shaped `{{scenario: {{metric: value}}}}`; not shown."
    date = data.get("meta", {}).get("date") if isinstance(data.get("meta"), dict) else None
    when = f" (run of {date})" if date else ""
    return f"From `{relative(path)}`{when}, rendered as found:\n\n" + table(*shaped, right=(3,))
