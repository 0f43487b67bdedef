"""python -m comparison.report: write REPORT.md, then draw the charts next to it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from comparison.report.document import read_loc, render
from comparison.report.markdown import ROOT, relative
from comparison.report.results import RESULTS, Results, read_json

REPORT = ROOT / "comparison" / "REPORT.md"
NOTES = ROOT / "comparison" / "notes.md"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write comparison/REPORT.md and its charts from the result files")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the directory of result files")
    parser.add_argument("--notes", type=Path, default=NOTES)
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--no-charts", action="store_true", help="write the Markdown only")
    args = parser.parse_args(argv)
    results = Results(args.results)
    args.out.write_text(render(results, args.notes))
    print(f"wrote {relative(args.out)}")
    if not args.no_charts:
        from comparison.report.charts import draw

        bench = read_json(results.bench)
        charts = args.out.parent / "charts"
        draw(charts, None if bench is None else bench.get("medians", {}), read_loc(results))
        print(f"wrote {relative(charts)}/*.png")


if __name__ == "__main__":
    main()
