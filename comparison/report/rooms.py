"""Rooms against the tutorial's chat, and recovery per engine (rooms_bench.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comparison.report.markdown import number, pinning, relative, table, times

FANOUT_COLUMNS = ("deliveries_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_op")


def rooms_section(data: dict[str, Any] | None, path: Path) -> str:
    if data is None:
        return f"No results: `python -m comparison.rooms_bench` writes {relative(path)}."
    meta, summary = data["meta"], data["medians"]
    settings = meta["settings"]
    pinned = pinning(meta)
    parts = [
        f"Measured by `python -m comparison.rooms_bench` ({meta['date']}) against `starlette_ws.app` on `make run`'s "
        f"protocols, server on CPU {pinned.get('server', 'any')}, load generator on CPU "
        f"{pinned.get('loadgen', 'any')}.",
        "",
        f"**One room of {settings['receivers']:,} members against the tutorial's chat of as many, on the same hub** "
        f"(`memory://`): one more client says {settings['burst']} lines back to back (inside the flood burst), "
        "after the room's join announcements are over. A room's line is also numbered, kept in its history and "
        "sent as a JSON entry. Medians of "
        f"{settings['rounds']} round(s), each a fresh server per side, the two sides back to back in alternating "
        "order; room / chat is the median of each round's ratio.",
        "",
    ]
    fanout = summary.get("fanout", {})
    rows = [[where, *(number(fanout.get(where, {}).get(m)) for m in FANOUT_COLUMNS)] for where in ("chat", "room")]
    paired = data.get("ratios", {}).get("fanout", {})
    rows.append(["room / chat", *(times(paired.get(m)) for m in FANOUT_COLUMNS)])
    header = ["", "deliveries/s", "latency p50 ms", "p99 ms", "server CPU µs per delivery"]
    parts += [table(header, rows, right=range(1, 5)), ""]
    parts.append(
        f"**Recovering {settings['missed']} missed lines**, per engine (`ROOM_HISTORY={meta['history']}`): a client "
        f"that left comes back with `since` and `epoch` while {settings['missed']} lines wait for it; from opening "
        "the connection to the last line replayed, every line checked (once, in order, no gap). Beside it, a plain "
        f"connect to the same room up to its presence message, in the same round. Medians of "
        f"{settings['recovery_rounds']} round(s), the engines interleaved; the ratio is the median of each round's."
    )
    parts.append("")
    recovery = summary.get("recovery", {})
    rows = [
        [
            f"`{engine}`",
            number(recovery[engine].get("recover_ms")),
            number(recovery[engine].get("connect_ms")),
            times(recovery[engine].get("recover_per_connect")),
        ]
        for engine in ("memory", "redis", "postgres")
        if engine in recovery
    ]
    header = ["engine", f"recover {settings['missed']} ms", "plain connect ms", "recover / connect"]
    parts.append(table(header, rows, right=(1, 2, 3)))
    notes = meta.get("notes") or []
    if notes:
        parts += ["", *(f"- {note}" for note in notes)]
    return "\n".join(parts)
