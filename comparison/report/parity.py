"""Parity: the JUnit XML of the parity suite, one row per group or row of the behaviour contract.

Each test case carries its contract rows as data: the parity suite's conftest turns a test's
`@pytest.mark.contract("B7")` into `contract` properties of its <testcase>, and its docstring's
first paragraph into a `description` property.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comparison.report.markdown import relative, table


@dataclass(frozen=True)
class TestRun:
    __test__ = False  # not a pytest class

    module: str  # dotted, e.g. tests.parity.test_spec_b
    function: str
    case: str  # the parametrize id, or ""
    outcome: str  # passed, failed, error, skipped
    contract: tuple[str, ...] = ()  # the contract groups or rows it checks ("A2", "B7")
    description: str = ""


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
    meta: dict[str, str] = field(default_factory=dict)  # the suite's date, and its commit where recorded


def contract_from(data: dict[str, Any] | None) -> Contract:
    """The contract as comparison.measure wrote it (contract.json)."""
    if data is None:
        return Contract("docs/behaviour.md", False, {}, {})
    b_rows = {key: BRow(row["name"], tuple(row["tests"])) for key, row in data["b_rows"].items()}
    return Contract(data["source"], data["found"], dict(data["groups"]), b_rows)


def outcome_of(case: ET.Element) -> str:
    for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        if case.find(tag) is not None:
            return outcome
    return "passed"


def properties(case: ET.Element) -> list[tuple[str, str]]:
    return [(found.get("name", ""), found.get("value", "")) for found in case.iter("property")]


def read_junit(path: Path) -> tuple[list[TestRun], str, dict[str, str]]:
    """Every <testcase> of a pytest JUnit file, the suite's timestamp, and its date and commit (the
    `commit` and `commit_note` properties of the suite, where the run recorded them)."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    runs = []
    for case in root.iter("testcase"):
        function, _, rest = case.get("name", "").partition("[")
        found = properties(case)
        keys = tuple(dict.fromkeys(text for name, text in found if name == "contract"))
        description = next((text for name, text in found if name == "description"), "")
        runs.append(TestRun(case.get("classname", ""), function, rest.rstrip("]"), outcome_of(case), keys, description))
    timestamp = suites[0].get("timestamp", "") if suites else ""
    suite = suites[0].find("properties") if suites else None
    recorded = dict(properties(suite)) if suite is not None else {}
    meta = {"date": timestamp} | {key: recorded[key] for key in ("commit", "commit_note") if key in recorded}
    return runs, timestamp, meta


def part_of(run: TestRun) -> str:
    """ "A" or "B" from the rows a test names; a test naming none goes by its module."""
    if run.contract:
        return run.contract[0][0]
    return "B" if run.module.endswith("spec_b") else "A"


def parity_rows(runs: list[TestRun], contract: Contract) -> list[ParityRow]:
    """One row per A group, per B row some test names, and "other" for tests that name none."""
    groups = contract.groups
    rows: dict[tuple[str, str], ParityRow] = {}
    for key, title in groups.items():
        rows[("A", key)] = ParityRow("A", key, title)
    for run in runs:
        part = part_of(run)
        for key in run.contract or ("other",):
            b_row = contract.b_rows.get(key)
            title = groups.get(key, key) if part == "A" else (b_row.name if b_row else key)
            row = rows.setdefault((part, key), ParityRow(part, key, title))
            row.tests.setdefault(run.function, []).append(run)
            row.descriptions[run.function] = run.description
    return sorted(rows.values(), key=row_order)


def row_order(row: ParityRow) -> tuple[str, bool, int, str]:
    """A rows by group (A1, A2, ...), B rows by number (B2 before B10), "other" last."""
    number = int(row.key[1:]) if row.key[1:].isdigit() else 0
    return row.part, row.key == "other", number, row.key


def read_parity(path: Path, contract: Contract) -> Parity | None:
    if not path.exists():
        return None
    runs, timestamp, meta = read_junit(path)
    return Parity(runs, parity_rows(runs, contract), timestamp, relative(path), contract, meta)


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
    source = f"`{contract.source}`" + ("" if contract.found else " not found: rows come from the tests' markers alone")
    lines = [
        f"From `{parity.source}` (pytest run of {parity.timestamp or 'unknown time'}): **{len(parity.runs)} test "
        f"cases, {total}**. One row per group of the behaviour contract's part A and per row of its part B "
        f'(contract: {source}); each test names the rows it checks with a marker (`@pytest.mark.contract("A3")`, '
        '`@pytest.mark.contract("B7")`, on the test or on one parametrized case), which the JUnit XML carries as '
        "`contract` properties, and the last column quotes the tests' docstrings. ×N: N cases of a parametrized "
        "test; a test that names several A groups is counted in each.",
        "",
    ]
    rows = []
    for row in parity.rows:
        kind = "same" if row.part == "A" else "better"
        if row.key == "other":
            kind = "same (no contract marker)" if row.part == "A" else "different (not a contract B row)"
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


def parity_summary(parity: Parity | None) -> str:
    if parity is None:
        return "parity: no results"
    failed = [run for run in parity.runs if run.outcome in ("failed", "error")]
    a_rows = sum(row.part == "A" and row.key != "other" for row in parity.rows)
    b_rows = sum(row.part == "B" and row.key != "other" for row in parity.rows)
    verdict = f"**{len(failed)} failed**" if failed else "all passed"
    rows = f"{a_rows} contract A groups (same), {b_rows} contract B rows (better)"
    alone = len(untested_b_rows(parity))
    rows += f", {alone} more B rows tested on starlette-ws alone" if alone else ""
    return f"Parity: {len(parity.runs)} test cases, {verdict}; {rows}."
