"""The behaviour contract's part A groups and part B rows (docs/behaviour.md), for the parity section."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
CONTRACT = ROOT / "docs" / "behaviour.md"
B_ROW = re.compile(r"^\|\s*(B\d+)\s*\|\s*([^|]+?)\s*\|")


def measure_contract(path: Path = CONTRACT) -> dict[str, Any]:
    """contract.json: part A's groups (`### A1. Echo — ...` headings) and part B's rows (table lines
    `| B1 | name | ... | tests |`, the last cell naming the test files)."""
    source = str(path.resolve().relative_to(ROOT))
    if not path.exists():
        return {"source": source, "found": False, "groups": {}, "b_rows": {}}
    text = path.read_text()
    groups = {m[1]: m[2].strip() for m in re.finditer(r"^### (A\d)\.\s*(.+)$", text, re.M)}
    b_rows = {}
    for line in text.splitlines():
        if match := B_ROW.match(line):
            tests = re.findall(r"`(tests/[^`]*)`", line.rstrip().rstrip("|").rsplit("|", 1)[-1])
            b_rows[match[1]] = {"name": match[2], "tests": tests}
    return {"source": source, "found": True, "groups": groups, "b_rows": b_rows}
