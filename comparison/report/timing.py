"""Import and start-up time, as comparison.startup_bench measured them (timing.json)."""

from __future__ import annotations

from typing import Any

from comparison.report.markdown import table, times


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def timing_section(timing: dict[str, Any] | None) -> str:
    if timing is None:
        return "No `comparison/results/timing.json`: run `python -m comparison.startup_bench`."
    meta = timing["meta"]
    ratios: dict[str, dict[str, float | None]] = timing.get("ratios", {})

    def paired(name: str, figure: str) -> str:
        return times(ratios.get(name, {}).get(figure))

    import_rows = [
        [name, f"`{entry['command']}`", ms(entry["wall_ms"]), paired(name, "import_wall"), ms(entry["importtime_ms"])]
        for name, entry in timing["imports"].items()
    ]
    startup_rows = [
        [
            name,
            f"`uvicorn {entry['app']}`",
            ms(entry["port_ms"]),
            ms(entry["echo_ms"]),
            paired(name, "echo"),
            entry["error"],
        ]
        for name, entry in timing["startups"].items()
    ]
    return "\n".join(
        [
            f"Measured by `python -m comparison.startup_bench` ({meta['date']}), the apps interleaved in each "
            f"round. Import: median of {meta['import_runs']} runs of `python -c ...` (wall time of the whole "
            "process, bytecode cache warm), and the median total of the `self` column of `python -X importtime` "
            "(time spent in imports, the interpreter's own start-up imports included: see the first row). "
            f"Start-up: median of {meta['startup_runs']} launches of `python -m uvicorn APP --host 127.0.0.1 "
            "--port FREE` on `make run`'s protocols, until the port accepts a TCP connection and until a first "
            "WebSocket echo on `/ws` has come back. Ratios: the app's figure / FastAPI's in the same round, "
            "median over rounds.",
            "",
            table(["app", "command", "wall time", "/ FastAPI", "-X importtime total"], import_rows, right=(2, 3, 4)),
            "",
            table(
                ["app", "served", "port accepts", "first echo back", "/ FastAPI", "problem"],
                startup_rows,
                right=(2, 3, 4),
            ),
        ]
    )
