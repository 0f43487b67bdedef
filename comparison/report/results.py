"""The result files the report is rendered from, all in one directory (comparison/results/)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from comparison import stats
from comparison.report.markdown import ROOT

RESULTS = ROOT / "comparison" / "results"

OURS, REFERENCE, FLOOR = "starlette-ws", "fastapi", "bare"
TUTORIAL = "fastapi-uvicorn"  # the twin on uvicorn's own protocols, as its tutorial serves it

Medians = dict[str, dict[str, dict[str, float | None]]]  # {scenario: {app: {metric: median}}}


class Results:
    """Where each result file is; a missing file makes its section say so."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.bench = directory / "bench.json"
        self.hub = directory / "hub_bench.json"
        self.idle = directory / "idle_bench.json"
        self.rooms = directory / "rooms_bench.json"
        self.tokens = directory / "token_bench.json"
        self.parity = directory / "parity.xml"
        self.timing = directory / "timing.json"
        self.environment = directory / "environment.json"
        self.loc = directory / "loc.json"
        self.packages = directory / "packages.json"
        self.contract = directory / "contract.json"


def read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else None


def median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def value(medians: Medians, scenario: str, app: str, metric: str) -> float | None:
    found = medians.get(scenario, {}).get(app, {}).get(metric)
    return None if found is None or math.isnan(found) else float(found)


def ratio(medians: Medians, scenario: str, metric: str, other: str) -> float | None:
    """Ours / the other app's, one metric in one scenario."""
    return stats.ratio(value(medians, scenario, OURS, metric), value(medians, scenario, other, metric))


def cross_ratio(medians: Medians, scenario: str, base: str, metric: str, app: str = OURS) -> float | None:
    """One app's figure in `scenario` divided by its figure in `base`."""
    return stats.ratio(value(medians, scenario, app, metric), value(medians, base, app, metric))
