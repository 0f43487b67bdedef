"""What costs what: comparison/notes.md, the report's one hand-written section.

Its prose types no benchmark figure: each is a placeholder filled from bench.json's medians, so the
section cannot contradict the tables it explains.

- `{{ratio SCENARIO METRIC APP}}`: starlette-ws / APP (`fastapi`, `bare`, `fastapi-uvicorn`), a factor;
- `{{cross SCENARIO BASE METRIC}}`: starlette-ws's figure in SCENARIO / its own in BASE;
- `{{value SCENARIO APP METRIC}}`: one median as the tables print it.

A figure the results lack prints as "-"; a placeholder of another shape is an error.
"""

from __future__ import annotations

import re
from pathlib import Path

from comparison.report.markdown import number, relative, times
from comparison.report.results import Medians, cross_ratio, ratio, value

PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")


def figure(words: list[str], medians: Medians) -> str:
    match words:
        case ["ratio", scenario, metric, app]:
            return times(ratio(medians, scenario, metric, app))
        case ["cross", scenario, base, metric]:
            return times(cross_ratio(medians, scenario, base, metric))
        case ["value", scenario, app, metric]:
            return number(value(medians, scenario, app, metric))
    raise ValueError(f"notes: unknown placeholder {{{{{' '.join(words)}}}}}")


def fill(text: str, medians: Medians) -> str:
    """`text` with every placeholder replaced by its figure from `medians`."""
    return PLACEHOLDER.sub(lambda found: figure(found[1].split(), medians), text)


def notes_section(path: Path, medians: Medians | None) -> str:
    if not path.exists():
        return f"(No `{relative(path)}`: nothing has been written about what costs what.)"
    lead = f"From `{relative(path)}`, its figures filled in from `comparison/results/bench.json`:"
    return lead + "\n\n" + fill(path.read_text().strip(), medians or {})
