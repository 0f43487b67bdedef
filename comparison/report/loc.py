"""Lines of code per demo, as comparison.measure counted them (loc.json)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comparison.report.markdown import table
from comparison.report.results import OURS, REFERENCE


@dataclass(frozen=True)
class SharedFile:
    path: str  # relative to the repository
    lines: int
    role: str


@dataclass(frozen=True)
class Loc:
    demos: list[str]
    ours: dict[str, tuple[int, int]]  # demo -> (code lines, page lines)
    ours_files: dict[str, list[str]]  # demo -> [module, template]
    shared: list[SharedFile]
    theirs: dict[str, tuple[int, int]]  # demo or "shared" -> (code lines, page lines)
    markers: bool


def loc_from(data: dict[str, Any]) -> Loc:
    ours = {demo: (entry["code"], entry["page"]) for demo, entry in data["ours"].items()}
    files = {demo: list(entry["files"]) for demo, entry in data["ours"].items()}
    shared = [SharedFile(entry["path"], entry["lines"], entry["role"]) for entry in data["shared"]]
    theirs = {name: (entry["code"], entry["page"]) for name, entry in data["theirs"].items()}
    return Loc(list(data["demos"]), ours, files, shared, theirs, bool(data["markers"]))


def loc_split(loc: Loc, side: str) -> dict[str, tuple[int, int]]:
    """{demo or "shared": (code lines, page lines)} for one side."""
    sizes = loc.ours if side == OURS else loc.theirs
    split = {demo: sizes.get(demo, (0, 0)) for demo in loc.demos}
    if side == OURS:
        code = sum(entry.lines for entry in loc.shared if entry.path.endswith(".py"))
        split["shared"] = (code, sum(entry.lines for entry in loc.shared) - code)
    else:
        split["shared"] = loc.theirs.get("shared", (0, 0))
    return split


def loc_section(loc: Loc | None, chart: str) -> str:
    if loc is None:
        return "No `comparison/results/loc.json`: run `python -m comparison.measure`."
    rows = []
    for demo in loc.demos:
        code, page = loc.ours.get(demo, (0, 0))
        their_code, their_page = loc.theirs.get(demo, (0, 0))
        names = ", ".join(f"`{path}`" for path in loc.ours_files.get(demo, []))
        rows.append([demo, names, str(code), str(page), str(their_code), str(their_page)])
    shared_ours = sum(entry.lines for entry in loc.shared)
    ours, theirs = loc_split(loc, OURS)["shared"], loc_split(loc, REFERENCE)["shared"]
    rows.append(["shared", "the files listed below", *(str(n) for n in (*ours, *theirs))])
    split = (
        "its sections marked `# A1. Echo`, `# A2. Items`, `# A3. Chat` (code) plus the page constant and page route "
        "named after the demo (page); imports, `app`, the index page are shared"
        if loc.markers
        else "top-level functions, classes and constants named after each demo (the file has no section markers)"
    )
    header = ["demo", "starlette-ws files", "ours: code", "ours: page", "FastAPI: code", "FastAPI: page"]
    shared_rows = [[f"`{entry.path}`", str(entry.lines), entry.role] for entry in loc.shared]
    return "\n".join(
        [
            "Non-blank lines that are not only a comment; Python docstrings are not counted either. Ours: the "
            "endpoint module and its template per demo, and every other module and template of the package as "
            f"shared. FastAPI: `comparison/fastapi_app.py`, split by {split}.",
            "",
            table(header, rows, right=(2, 3, 4, 5)),
            "",
            f"![Lines of code per demo](charts/{chart})",
            "",
            f"Shared modules of starlette-ws ({shared_ours} lines in all; role: the file's first docstring line):",
            "",
            table(["file", "lines", "role"], shared_rows, right=(1,)),
        ]
    )
