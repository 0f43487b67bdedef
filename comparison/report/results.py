"""The result files the report is rendered from, all in one directory (comparison/results/)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
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
        self.cluster = directory / "cluster_bench.json"
        self.floor = directory / "floor_bench.json"
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


def measured(meta: Mapping[str, Any] | None, source: str) -> str:
    """A section's first line: the result file its figures come from, the commit and the date."""
    if meta is None:
        return f"*No `{source}`: not measured.*"
    commit = str(meta.get("commit") or "unknown")
    date = meta.get("date") or "an unrecorded date"
    if commit == "unknown":
        at = "an unrecorded commit"
    elif commit.endswith("+dirty"):
        at = f"commit `{commit.removesuffix('+dirty')[:7]}` with uncommitted changes"
    else:
        at = f"commit `{commit[:7]}`"
    if meta.get("commit_note"):
        return (
            f"*`{source}`: measured on {date}; the run did not record its commit, the file was checked in with {at}.*"
        )
    return f"*`{source}`: measured at {at}, on {date}.*"


def environment_meta(environment: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The measure step's date and commit (environment.json), shaped as a benchmark's `meta`."""
    if environment is None:
        return None
    git = environment.get("git", {})
    commit = str(git.get("commit") or "unknown")
    dirty = "+dirty" if git.get("dirty") and commit != "unknown" else ""
    return {"date": environment.get("date"), "commit": commit + dirty}


def meta_of(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A result file's `meta` (an empty one when the file has none)."""
    if data is None:
        return None
    meta = data.get("meta")
    return dict(meta) if isinstance(meta, dict) else {}
