"""What costs what: comparison/notes.md, the report's one hand-written section, included verbatim."""

from __future__ import annotations

from pathlib import Path

from comparison.report.markdown import relative


def notes_section(path: Path) -> str:
    if not path.exists():
        return f"(No `{relative(path)}`: nothing has been written about what costs what.)"
    return f"Included verbatim from `{relative(path)}`:\n\n" + path.read_text().strip()
