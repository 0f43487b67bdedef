"""The commit a run measured, as the result files of benchmarks and parity runs record it."""

from __future__ import annotations

import subprocess

from harness.servers import ROOT

# What `make compare` writes: not counted as uncommitted changes of the commit measured.
OUTPUTS = (":!comparison/results", ":!comparison/REPORT.md", ":!comparison/charts")


def commit() -> str:
    """`git rev-parse HEAD`, with `+dirty` when a tracked file (outputs aside) differs from it;
    `unknown` outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *OUTPUTS],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown"
    if head.returncode != 0 or not head.stdout.strip():
        return "unknown"
    return head.stdout.strip() + ("+dirty" if changed.stdout.strip() else "")
