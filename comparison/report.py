"""Write comparison/REPORT.md and comparison/charts/*.png from the latest real run.

Run from the repository root after the benchmark and the parity suite (``make compare`` does all
three)::

    python -m comparison.bench --out comparison/results/bench.json
    pytest tests/parity --junitxml=comparison/results/parity.xml
    python -m comparison.report [--bench-json PATH] [--parity-xml PATH]

Everything in the report comes from those files, from the sources in this repository, from the
installed distributions' metadata, and from measurements this script takes itself (import and
start-up times). Nothing in REPORT.md is written by hand: the one free-text section, "What costs
what", is comparison/notes.md included verbatim when it exists. The parity table's rows are those of
the behaviour contract, docs/behaviour.md. Every path the report prints is relative to the
repository (a file outside it is named by its file name alone).
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import tokenize
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from websockets.sync.client import connect

from comparison.common import accepts, free_port, number, stop_process

ROOT = Path(__file__).resolve().parent.parent
COMPARISON = ROOT / "comparison"
RESULTS = COMPARISON / "results"
CHARTS = COMPARISON / "charts"
REPORT = COMPARISON / "REPORT.md"
NOTES = COMPARISON / "notes.md"
FASTAPI_APP = COMPARISON / "fastapi_app.py"
PACKAGE = ROOT / "starlette_ws"
CONTRACT = ROOT / "docs" / "behaviour.md"

OURS, REFERENCE, FLOOR = "starlette-ws", "fastapi", "bare"
TUTORIAL = "fastapi-uvicorn"  # the twin on uvicorn's own protocols, as its tutorial serves it
APPS = {OURS: "starlette_ws.app", REFERENCE: "comparison.fastapi_app", FLOOR: "comparison.bare_app"}
COLOURS = {OURS: "#2a7ab0", REFERENCE: "#e0882b", FLOOR: "#9a9a9a"}
IMPORT_RUNS = 7
STARTUP_RUNS = 5
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0

Medians = dict[str, dict[str, dict[str, float | None]]]  # {scenario: {app: {metric: median}}}


# -- small helpers -----------------------------------------------------------------------------


def times(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}×"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[int] = ()) -> str:
    """A Markdown table; the columns whose index is in `right` are right-aligned."""
    rule = ["---:" if index in right else "---" for index in range(len(header))]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines)


def one_line(text: str) -> str:
    return " ".join(text.split())


def relative(path: Path) -> str:
    """`path` from the repository's root; a file outside the repository by its name alone."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return path.name


ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/([\w.+-]+)/(?:[\w.+-]+/)*(?=[\w.+-])")


def scrub(text: str) -> str:
    """Free text from elsewhere (an exception, a benchmark's error) without absolute paths: the
    repository's own made relative, any other file cut down to its name. Only paths under a
    directory this machine has at its root count (`/usr/...`, not the URL path `/items/foo/ws`)."""
    text = text.replace(f"{ROOT}{os.sep}", "").replace(str(ROOT), ".")
    return ABSOLUTE_PATH.sub(lambda match: "" if Path("/", match[1]).is_dir() else match[0], text)


def median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# -- 1. parity ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestRun:
    module: str  # dotted, e.g. tests.parity.test_spec_b
    function: str
    case: str  # the parametrize id, or ""
    outcome: str  # passed, failed, error, skipped


@dataclass(frozen=True)
class Label:
    part: str  # "A", "B" or "" (no contract label)
    keys: tuple[str, ...]  # A groups ("A1", ...) or the B row's id ("B7")
    description: str


@dataclass(frozen=True)
class BRow:
    name: str
    tests: tuple[str, ...]  # where the contract says the row is tested


@dataclass(frozen=True)
class Contract:
    source: str  # the file, relative to the repository
    found: bool
    groups: dict[str, str]  # {"A1": "Echo — `WS /ws`", ...}
    b_rows: dict[str, BRow]  # {"B1": BRow("rejection body", ...), ...}, in the contract's order


@dataclass
class ParityRow:
    part: str
    key: str
    title: str
    tests: dict[str, list[TestRun]] = field(default_factory=dict)  # function -> its runs
    descriptions: dict[str, str] = field(default_factory=dict)  # function -> docstring text


@dataclass(frozen=True)
class Parity:
    runs: list[TestRun]
    rows: list[ParityRow]
    timestamp: str
    source: str
    contract: Contract


def outcome_of(case: ET.Element) -> str:
    for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        if case.find(tag) is not None:
            return outcome
    return "passed"


def read_junit(path: Path) -> tuple[list[TestRun], str]:
    """Every <testcase> of a pytest JUnit file, and the suite's timestamp."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    runs = []
    for case in root.iter("testcase"):
        name = case.get("name", "")
        function, _, rest = name.partition("[")
        runs.append(TestRun(case.get("classname", ""), function, rest.rstrip("]"), outcome_of(case)))
    timestamp = suites[0].get("timestamp", "") if suites else ""
    return runs, timestamp


def module_docstrings(module: str) -> dict[str, str]:
    """{test function: its docstring} for a dotted test module, parsed (not imported)."""
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    if not path.exists():
        return {}
    tree = ast.parse(path.read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[node.name] = ast.get_docstring(node) or ""
    return found


B_LABEL = re.compile(r'^Contract (?P<row>B\d+)(?:\s+"(?P<name>[^"]+)")?\s*[:,]?\s*')
A_LABEL = re.compile(r"^Contract (?P<refs>A\d(?:\s*(?:-|–|,|and|\(and)\s*A\d\)?)*)\s*[:,]?\s*")
A_REF = re.compile(r"A(\d)(?:\s*[-–]\s*A(\d))?")


def a_groups(refs: str) -> tuple[str, ...]:
    """'A1-A4' -> A1, A2, A3, A4; 'A2 (and A4)' -> A2, A4."""
    groups: list[str] = []
    for first, last in A_REF.findall(refs):
        groups += [f"A{n}" for n in range(int(first), int(last or first) + 1)]
    return tuple(dict.fromkeys(groups))


def label(docstring: str) -> Label:
    """Which contract group or row a test's docstring names (`Contract A3: ...`, `Contract B7 "one slow
    client": ...`), and what it says each side does."""
    paragraph = one_line(docstring.split("\n\n")[0])
    if match := B_LABEL.match(paragraph):
        return Label("B", (match["row"],), paragraph[match.end() :])
    if match := A_LABEL.match(paragraph):
        return Label("A", a_groups(match["refs"]), paragraph[match.end() :])
    return Label("", (), paragraph)


