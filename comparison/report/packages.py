"""Packages installed: each side's dependency closure, as comparison.measure read it (packages.json)."""

from __future__ import annotations

from typing import Any

from comparison.report.markdown import table

# {side: {"roots": [requirement, ...], "distributions": {name: {"version", "size", "editable"} or None}}}
Closures = dict[str, dict[str, Any]]


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def package_cell(package: dict[str, Any] | None) -> str:
    if package is None:
        return "missing"
    return f"{package['version']} ({mib(package['size'])}{', editable' if package['editable'] else ''})"


def packages_section(closures: Closures | None) -> str:
    if closures is None:
        return "No `comparison/results/packages.json`: run `python -m comparison.measure`."
    found = {side: entry["distributions"] for side, entry in closures.items()}
    names = sorted({name for distributions in found.values() for name in distributions})
    rows = [
        [name] + [package_cell(found[side][name]) if name in found[side] else "" for side in found] for name in names
    ]
    totals = []
    for side, distributions in found.items():
        size = sum(package["size"] for package in distributions.values() if package)
        totals.append(f"**{side}**: {len(distributions)} distributions, {mib(size)}")
    roots = "; ".join(f"{side}: `{' + '.join(entry['roots'])}`" for side, entry in closures.items())
    return "\n".join(
        [
            f"The dependency closure of each side's install ({roots}), read recursively from the installed "
            "distributions' metadata (`importlib.metadata`); an extra counts only where a requirement asks for it "
            "(both ask for `uvicorn[standard]`). Size: the sum of the files each distribution's RECORD lists. "
            "starlette-ws itself is an editable install here, so its own source is in the lines-of-code section, "
            "not in its size.",
            "",
            "; ".join(totals) + ".",
            "",
            table(["distribution", *found], rows),
        ]
    )
