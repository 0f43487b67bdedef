"""python -m comparison.measure [--results DIR]: write the source and machine measurements as JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from comparison.measure.contract import measure_contract
from comparison.measure.environment import measure_environment
from comparison.measure.loc import measure_loc
from comparison.measure.packages import measure_packages

ROOT = Path(__file__).resolve().parent.parent.parent
STEPS: dict[str, Callable[[], dict[str, Any]]] = {
    "environment.json": measure_environment,
    "loc.json": measure_loc,
    "packages.json": measure_packages,
    "contract.json": measure_contract,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure this checkout and machine for the comparison report")
    parser.add_argument("--results", type=Path, default=ROOT / "comparison" / "results")
    args = parser.parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    for name, step in STEPS.items():
        (args.results / name).write_text(json.dumps(step(), indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.results / name}")


if __name__ == "__main__":
    main()
