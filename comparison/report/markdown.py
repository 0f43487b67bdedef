"""Markdown pieces every section uses: tables, number formatting, paths as the report prints them."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from comparison.common import number
from comparison.stats import times

ROOT = Path(__file__).resolve().parent.parent.parent

__all__ = ["ROOT", "number", "one_line", "relative", "scrub", "table", "times"]


def table(header: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()) -> str:
    """A Markdown table; the columns whose index is in `right` are right-aligned."""
    aligned = set(right)
    rule = ["---:" if index in aligned else "---" for index in range(len(header))]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines)


def pinning(meta: dict[str, Any]) -> dict[str, str]:
    """Where a benchmark pinned what (`meta["pinning"]`): role -> its CPUs as text, or "any"."""
    return {role: ", ".join(map(str, cpus)) or "any" for role, cpus in meta.get("pinning", {}).items()}


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
