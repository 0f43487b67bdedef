"""comparison/REPORT.md is exactly what the checked-in result files in comparison/results/ render to.

The report is rendered in a subprocess (`python -m comparison.report`), so the tests do not import
the comparison tree.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "comparison" / "results"


def test_report_is_what_the_checked_in_results_render_to(tmp_path: Path) -> None:
    out = tmp_path / "REPORT.md"
    command = [sys.executable, "-m", "comparison.report", "--out", str(out), "--no-charts"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=60)
    assert out.read_bytes() == (ROOT / "comparison" / "REPORT.md").read_bytes()
    assert not (tmp_path / "charts").exists()


def test_every_parity_case_names_its_contract_rows() -> None:
    """The parity section groups test cases by their `contract` properties, not by their docstrings."""
    cases = list(ET.parse(RESULTS / "parity.xml").getroot().iter("testcase"))
    assert cases
    for case in cases:
        names = [found.get("name") for found in case.iter("property")]
        assert "contract" in names, case.get("name")
        assert "description" in names, case.get("name")