B_ROW = re.compile(r"^\|\s*(B\d+)\s*\|\s*([^|]+?)\s*\|")


def read_contract(path: Path) -> Contract:
    """Part A's groups (`### A1. Echo — ...` headings) and part B's rows (table lines `| B1 | name |
    ... | tests |`, the last cell naming the test files) of the behaviour contract."""
    if not path.exists():
        return Contract(relative(path), False, {}, {})
    text = path.read_text()
    groups = {m[1]: m[2].strip() for m in re.finditer(r"^### (A\d)\.\s*(.+)$", text, re.M)}
    b_rows = {}
    for line in text.splitlines():
        if match := B_ROW.match(line):
            tests = re.findall(r"`(tests/[^`]*)`", line.rstrip().rstrip("|").rsplit("|", 1)[-1])
            b_rows[match[1]] = BRow(match[2], tuple(tests))
    return Contract(relative(path), True, groups, b_rows)


def first_word(text: str) -> str:
    return re.split(r"[-_ ,.]", text.strip(), maxsplit=1)[0].lower()


def case_groups(run: TestRun, keys: tuple[str, ...], titles: dict[str, str], words: set[str]) -> tuple[str, ...]:
    """For a parametrized test that names several A groups: the group whose title starts with the
    case id's first word (`items-q-zero` -> A2 "Items ..."); a case that no title claims belongs to
    the named groups whose title word starts none of the test's case ids (`unknown-path` -> A4).
    `words`: the first words of all of this test's case ids."""
    if len(keys) < 2 or not run.case:
        return keys
    title_words = {key: first_word(titles.get(key, "")) for key in keys}
    mine = tuple(key for key, word in title_words.items() if word == first_word(run.case))
    return mine or tuple(key for key, word in title_words.items() if word not in words) or keys


def parity_rows(runs: list[TestRun], contract: Contract) -> list[ParityRow]:
    """One row per A group, per B row some test names, and "other" for tests without a label."""
    groups = contract.groups
    rows: dict[tuple[str, str], ParityRow] = {}
    for key, title in groups.items():
        rows[("A", key)] = ParityRow("A", key, title)
    docs = {module: module_docstrings(module) for module in {run.module for run in runs}}
    words: dict[str, set[str]] = {}
    for run in runs:
        words.setdefault(run.function, set()).add(first_word(run.case))
    for run in runs:
        found = label(docs[run.module].get(run.function, ""))
        part = found.part or ("B" if run.module.endswith("spec_b") else "A")
        keys = case_groups(run, found.keys, groups, words[run.function]) if part == "A" else found.keys
        for key in keys or ("other",):
            b_row = contract.b_rows.get(key)
            title = groups.get(key, key) if part == "A" else (b_row.name if b_row else key)
            row = rows.setdefault((part, key), ParityRow(part, key, title))
            row.tests.setdefault(run.function, []).append(run)
            row.descriptions[run.function] = found.description
    return sorted(rows.values(), key=row_order)


def row_order(row: ParityRow) -> tuple[str, bool, int, str]:
    """A rows by group (A1, A2, ...), B rows by number (B2 before B10), "other" last."""
    number = int(row.key[1:]) if row.key[1:].isdigit() else 0
    return row.part, row.key == "other", number, row.key


def read_parity(path: Path, contract: Contract) -> Parity | None:
    if not path.exists():
        return None
    runs, timestamp = read_junit(path)
    return Parity(runs, parity_rows(runs, contract), timestamp, relative(path), contract)


def untested_b_rows(parity: Parity) -> list[tuple[str, BRow]]:
    """The contract's B rows that no test of this run names: they are tested on starlette-ws alone."""
    named = {row.key for row in parity.rows if row.part == "B"}
    return [(key, row) for key, row in parity.contract.b_rows.items() if key not in named]


def row_outcome(row: ParityRow) -> str:
    runs = [run for group in row.tests.values() for run in group]
    if not runs:
        return "no test"
    bad = [run for run in runs if run.outcome in ("failed", "error")]
    if bad:
        return f"**FAILED** ({len(bad)} of {len(runs)})"
    if all(run.outcome == "skipped" for run in runs):
        return "skipped"
    return "passed"


def test_names(row: ParityRow) -> str:
    names = []
    for function, runs in row.tests.items():
        names.append(f"`{function}`" + (f" ×{len(runs)}" if len(runs) > 1 or runs[0].case else ""))
    return ", ".join(names) or "-"


def descriptions(row: ParityRow) -> str:
    parts = [f"*{function}*: {text}" for function, text in row.descriptions.items() if text]
    return "<br>".join(parts) or "-"


def parity_section(parity: Parity | None, xml: Path) -> str:
    if parity is None:
        command = f"pytest tests/parity --junitxml={relative(xml)}"
        return f"No parity results: `{relative(xml)}` does not exist (run `{command}`)."
    counts: dict[str, int] = {}
    for run in parity.runs:
        counts[run.outcome] = counts.get(run.outcome, 0) + 1
    total = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
    contract = parity.contract
    source = f"`{contract.source}`" + ("" if contract.found else " not found: rows come from the test docstrings alone")
    lines = [
        f"From `{parity.source}` (pytest run of {parity.timestamp or 'unknown time'}): **{len(parity.runs)} test "
        f"cases, {total}**. One row per group of the behaviour contract's part A and per row of its part B "
        f"(contract: {source}); tests are grouped by the contract label in their docstrings (`Contract A3`, "
        "`Contract B7`) and the last column quotes those docstrings. ×N: N cases of a parametrized test; a test "
        "that names several A groups is counted in each, its cases by their id.",
        "",
    ]
    rows = []
    for row in parity.rows:
        kind = "same" if row.part == "A" else "better"
        if row.key == "other":
            kind = "same (no contract label)" if row.part == "A" else "different (not a contract B row)"
        title = row.key if row.title == row.key else f"{row.key}. {row.title}"
        title = f"{row.part}: other" if row.key == "other" else title
        rows.append([title, test_names(row), row_outcome(row), kind, descriptions(row)])
    lines.append(table(["contract", "tests", "outcome", "verdict", "what each side does (test docstrings)"], rows))
    alone = untested_b_rows(parity)
    if alone:
        lines += ["", "Contract B rows that no test of this suite names; they are tested on starlette-ws alone:", ""]
        for key, b_row in alone:
            tests = ", ".join(f"`{test}`" for test in b_row.tests) or "no test named"
            lines.append(f"- {key}. {b_row.name}: {tests}")
    return "\n".join(lines)


