"""The machine, the commit and `make run`'s defaults the measurements were taken with."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path
from typing import Any

from harness.git import commit

ROOT = Path(__file__).resolve().parent.parent.parent
DEFLATE_DEFAULT = re.compile(r"^WS_PER_MESSAGE_DEFLATE\s*\?=\s*(\S+)", re.M)


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


def git_state() -> dict[str, Any]:
    """The commit measured (`harness.git.commit`: `+dirty` with uncommitted changes to tracked files)."""
    measured = commit()
    return {"commit": measured.removesuffix("+dirty"), "dirty": measured.endswith("+dirty")}


def run_deflate_default(makefile: Path) -> bool | None:
    """`make run`'s permessage-deflate default, read from the Makefile (None: not found)."""
    found = DEFLATE_DEFAULT.search(makefile.read_text()) if makefile.exists() else None
    return None if found is None else found.group(1).lower() in ("true", "1", "yes", "on")


def measure_environment() -> dict[str, Any]:
    """environment.json: {date, git: {commit, dirty}, machine: {...}, make_run: {...}}."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git": git_state(),
        "machine": {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count(), "memory": memory_total()},
        "make_run": {"ws_per_message_deflate": run_deflate_default(ROOT / "Makefile")},
    }
