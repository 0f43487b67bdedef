"""Import and start-up time of starlette-ws, the FastAPI twin and a bare ASGI app.

Run from the repository root: ``python -m comparison.startup_bench [--import-runs N] [--startup-runs N]``.

Import: wall time of `python -c "import APP"` (bytecode cache warm), and the total of the `self`
column of `python -X importtime`. Start-up: from launching `python -m uvicorn APP` (served on
`make run`'s protocols, harness.servers.UvicornServer) until the port accepts, and until a first
WebSocket echo on `/ws` comes back. Each round measures every app once, in turn; the medians
over rounds, and each app's ratio to the FastAPI twin, go to comparison/results/timing.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from comparison.report.markdown import scrub
from harness.git import commit
from harness.servers import UvicornServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "comparison" / "results"
APPS = {"starlette-ws": "starlette_ws.app", "fastapi": "comparison.fastapi_app", "bare": "comparison.bare_app"}
REFERENCE = "fastapi"
BASELINE = "python (nothing imported)"
IMPORT_RUNS = 7
STARTUP_RUNS = 5
STARTUP_TIMEOUT = 30.0


def wall_time(command: Sequence[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return time.perf_counter() - started, done.stderr


def importtime_total(stderr: str) -> int:
    """Sum of the "self" column of `-X importtime` (microseconds)."""
    total = 0
    for line in stderr.splitlines():
        if line.startswith("import time:"):
            cell = line.split(":", 1)[1].split("|")[0].strip()
            total += int(cell) if cell.isdigit() else 0
    return total


def import_once(code: str) -> tuple[float, float]:
    """(wall ms of `python -c code`, ms `-X importtime` counts in imports)."""
    wall = wall_time([sys.executable, "-c", code])[0] * 1000
    stderr = wall_time([sys.executable, "-X", "importtime", "-c", code])[1]
    return wall, importtime_total(stderr) / 1000


def echo_once(url: str) -> bool:
    try:
        with connect(f"{url}/ws", open_timeout=2, close_timeout=1) as ws:
            ws.send("ping")
            return str(ws.recv(timeout=2)).endswith("ping")
    except (OSError, TimeoutError):
        return False


def startup_once(module: str) -> tuple[float, float]:
    """(ms until the port accepts, ms until a first echo round trip), from launch."""
    server = UvicornServer(app=f"{module}:app", args=["--log-level", "warning"])
    started = time.perf_counter()
    try:
        server.start()
        accepted = time.perf_counter() - started
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not echo_once(server.ws_url):
            if server.process is None or server.process.poll() is not None:
                raise RuntimeError(f"server exited: {server.log()[-500:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("no echo back in time")
            time.sleep(0.005)
        return accepted * 1000, (time.perf_counter() - started) * 1000
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measure(import_runs: int, startup_runs: int) -> dict[str, Any]:
    # `from ... import app`: each app made as a server would make it (starlette-ws makes its
    # default app on first access, the others at import)
    codes = {BASELINE: "pass", **{name: f"from {module} import app" for name, module in APPS.items()}}
    for code in codes.values():
        wall_time([sys.executable, "-c", code])  # warm the bytecode cache
    walls: dict[str, list[float]] = {name: [] for name in codes}
    totals: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(import_runs):
        for name, code in codes.items():
            wall, total = import_once(code)
            walls[name].append(wall)
            totals[name].append(total)
    ports: dict[str, list[float]] = {name: [] for name in APPS}
    echoes: dict[str, list[float]] = {name: [] for name in APPS}
    errors: dict[str, str] = {}
    for _ in range(startup_runs):
        for name, module in APPS.items():
            if name in errors:
                continue
            try:
                port, echo = startup_once(module)
            except (RuntimeError, TimeoutError, OSError) as problem:
                errors[name] = scrub(f"{type(problem).__name__}: {problem}")
                continue
            ports[name].append(port)
            echoes[name].append(echo)
    imports = {
        name: {"command": code, "wall_ms": median(walls[name]), "importtime_ms": median(totals[name])}
        for name, code in codes.items()
    }
    startups = {
        name: {
            "app": f"{module}:app",
            "port_ms": None if name in errors else median(ports[name]),
            "echo_ms": None if name in errors else median(echoes[name]),
            "error": errors.get(name, ""),
        }
        for name, module in APPS.items()
    }
    return {"imports": imports, "startups": startups, "ratios": paired_ratios(walls, ports, echoes)}


def paired_ratios(
    walls: dict[str, list[float]], ports: dict[str, list[float]], echoes: dict[str, list[float]]
) -> dict[str, dict[str, float | None]]:
    """Per app, the median over rounds of its figure / FastAPI's in the same round."""

    def paired(samples: dict[str, list[float]], name: str) -> float | None:
        pairs = zip(samples.get(name, []), samples.get(REFERENCE, []), strict=False)
        return median([mine / theirs for mine, theirs in pairs if theirs])

    return {
        name: {"import_wall": paired(walls, name), "port": paired(ports, name), "echo": paired(echoes, name)}
        for name in APPS
        if name != REFERENCE
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Import and start-up time of the compared apps")
    parser.add_argument("--import-runs", type=int, default=IMPORT_RUNS)
    parser.add_argument("--startup-runs", type=int, default=STARTUP_RUNS)
    parser.add_argument("--out", type=Path, default=RESULTS / "timing.json")
    args = parser.parse_args(argv)
    started, measured = time.monotonic(), commit()
    found = measure(args.import_runs, args.startup_runs)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": measured,
        "python": sys.version.split()[0],
        "import_runs": args.import_runs,
        "startup_runs": args.startup_runs,
        "seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, **found}, indent=2) + "\n")
    for name, entry in found["startups"].items():
        print(f"{name:14} port {entry['port_ms']} ms, first echo {entry['echo_ms']} ms {entry['error']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