# -- 2. lines of code --------------------------------------------------------------------------

SKIPPED_TOKENS = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
}


def docstring_node(node: ast.AST) -> ast.stmt | None:
    if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    return node.body[0] if ast.get_docstring(node, clean=False) is not None else None


def docstring_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if first := docstring_node(node):
            lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def python_code_lines(source: str) -> set[int]:
    """Line numbers that hold code: not blank, not only a comment, not part of a docstring."""
    text = source.splitlines()
    counted: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in SKIPPED_TOKENS:
            counted.update(range(token.start[0], token.end[0] + 1))
    counted -= docstring_lines(ast.parse(source))
    return {line for line in counted if line <= len(text) and text[line - 1].strip()}


COMMENT_MARKS = (("<!--", "-->"), ("{#", "#}"), ("/*", "*/"))


def markup_code_lines(text: str) -> int:
    """Non-blank lines of an HTML/Jinja/JS template that are not only a comment."""
    count, closing = 0, ""
    for raw in text.splitlines():
        line = raw.strip()
        if closing:
            closing = "" if closing in line else closing
            continue
        if not line or line.startswith("//"):
            continue
        opener = next(((start, end) for start, end in COMMENT_MARKS if line.startswith(start)), None)
        if opener is None:
            count += 1
        elif opener[1] not in line[len(opener[0]) :]:
            closing = opener[1]
    return count


def code_lines(path: Path) -> int:
    text = path.read_text()
    return len(python_code_lines(text)) if path.suffix == ".py" else markup_code_lines(text)


def role(path: Path) -> str:
    """The first line of a module's docstring, else of its first class or function docstring."""
    if path.suffix != ".py":
        return "template"
    tree = ast.parse(path.read_text())
    nodes = [tree, *(n for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef))]
    for node in nodes:
        doc = ast.get_docstring(node)
        if doc:
            return doc.splitlines()[0]
    return ""


@dataclass(frozen=True)
class Section:
    demo: str  # "echo", "items", "chat" or "shared"
    kind: str  # "code" or "page"


MARKER = re.compile(r"^#\s*A\d\.\s*(\w+)", re.M)


def fastapi_markers(source: str) -> list[tuple[int, str]]:
    """[(line, demo)] for the section markers ("# A1. Echo", ...) in fastapi_app.py."""
    found = []
    for match in MARKER.finditer(source):
        found.append((source.count("\n", 0, match.start()) + 1, match[1].lower()))
    return found


def node_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return [target.id for target in targets if isinstance(target, ast.Name)]


def node_section(node: ast.stmt, start: int, markers: list[tuple[int, str]], demos: Sequence[str]) -> Section:
    inside = [demo for line, demo in markers if line <= start]
    if inside:
        return Section(inside[-1], "code")
    names = " ".join(node_names(node)).lower()
    demo = next((demo for demo in demos if demo in names), None)
    if demo is None:
        return Section("shared", "code")
    return Section(demo, "code" if not markers else "page")


def fastapi_sections(path: Path, demos: Sequence[str]) -> dict[Section, int]:
    """Code lines of the FastAPI twin per demo: its marked section (code), and its page constant
    and page route (page); whatever belongs to no demo is "shared"."""
    source = path.read_text()
    counted = python_code_lines(source)
    markers = fastapi_markers(source)
    sizes: dict[Section, int] = {}
    for node in ast.parse(source).body:
        decorators = getattr(node, "decorator_list", [])
        start = min([node.lineno, *(d.lineno for d in decorators)])
        section = node_section(node, start, markers, demos)
        lines = len(counted & set(range(start, (node.end_lineno or node.lineno) + 1)))
        sizes[section] = sizes.get(section, 0) + lines
    return sizes


@dataclass(frozen=True)
class Loc:
    demos: list[str]
    ours: dict[Section, int]
    ours_files: dict[str, list[Path]]  # demo -> [module, template]
    shared: list[tuple[Path, int]]
    theirs: dict[Section, int]
    markers: bool


def template_dir() -> Path:
    candidates = [PACKAGE / "templates", ROOT / "templates"]
    return next((path for path in candidates if path.is_dir()), candidates[-1])


def count_lines(demos: list[str]) -> Loc:
    templates = template_dir()
    ours: dict[Section, int] = {}
    files: dict[str, list[Path]] = {}
    for demo in demos:
        module, page = PACKAGE / f"{demo}.py", templates / f"{demo}.html"
        files[demo] = [path for path in (module, page) if path.exists()]
        ours[Section(demo, "code")] = code_lines(module) if module.exists() else 0
        ours[Section(demo, "page")] = code_lines(page) if page.exists() else 0
    demo_files = {path for paths in files.values() for path in paths}
    candidates = sorted(PACKAGE.rglob("*.py")) + sorted(templates.glob("*.html"))
    shared = [(path, code_lines(path)) for path in candidates if path not in demo_files]
    theirs = fastapi_sections(FASTAPI_APP, demos)
    return Loc(demos, ours, files, shared, theirs, bool(fastapi_markers(FASTAPI_APP.read_text())))


def demo_names() -> list[str]:
    """The demos, in the order the FastAPI twin's section markers give (echo, items, chat)."""
    markers = [demo for _, demo in fastapi_markers(FASTAPI_APP.read_text())]
    found = [demo for demo in markers if (PACKAGE / f"{demo}.py").exists()]
    return found or [name for name in ("echo", "items", "chat") if (PACKAGE / f"{name}.py").exists()]


