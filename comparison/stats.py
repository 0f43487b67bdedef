"""The benchmarks' arithmetic: medians over rounds, ratios between apps or configurations."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any


def lower_is_better(metric: str) -> bool:
    return not (metric.endswith("_per_s") or metric == "delivered")


def medians(runs: Iterable[dict[str, Any]], *keys: str) -> dict[str, Any]:
    """The median over runs of every figure, nested by the runs' `keys` in order:
    `medians(runs, "scenario", "app")` is {scenario: {app: {metric: median}}}.
    NaN samples, and runs that failed (no figures), are left out."""
    samples: dict[tuple[str, ...], dict[str, list[float]]] = {}
    for run in runs:
        for metric, value in run.get("figures", {}).items():
            if not math.isnan(value):
                group = samples.setdefault(tuple(run[key] for key in keys), {})
                group.setdefault(metric, []).append(value)
    result: dict[str, Any] = {}
    for path, metrics in samples.items():
        node = result
        for part in path:
            node = node.setdefault(part, {})
        node.update({metric: statistics.median(values) for metric, values in metrics.items()})
    return result


def ratio(mine: float | None, theirs: float | None) -> float | None:
    """mine / theirs; None when either is missing or NaN, or theirs is 0."""
    if mine is None or theirs is None or math.isnan(mine) or math.isnan(theirs) or theirs == 0:
        return None
    return mine / theirs


def times(value: float | None, digits: int = 2) -> str:
    """A ratio as a factor (1.25 and the multiplication sign), "-" when there is none."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}×"
