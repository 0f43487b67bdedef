"""Each side's dependency closure, read recursively from the installed distributions' metadata."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SIDES = {"starlette-ws": ["starlette-ws"], "fastapi": ["fastapi", "uvicorn[standard]"]}


def distribution_size(dist: metadata.Distribution) -> tuple[int, bool]:
    total = 0
    for file in dist.files or []:
        located = Path(str(dist.locate_file(file)))
        if located.is_file():
            total += located.stat().st_size
    editable = any(str(file).endswith(".pth") and "__editable__" in str(file) for file in dist.files or [])
    return total, editable


def wanted(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras | {""})


def closure(roots: Sequence[str]) -> dict[str, dict[str, Any] | None]:
    """Every distribution `roots` install (extras only where a requirement names them); None: missing."""
    found: dict[str, dict[str, Any] | None] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    queue = [Requirement(root) for root in roots]
    while queue:
        requirement = queue.pop()
        name, extras = canonicalize_name(requirement.name), set(requirement.extras)
        if (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            found[name] = None
            continue
        size, editable = distribution_size(dist)
        found[name] = {"version": dist.version, "size": size, "editable": editable}
        queue += [r for r in map(Requirement, dist.requires or []) if wanted(r, extras)]
    return dict(sorted(found.items()))


def measure_packages() -> dict[str, Any]:
    """packages.json: {side: {roots, distributions: {name: {version, size, editable} or null}}}."""
    return {side: {"roots": roots, "distributions": closure(roots)} for side, roots in SIDES.items()}