def loc_section(loc: Loc, chart: str) -> str:
    rows = []
    for demo in loc.demos:
        code, page = loc.ours[Section(demo, "code")], loc.ours[Section(demo, "page")]
        their_code, their_page = loc.theirs.get(Section(demo, "code"), 0), loc.theirs.get(Section(demo, "page"), 0)
        names = ", ".join(f"`{relative(path)}`" for path in loc.ours_files[demo])
        rows.append([demo, names, str(code), str(page), str(their_code), str(their_page)])
    shared_ours = sum(lines for _, lines in loc.shared)
    ours, theirs = loc_split(loc, OURS)["shared"], loc_split(loc, REFERENCE)["shared"]
    rows.append(["shared", "the files listed below", *(str(n) for n in (*ours, *theirs))])
    split = (
        "its sections marked `# A1. Echo`, `# A2. Items`, `# A3. Chat` (code) plus the page constant and page route "
        "named after the demo (page); imports, `app`, the index page are shared"
        if loc.markers
        else "top-level functions, classes and constants named after each demo (the file has no section markers)"
    )
    header = ["demo", "starlette-ws files", "ours: code", "ours: page", "FastAPI: code", "FastAPI: page"]
    shared_rows = [[f"`{relative(path)}`", str(lines), role(path)] for path, lines in loc.shared]
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


def loc_split(loc: Loc, side: str) -> dict[str, tuple[int, int]]:
    """{demo or "shared": (code lines, page lines)} for one side."""
    sizes = loc.ours if side == OURS else loc.theirs
    split = {demo: (sizes.get(Section(demo, "code"), 0), sizes.get(Section(demo, "page"), 0)) for demo in loc.demos}
    if side == OURS:
        code = sum(lines for path, lines in loc.shared if path.suffix == ".py")
        split["shared"] = (code, sum(lines for _, lines in loc.shared) - code)
    else:
        split["shared"] = (sizes.get(Section("shared", "code"), 0), sizes.get(Section("shared", "page"), 0))
    return split


def stacked_pairs(axes: Any, loc: Loc, labels: Sequence[str]) -> None:
    """Per label, one bar per side: code at the bottom, page (lighter) on top, the sum above."""
    width = 0.38
    for name, offset in ((OURS, -width / 2), (REFERENCE, width / 2)):
        split = loc_split(loc, name)
        code, page = [split[label][0] for label in labels], [split[label][1] for label in labels]
        positions = [i + offset for i in range(len(labels))]
        axes.bar(positions, code, width, color=COLOURS[name], label=f"{name}: code")
        axes.bar(positions, page, width, bottom=code, color=COLOURS[name], alpha=0.45, label=f"{name}: page")
        for position, low, high in zip(positions, code, page, strict=True):
            axes.annotate(str(low + high), (position, low + high), ha="center", va="bottom", fontsize=9)
    axes.set_xticks(range(len(labels)), labels)
    axes.margins(y=0.12)


def loc_chart(loc: Loc, path: Path) -> None:
    figure, (demos, shared) = plt.subplots(1, 2, figsize=(9, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    stacked_pairs(demos, loc, loc.demos)
    stacked_pairs(shared, loc, ["shared"])
    demos.set_ylabel("lines (non-blank, non-comment)")
    demos.set_title("Per demo: endpoint + page")
    shared.set_title("Shared (own scale)")
    demos.legend(fontsize=8, loc="upper left")
    figure.suptitle("Lines of code: starlette-ws vs the FastAPI twin")
    save(figure, path)


# -- 3. packages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    size: int  # bytes on disk, from the distribution's RECORD
    editable: bool


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


def closure(roots: Sequence[str]) -> dict[str, Package | None]:
    """Every distribution `roots` install (extras only where a requirement names them); None: missing."""
    found: dict[str, Package | None] = {}
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
        found[name] = Package(name, dist.version, size, editable)
        queue += [r for r in map(Requirement, dist.requires or []) if wanted(r, extras)]
    return dict(sorted(found.items()))


SIDES = {OURS: ["starlette-ws"], REFERENCE: ["fastapi", "uvicorn[standard]"]}


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def package_cell(package: Package | None) -> str:
    if package is None:
        return "missing"
    return f"{package.version} ({mib(package.size)}{', editable' if package.editable else ''})"


def packages_section(closures: dict[str, dict[str, Package | None]]) -> str:
    names = sorted({name for found in closures.values() for name in found})
    rows = [
        [name] + [package_cell(closures[side][name]) if name in closures[side] else "" for side in SIDES]
        for name in names
    ]
    totals = []
    for side, found in closures.items():
        size = sum(package.size for package in found.values() if package)
        totals.append(f"**{side}**: {len(found)} distributions, {mib(size)}")
    roots = "; ".join(f"{side}: `{' + '.join(roots)}`" for side, roots in SIDES.items())
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
            table(["distribution", *SIDES], rows),
        ]
    )


# -- 4. import and start-up time ---------------------------------------------------------------


