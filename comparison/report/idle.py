"""Idle connections and permessage-deflate (idle_bench.json), with the targets at `make run`'s default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comparison.report.markdown import number, relative, table, times

IDLE_KB_TARGET = 25.0  # server RSS per idle chat connection, KB of 1,000 bytes
IDLE_P99_TARGET_MS = 1000.0  # one broadcast to every idle connection
BROADCAST_COLUMNS = ("p50_ms", "p99_ms", "last_ms", "delivered", "server_cpu_ms")


def summary_rows(
    summary: dict[str, dict[str, float]], configurations: list[dict[str, Any]], counts: tuple[int, ...]
) -> list[list[str]]:
    """The summary table, header first: one row per configuration the run measured."""
    header = [
        "configuration", "server deflate", "client offers", *(f"KB/conn {c:,}" for c in counts),
        "negotiated", "broadcast p50 ms", "p99 ms", "last ms", "delivered", "server CPU ms",
    ]  # fmt: skip
    rows = [header]
    for configuration in configurations:
        figures = summary.get(configuration["name"])
        if figures is None:
            continue
        rows.append(
            [
                configuration["name"],
                "on" if configuration["server_deflate"] else "off",
                "yes" if configuration["client_offers"] else "no",
                *(number(figures.get(f"kb_per_conn_{c}")) for c in counts),
                number(figures.get(f"negotiated_{max(counts)}")),
                *(number(figures.get(f"broadcast_{m}")) for m in BROADCAST_COLUMNS),
            ]
        )
    return rows


def idle_targets(figures: dict[str, float], most: int) -> list[list[str]]:
    kb = figures.get(f"kb_per_conn_{most}")
    p99 = figures.get("broadcast_p99_ms")
    rows = []
    for what, value, bound, unit in (
        (f"server RSS per idle connection at {most:,}", kb, IDLE_KB_TARGET, "KB"),
        (f"one broadcast to {most:,}, p99", p99, IDLE_P99_TARGET_MS, "ms"),
    ):
        verdict = "-" if value is None else ("met" if value <= bound else "**not met**")
        rows.append([what, f"≤ {number(bound)} {unit}", "-" if value is None else f"{number(value)} {unit}", verdict])
    return rows


def idle_section(data: dict[str, Any] | None, environment: dict[str, Any] | None, path: Path) -> str:
    """`environment`: where comparison.measure noted `make run`'s permessage-deflate default."""
    if data is None:
        return f"No results: `python -m comparison.idle_bench` writes {relative(path)}."
    meta, summary = data["meta"], data["medians"]
    counts = tuple(meta["settings"]["counts"])
    most = max(counts)
    default = (environment or {}).get("make_run", {}).get("ws_per_message_deflate")
    configurations: list[dict[str, Any]] = meta["configurations"]
    chosen = next((c for c in configurations if c["client_offers"] and c["server_deflate"] == default), None)
    pinning = meta.get("pinning", {})
    parts = [
        "Chat connections (`/ws/{id}`) held idle as a browser audience holds them, against `starlette_ws.app` served "
        "as `make run` serves it, with the server's `--ws-per-message-deflate` on or off and the clients offering "
        "permessage-deflate (as browsers do) or not. KB/conn: the server's RSS growth over an idle baseline, "
        "divided by the connections held (KB = 1,000 bytes). Broadcast: one chat line from one more client to "
        "all of them; latency from its send to each receiver, and until the last had it "
        f"(median of {meta['settings']['broadcasts']} broadcasts a run). The latencies include the clients' own "
        "time (all of them share one CPU); server CPU ms is the server process's CPU time from the send until "
        f"every receiver had it (10 ms resolution). Medians of {meta['rounds']} interleaved "
        f"round(s), {meta['date']}, server on CPU {pinning.get('server') or 'any'}, clients on "
        f"{pinning.get('clients') or 'any'}, open-files limit {meta.get('open_files_limit', '-')}.",
        "",
    ]
    rows = summary_rows(summary, configurations, counts)
    parts.append(table(rows[0], rows[1:], right=range(1, len(rows[0]))))
    ratios = data.get("ratios") or {}
    if ratios:
        parts += ["", f"Paired ratios to `{meta['reference']}` (same round, medians):", ""]
        header = ["configuration", *(f"KB/conn {c:,}" for c in counts), "broadcast p99", "last", "server CPU"]
        shown = [
            *(f"kb_per_conn_{c}" for c in counts),
            "broadcast_p99_ms",
            "broadcast_last_ms",
            "broadcast_server_cpu_ms",
        ]
        ratio_rows = [[name, *(times(metrics.get(metric)) for metric in shown)] for name, metrics in ratios.items()]
        parts.append(table(header, ratio_rows, right=range(1, len(header))))
    if chosen is None or chosen["name"] not in summary:
        parts += ["", "`make run`'s default (`WS_PER_MESSAGE_DEFLATE` in the Makefile) has no configuration here."]
        return "\n".join(parts)
    switch = "true" if default else "false"
    parts += [
        "",
        f"Targets at `make run`'s default (`WS_PER_MESSAGE_DEFLATE={switch}`: `{chosen['name']}`, browsers offering "
        "permessage-deflate):",
        "",
        table(["target", "bound", "measured", "verdict"], idle_targets(summary[chosen["name"]], most), right=(1, 2)),
    ]
    return "\n".join(parts)