def wall_time(command: Sequence[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return time.perf_counter() - started, done.stderr


def importtime_total(stderr: str) -> int:
    """Sum of the "self" column of `-X importtime` (microseconds)."""
    total = 0
    for line in stderr.splitlines():
        if line.startswith("import time:"):
            cell = line.split(":", 1)[1].split("|")[0].strip()
            total += int(cell) if cell.isdigit() else 0
    return total


@dataclass(frozen=True)
class ImportTime:
    wall_ms: float | None
    importtime_ms: float | None


def import_time(code: str, runs: int) -> ImportTime:
    command = [sys.executable, "-c", code]
    wall_time(command)  # warm the bytecode cache
    walls = [wall_time(command)[0] * 1000 for _ in range(runs)]
    totals = [
        importtime_total(wall_time([sys.executable, "-X", "importtime", "-c", code])[1]) / 1000 for _ in range(runs)
    ]
    return ImportTime(median_or_none(walls), median_or_none(totals))


def wait_until(deadline: float, attempt: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    while not attempt():
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not answer in time")
        time.sleep(0.005)


def echo_once(port: int) -> bool:
    try:
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=2, close_timeout=1) as ws:
            ws.send("ping")
            return str(ws.recv(timeout=2)).endswith("ping")
    except (OSError, TimeoutError):
        return False


def startup_once(app: str) -> tuple[float, float]:
    """(seconds until the port accepts, seconds until a first echo round trip) from launch."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", f"{app}:app", "--host", "127.0.0.1", "--port", str(port)]
    log = RESULTS / "logs" / f"report-startup-{app}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            [*command, "--log-level", "warning"], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        wait_until(deadline, lambda: accepts(port), process)
        accepted = time.perf_counter() - started
        wait_until(deadline, lambda: echo_once(port), process)
        return accepted, time.perf_counter() - started
    finally:
        stop_process(process, STOP_TIMEOUT)


@dataclass(frozen=True)
class Startup:
    port_ms: float | None
    echo_ms: float | None
    error: str = ""


def startup_time(app: str, runs: int) -> Startup:
    (RESULTS / "logs" / f"report-startup-{app}.log").unlink(missing_ok=True)
    samples = []
    try:
        for _ in range(runs):
            samples.append(startup_once(app))
    except (RuntimeError, TimeoutError, OSError) as problem:
        log = relative(RESULTS / "logs" / f"report-startup-{app}.log")
        return Startup(None, None, scrub(f"{type(problem).__name__}: {problem}") + f" (server output: `{log}`)")
    return Startup(
        median_or_none([port * 1000 for port, _ in samples]), median_or_none([echo * 1000 for _, echo in samples])
    )


@dataclass(frozen=True)
class Timing:
    imports: dict[str, ImportTime]
    startups: dict[str, Startup]


def measure_timing(import_runs: int, startup_runs: int) -> Timing:
    imports = {"python (nothing imported)": import_time("pass", import_runs)}
    imports |= {app: import_time(f"import {module}", import_runs) for app, module in APPS.items()}
    startups = {app: startup_time(module, startup_runs) for app, module in APPS.items()}
    return Timing(imports, startups)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def timing_section(timing: Timing, import_runs: int, startup_runs: int) -> str:
    import_rows = [
        [name, f"`import {APPS[name]}`" if name in APPS else "`pass`", ms(value.wall_ms), ms(value.importtime_ms)]
        for name, value in timing.imports.items()
    ]
    startup_rows = [
        [name, f"`uvicorn {APPS[name]}:app`", ms(value.port_ms), ms(value.echo_ms), value.error or ""]
        for name, value in timing.startups.items()
    ]
    return "\n".join(
        [
            f"Measured by this script at report time. Import: median of {import_runs} runs of `python -c ...` "
            "(wall time of the whole process, bytecode cache warm), and the median total of the `self` column of "
            "`python -X importtime` (time spent in imports, the interpreter's own start-up imports included: see the "
            "first row). Start-up: median of "
            f"{startup_runs} launches of `python -m uvicorn APP --host 127.0.0.1 --port FREE`, until the port "
            "accepts a TCP connection and until a first WebSocket echo on `/ws` has come back.",
            "",
            table(["app", "command", "wall time", "-X importtime total"], import_rows, right=(2, 3)),
            "",
            table(["app", "served", "port accepts", "first echo back", "problem"], startup_rows, right=(2, 3)),
        ]
    )


# -- 5. benchmark ------------------------------------------------------------------------------


def read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def lower_is_better(metric: str) -> bool:
    return not (metric.endswith("_per_s") or metric == "delivered")


def value(medians: Medians, scenario: str, app: str, metric: str) -> float | None:
    found = medians.get(scenario, {}).get(app, {}).get(metric)
    return None if found is None or math.isnan(found) else float(found)


def ratio(medians: Medians, scenario: str, metric: str, other: str) -> float | None:
    ours, theirs = value(medians, scenario, OURS, metric), value(medians, scenario, other, metric)
    return None if ours is None or not theirs else ours / theirs


def machine_section(bench: dict[str, Any]) -> str:
    meta = bench.get("meta", {})
    versions = ", ".join(f"{name} {version}" for name, version in meta.get("versions", {}).items())
    loads = [run["loadavg_1min"] for run in bench.get("runs", []) if "loadavg_1min" in run]
    pinning = meta.get("pinning", {})
    rows = [
        ["CPU", f"{cpu_model()}, {os.cpu_count()} logical CPUs (bench saw {meta.get('cpus', '?')})"],
        ["memory", memory_total()],
        ["system", meta.get("platform", platform.platform())],
        ["Python", meta.get("python", platform.python_version())],
        ["packages", versions or "-"],
        ["run", f"{meta.get('date', '?')}, {meta.get('rounds', '?')} round(s), {meta.get('seconds', 0):.0f} s"],
        ["settings", ", ".join(f"{k}={v}" for k, v in meta.get("settings", {}).items()) or "-"],
        [
            "placement",
            f"server CPUs {pinning.get('server') or 'any'}, load generator {pinning.get('loadgen') or 'any'}",
        ],
        ["uvicorn workers", str(meta.get("workers", "?"))],
        ["1-min load average", f"median {number(median_or_none(loads))}, max {number(max(loads, default=None))}"],
    ]
    return table(["", "this run"], rows)


HOW_TO_READ = (
    "**How to read these figures.** Every figure is the median over the rounds of one run (a fresh uvicorn "
    "process per round, scenario and app; apps interleaved). The machine is a small shared VM (see above) "
    "where other work runs at the same time, so throughput and latency figures move by tens of percent "
    "between runs; a ratio within about ±10% of 1.0 is not a difference. `server_cpu_us_per_op` (the "
    "server's CPU time per round trip, session or delivery) is the steadier figure: it does not depend on "
    "how long the server waited for a CPU. Ratios divide starlette-ws by the other app; for figures where "
    "lower is better (latencies, CPU, bytes) a ratio below 1.0 is in our favour."
)


def bench_rows(medians: Medians) -> list[list[str]]:
    rows = []
    for scenario, by_app in medians.items():
        metrics = list(dict.fromkeys(metric for app in (OURS, REFERENCE, FLOOR) for metric in by_app.get(app, {})))
        for metric in metrics:
            row = [scenario, f"`{metric}`", "lower" if lower_is_better(metric) else "higher"]
            row += [number(value(medians, scenario, app, metric)) for app in (OURS, REFERENCE, FLOOR)]
            row += [times(ratio(medians, scenario, metric, other)) for other in (REFERENCE, FLOOR)]
            rows.append(row)
    return rows


def failed_runs(bench: dict[str, Any]) -> list[str]:
    return [
        f"round {run.get('round')} {run.get('scenario')} {run.get('app')}: {scrub(str(run['error']))}"
        for run in bench.get("runs", [])
        if "error" in run
    ]


def bench_section(bench: dict[str, Any] | None, path: Path, charts: list[tuple[str, str]]) -> str:
    if bench is None:
        return f"No benchmark results: `{relative(path)}` does not exist (run `python -m comparison.bench`)."
    medians: Medians = bench.get("medians", {})
    header = ["scenario", "metric", "better", OURS, REFERENCE, FLOOR, f"{OURS}/{REFERENCE}", f"{OURS}/{FLOOR}"]
    parts = [
        f"From `{relative(path)}`.",
        "",
        "### Machine",
        "",
        machine_section(bench),
        "",
        HOW_TO_READ,
        "",
        "### Medians",
        "",
        table(header, bench_rows(medians), right=(3, 4, 5, 6, 7)),
    ]
    broadcast = broadcast_section(medians)
    if broadcast:
        parts += ["", "### Broadcast: paced, unpaced, one stalled client", "", broadcast]
    problems = failed_runs(bench) + list(bench.get("meta", {}).get("notes", []))
    if problems:
        parts += ["", "Runs that failed or were skipped:", "", *(f"- {problem}" for problem in problems)]
    parts += ["", "### Charts", ""]
    parts += [f"![{title}](charts/{name})" for name, title in charts]
    return "\n".join(parts)


BROADCASTS = (  # (scenario, the sender, receivers)
    ("broadcast-100", "paced, 20/s", "100"),
    ("broadcast-1000", "paced, 20/s", "1000"),
    ("burst-200", "unpaced", "200"),
    ("burst-1000", "unpaced", "1000"),
    ("stalled-1000", "unpaced", "1000 + 1 that never reads"),
)
CPU = "server_cpu_us_per_op"


def pair(medians: Medians, scenario: str, metric: str) -> str:
    """`ours / FastAPI's` of one metric, e.g. `12.0 / 14.1`."""
    return f"{number(value(medians, scenario, OURS, metric))} / {number(value(medians, scenario, REFERENCE, metric))}"


def broadcast_section(medians: Medians) -> str:
    """The chat broadcast scenarios side by side: the sender paced or not, and one client that never reads."""
    rows = []
    for scenario, sender, receivers in BROADCASTS:
        if scenario not in medians:
            continue
        rows.append(
            [
                f"`{scenario}`",
                sender,
                receivers,
                pair(medians, scenario, CPU),
                times(ratio(medians, scenario, CPU, REFERENCE)),
                times(ratio(medians, scenario, CPU, TUTORIAL)),
                times(ratio(medians, scenario, "deliveries_per_s", REFERENCE)),
                pair(medians, scenario, "p50_ms"),
                pair(medians, scenario, "p99_ms"),
                pair(medians, scenario, "delivered"),
            ]
        )
    if not rows:
        return ""
    header = [
        "scenario",
        "sender",
        "receivers",
        "server CPU µs per delivery (ours / FastAPI)",
        "CPU ratio",
        "CPU ratio, FastAPI on uvicorn's protocols",
        "deliveries/s ratio",
        "p50 ms",
        "p99 ms",
        "delivered",
    ]
    lines = [
        "One chat sender, the receivers spread over load-generator processes (raw clients), the server on "
        "its own CPU. Paced: 20 messages/s, well inside what both servers deliver, so deliveries/s is the "
        "offered load on both and server CPU per delivery is the figure that tells them apart. Unpaced: the "
        "sender's lines go back to back (each send awaited), under the chat's flood burst of 200. Stalled: the "
        "unpaced 1000 plus one chat client that never reads (a 4 KiB receive buffer); its messages are not "
        "counted. Ratios: starlette-ws / FastAPI.",
        "",
        table(header, rows, right=(3, 4, 5, 6, 7, 8, 9)),
        "",
        "Every app is served on the protocols `make run` serves starlette-ws with (`starlette_ws/protocol.py`), "
        "so the CPU ratio is the apps' difference alone. Those protocols write a text frame straight to the "
        "socket, built once per broadcast, and that write (a system call per delivery, ~10 µs here) is most of "
        "what both apps pay. The next column serves FastAPI's twin on uvicorn's own protocols instead, as its "
        "tutorial runs it (`fastapi-uvicorn`): what a user gets from each.",
    ]
    stalled = cross_ratio(medians, "stalled-1000", "burst-1000", CPU)
    if stalled is not None:
        p99 = cross_ratio(medians, "stalled-1000", "burst-1000", "p99_ms")
        delivered = value(medians, "stalled-1000", OURS, "delivered")
        lines += [
            "",
            f"What one stalled client costs starlette-ws (`stalled-1000` / `burst-1000`, ours alone): server CPU per "
            f"delivery {times(stalled)}, p99 latency {times(p99)}, {number(delivered)} of the others' messages "
            "delivered.",
        ]
    return "\n".join(lines)


def cross_ratio(medians: Medians, scenario: str, base: str, metric: str, app: str = OURS) -> float | None:
    """One app's figure in `scenario` divided by its figure in `base`."""
    mine, before = value(medians, scenario, app, metric), value(medians, base, app, metric)
    return None if mine is None or not before else mine / before


@dataclass(frozen=True)
class Headline:
    file: str
    title: str
    unit: str
    bars: tuple[tuple[str, str, str], ...]  # (scenario, metric, x label)
    scale: float = 1.0


HEADLINES = (
    Headline(
        "echo.png",
        "Echo round trips per second (higher is better)",
        "round trips/s",
        (("echo-1", "round_trips_per_s", "1 client"), ("echo-50", "round_trips_per_s", "50 clients")),
    ),
    Headline(
        "sessions.png",
        "Items sessions per second (higher is better)",
        "sessions/s",
        (("items", "sessions_per_s", "connect, 1 message, close"),),
    ),
    Headline(
        "fanout.png",
        "Broadcast deliveries per second (higher is better)",
        "deliveries/s",
        (
            ("broadcast-100", "deliveries_per_s", "100 clients, paced"),
            ("broadcast-1000", "deliveries_per_s", "1000 clients, paced"),
            ("burst-200", "deliveries_per_s", "200 clients, unpaced"),
            ("burst-1000", "deliveries_per_s", "1000 clients, unpaced"),
        ),
    ),
    Headline(
        "fanout_p99.png",
        "Broadcast delivery latency, p99 (lower is better)",
        "ms",
        (
            ("broadcast-100", "p99_ms", "100 clients, paced"),
            ("broadcast-1000", "p99_ms", "1000 clients, paced"),
            ("burst-200", "p99_ms", "200 clients, unpaced"),
            ("burst-1000", "p99_ms", "1000 clients, unpaced"),
        ),
    ),
    Headline(
        "rss.png",
        "Server memory per idle connection (lower is better)",
        "KiB per connection",
        (("rss", "bytes_per_conn_1000", "1000 connections"), ("rss", "bytes_per_conn_5000", "5000 connections")),
        scale=1 / 1024,
    ),
)


def save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def grouped_bars(
    title: str, unit: str, labels: Sequence[str], series: dict[str, list[float | None]], path: Path
) -> None:
    """One group of bars per label, one bar per app; a missing value is left out and marked "n/a"."""
    figure, axes = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(series), 1)
    for index, (app, values) in enumerate(series.items()):
        positions = [i + (index - (len(series) - 1) / 2) * width for i in range(len(labels))]
        heights = [v if v is not None else 0.0 for v in values]
        bars = axes.bar(positions, heights, width, label=app, color=COLOURS.get(app))
        texts = [number(v) if v is not None else "n/a" for v in values]
        axes.bar_label(bars, texts, fontsize=8, padding=2)
    axes.set_xticks(range(len(labels)), labels)
    axes.set_ylabel(unit)
    axes.set_title(title)
    axes.margins(y=0.15)
    axes.legend(fontsize=8)
    save(figure, path)


def headline_chart(headline: Headline, medians: Medians, path: Path) -> bool:
    apps = [app for app in (OURS, REFERENCE, FLOOR) if any(app in medians.get(s, {}) for s, _, _ in headline.bars)]
    if not apps:
        return False
    series: dict[str, list[float | None]] = {}
    for app in apps:
        values = [value(medians, scenario, app, metric) for scenario, metric, _ in headline.bars]
        series[app] = [v * headline.scale if v is not None else None for v in values]
    grouped_bars(headline.title, headline.unit, [label for _, _, label in headline.bars], series, path)
    return True


def cpu_ratio_chart(medians: Medians, path: Path) -> bool:
    """starlette-ws's server CPU per operation divided by FastAPI's, per scenario."""
    scenarios = [s for s in medians if ratio(medians, s, "server_cpu_us_per_op", REFERENCE) is not None]
    if not scenarios:
        return False
    ratios = [ratio(medians, s, "server_cpu_us_per_op", REFERENCE) or 0.0 for s in scenarios]
    figure, axes = plt.subplots(figsize=(8, 4.5))
    bars = axes.bar(scenarios, ratios, color=[COLOURS[OURS] if r <= 1 else "#c0392b" for r in ratios])
    axes.bar_label(bars, [f"{r:.2f}×" for r in ratios], fontsize=8, padding=2)
    axes.axhline(1.0, color=COLOURS[REFERENCE], linestyle="--", label="FastAPI = 1.0")
    axes.set_ylabel("starlette-ws / FastAPI")
    axes.set_title("Server CPU per operation relative to FastAPI (lower is better)")
    axes.margins(y=0.15)
    axes.legend(fontsize=8)
    save(figure, path)
    return True


def bench_charts(bench: dict[str, Any] | None, charts: Path) -> list[tuple[str, str]]:
    """Draw the headline charts; [(file name, title)] of those drawn."""
    if bench is None:
        return []
    medians: Medians = bench.get("medians", {})
    drawn = [(h.file, h.title) for h in HEADLINES if headline_chart(h, medians, charts / h.file)]
    if cpu_ratio_chart(medians, charts / "cpu_ratio.png"):
        drawn.append(("cpu_ratio.png", "Server CPU per operation relative to FastAPI (lower is better)"))
    return drawn


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


def hub_section(path: Path) -> str:
    data = read_json(path)
    if data is None:
        return f"Not included: `{relative(path)}` does not exist (the hub/backends benchmark has not been run)."
    medians = data.get("medians", data)
    shaped = generic_rows(medians) if isinstance(medians, dict) else None
    if shaped is None:
        return f"`{relative(path)}` exists but its medians are not shaped `{{scenario: {{metric: value}}}}`; not shown."
    date = data.get("meta", {}).get("date") if isinstance(data.get("meta"), dict) else None
    when = f" (run of {date})" if date else ""
    return f"From `{relative(path)}`{when}, rendered as found:\n\n" + table(*shaped, right=(3,))


# -- 6. targets --------------------------------------------------------------------------------


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


def notes_section(path: Path) -> str:
    if not path.exists():
        return f"(No `{relative(path)}`: nothing has been written about what costs what.)"
    return f"Included verbatim from `{relative(path)}`:\n\n" + path.read_text().strip()


# -- the report --------------------------------------------------------------------------------


def git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown commit"
    changed = " with uncommitted changes" if dirty.stdout.strip() else ""
    return f"commit `{head.stdout.strip() or '?'}`{changed}"


def clear_charts(charts: Path) -> None:
    charts.mkdir(parents=True, exist_ok=True)
    for old in charts.glob("*.png"):
        old.unlink()


@dataclass(frozen=True)
class Inputs:
    bench_json: Path
    parity_xml: Path
    hub_json: Path
    notes: Path
    out: Path
    import_runs: int
    startup_runs: int


def render(inputs: Inputs) -> str:
    charts = inputs.out.parent / "charts"
    clear_charts(charts)
    bench = read_json(inputs.bench_json)
    parity = read_parity(inputs.parity_xml, read_contract(CONTRACT))
    loc = count_lines(demo_names())
    loc_chart(loc, charts / "loc.png")
    closures = {side: closure(roots) for side, roots in SIDES.items()}
    timing = measure_timing(inputs.import_runs, inputs.startup_runs)
    drawn = bench_charts(bench, charts)
    targets, summary = targets_section(bench)
    sections = [
        ("Parity: the same behaviour, and where we differ on purpose", parity_section(parity, inputs.parity_xml)),
        ("Targets", targets),
        ("Benchmark", bench_section(bench, inputs.bench_json, drawn)),
        ("Hub and backends benchmark", hub_section(inputs.hub_json)),
        ("Lines of code per demo", loc_section(loc, "loc.png")),
        ("Packages installed", packages_section(closures)),
        ("Import and start-up time", timing_section(timing, inputs.import_runs, inputs.startup_runs)),
        ("What costs what", notes_section(inputs.notes)),
        ("Idle connections and permessage-deflate", idle_section(IDLE_JSON)),
    ]
    parity_line = "parity: no results" if parity is None else parity_summary(parity)
    head = [
        "# starlette-ws vs FastAPI: comparison report",
        "",
        f"Generated by `python -m comparison.report` at {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from {git_state()}. "
        "Do not edit: `make compare` runs the benchmark and the parity suite and writes this file again.",
        "",
        f"- {parity_line}",
        f"- {summary}",
    ]
    body = [f"## {title}\n\n{text}" for title, text in sections]
    return "\n".join(head) + "\n\n" + "\n\n".join(body) + "\n"


def parity_summary(parity: Parity) -> str:
    failed = [run for run in parity.runs if run.outcome in ("failed", "error")]
    a_rows = sum(row.part == "A" and row.key != "other" for row in parity.rows)
    b_rows = sum(row.part == "B" and row.key != "other" for row in parity.rows)
    verdict_ = f"**{len(failed)} failed**" if failed else "all passed"
    rows = f"{a_rows} contract A groups (same), {b_rows} contract B rows (better)"
    alone = len(untested_b_rows(parity))
    rows += f", {alone} more B rows tested on starlette-ws alone" if alone else ""
    return f"Parity: {len(parity.runs)} test cases, {verdict_}; {rows}."


def parse_args(argv: Sequence[str] | None) -> Inputs:
    parser = argparse.ArgumentParser(description="Write comparison/REPORT.md and its charts from the latest run")
    parser.add_argument("--bench-json", type=Path, default=RESULTS / "bench.json")
    parser.add_argument("--parity-xml", type=Path, default=RESULTS / "parity.xml")
    parser.add_argument("--hub-json", type=Path, default=RESULTS / "hub_bench.json")
    parser.add_argument("--notes", type=Path, default=NOTES)
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--import-runs", type=int, default=IMPORT_RUNS)
    parser.add_argument("--startup-runs", type=int, default=STARTUP_RUNS)
    args = parser.parse_args(argv)
    return Inputs(
        args.bench_json,
        args.parity_xml,
        args.hub_json,
        args.notes,
        args.out,
        args.import_runs,
        args.startup_runs,
    )


def main(argv: Sequence[str] | None = None) -> None:
    inputs = parse_args(argv)
    text = render(inputs)
    inputs.out.write_text(text)
    print(f"wrote {relative(inputs.out)} and {relative(inputs.out.parent / 'charts')}/*.png")


# -- idle connections and permessage-deflate (comparison/idle_bench.py) ----------------------

IDLE_JSON = RESULTS / "idle_bench.json"
IDLE_KB_TARGET = 25.0  # server RSS per idle chat connection, KB of 1,000 bytes
IDLE_P99_TARGET_MS = 1000.0  # one broadcast to every idle connection
DEFLATE_DEFAULT = re.compile(r"^WS_PER_MESSAGE_DEFLATE\s*\?=\s*(\S+)", re.M)


def run_deflate_default(makefile: Path) -> bool | None:
    """`make run`'s permessage-deflate default, read from the Makefile (None: not found)."""
    found = DEFLATE_DEFAULT.search(makefile.read_text()) if makefile.exists() else None
    return None if found is None else found.group(1).lower() in ("true", "1", "yes", "on")


def idle_targets(figures: dict[str, float], most: int) -> list[list[str]]:
    kb = figures.get(f"kb_per_conn_{most}")
    p99 = figures.get("broadcast_p99_ms")
    rows = []
    for what, value, bound, unit in (
        (f"server RSS per idle connection at {most:,}", kb, IDLE_KB_TARGET, "KB"),
        (f"one broadcast to {most:,}, p99", p99, IDLE_P99_TARGET_MS, "ms"),
    ):
        verdict = "-" if value is None else ("met" if value <= bound else "**not met**")
        rows.append([what, f"≤ {number(bound)} {unit}", "-" if value is None else f"{number(value)} {unit}", verdict])
    return rows


def idle_section(path: Path) -> str:
    from comparison import idle_bench

    data = read_json(path)
    if data is None:
        return f"No results: `python -m comparison.idle_bench` writes {relative(path)}."
    meta, summary = data["meta"], data["medians"]
    counts = tuple(meta["settings"]["counts"])
    most = max(counts)
    default = run_deflate_default(ROOT / "Makefile")
    chosen = next(
        (c for c in idle_bench.CONFIGURATIONS if c.client_offers and c.server_deflate == default),
        None,
    )
    pinning = meta.get("pinning", {})
    parts = [
        "Chat connections (`/ws/{id}`) held idle as a browser audience holds them, against `starlette_ws.app` served "
        "as `make run` serves it, with the server's `--ws-per-message-deflate` on or off and the clients offering "
        "permessage-deflate (as browsers do) or not. KB/conn: the server's RSS growth over an idle baseline, "
        "divided by the connections held (KB = 1,000 bytes). Broadcast: one chat line from one more client to "
        "all of them; latency from its send to each receiver, and until the last had it "
        f"(median of {meta['settings']['broadcasts']} broadcasts a run). The latencies include the clients' own "
        "time (all of them share one CPU); server CPU ms is the server process's CPU time from the send until "
        f"every receiver had it (10 ms resolution). Medians of {meta['rounds']} interleaved "
        f"round(s), {meta['date']}, server on CPU {pinning.get('server') or 'any'}, clients on "
        f"{pinning.get('clients') or 'any'}, open-files limit {meta.get('open_files_limit', '-')}.",
        "",
    ]
    rows = idle_bench.table_rows(summary, counts)
    parts.append(table(rows[0], rows[1:], right=range(1, len(rows[0]))))
    ratios = data.get("ratios") or {}
    if ratios:
        parts += ["", f"Paired ratios to `{meta['reference']}` (same round, medians):", ""]
        header = ["configuration", *(f"KB/conn {c:,}" for c in counts), "broadcast p99", "last", "server CPU"]
        shown = [
            *(f"kb_per_conn_{c}" for c in counts),
            "broadcast_p99_ms",
            "broadcast_last_ms",
            "broadcast_server_cpu_ms",
        ]
        ratio_rows = [[name, *(times(metrics.get(metric)) for metric in shown)] for name, metrics in ratios.items()]
        parts.append(table(header, ratio_rows, right=range(1, len(header))))
    if chosen is None or chosen.name not in summary:
        parts += ["", "`make run`'s default (`WS_PER_MESSAGE_DEFLATE` in the Makefile) has no configuration here."]
        return "\n".join(parts)
    switch = "true" if default else "false"
    parts += [
        "",
        f"Targets at `make run`'s default (`WS_PER_MESSAGE_DEFLATE={switch}`: `{chosen.name}`, browsers offering "
        "permessage-deflate):",
        "",
        table(["target", "bound", "measured", "verdict"], idle_targets(summary[chosen.name], most), right=(1, 2)),
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    main()
