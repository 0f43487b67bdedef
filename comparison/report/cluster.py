"""The Redis Cluster engine against one Redis, and 1 shard against 3 (cluster_bench.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comparison.report.markdown import number, pinning, relative, table, times

FANOUT_COLUMNS = ("server_cpu_us_per_op", "deliveries_per_s", "p50_ms", "p99_ms")
PUBLISH_COLUMNS = ("appends_per_s", "busiest_master_us_per_append", "engine_us_per_append", "capacity_appends_per_s")


def cluster_section(data: dict[str, Any] | None, path: Path) -> str:
    if data is None:
        return f"No results: `python -m comparison.cluster_bench` writes {relative(path)}."
    meta, summary, ratios = data["meta"], data["medians"], data.get("ratios", {})
    settings = meta["settings"]
    pinned = pinning(meta)
    fanout, publish = summary.get("fanout", {}), summary.get("publish", {})
    parts = [
        f"Measured by `python -m comparison.cluster_bench` ({meta['date']}). **Cross-process fan-out**: two app "
        f"processes on CPU {pinned.get('servers', 'any')}, {settings['receivers']} receivers on one, the sender on "
        f"the other ({settings['messages']} lines at {settings['rate']:g}/s), so every delivery crosses the engine; "
        "the server CPU of both processes per delivery. One Redis against a cluster of 3 masters with a replica "
        f"each, both on CPU {pinned.get('loadgen_and_engines', 'any')} with the load generator. Medians of "
        f"{settings['rounds']} round(s), the engines in alternating order.",
        "",
    ]
    rows = []
    for where in ("chat", "room"):
        for engine in ("redis", "cluster"):
            figures = fanout.get(f"{where}-{engine}", {})
            rows.append([f"{where}, {engine}", *(number(figures.get(m)) for m in FANOUT_COLUMNS)])
        rows.append([f"{where}: cluster / redis", times(ratios.get(f"{where}_cpu_cluster_over_redis")), "", "", ""])
    header = ["", "server CPU µs per delivery", "deliveries/s", "latency p50 ms", "p99 ms"]
    parts += [table(header, rows, right=range(1, 5)), ""]
    parts += [
        f"**Publish rate, 1 shard against 3**: two client processes, {settings['publishers']} appends in flight "
        f"each, to 96 rooms for {settings['publish_seconds']:g} s (each append the rooms' one script: keep, trim, "
        "SPUBLISH) while a subscriber hears every room; a cluster of one master, then of three, no replicas. On "
        "this machine the clients are the limit, so appends/s moves little; what sharding changes is each "
        "master's share of the work: the busiest master's CPU per append, whose inverse is the rate it could take "
        "on a core of its own (capacity).",
        "",
    ]
    rows = [
        [shards, *(number(publish.get(shards, {}).get(m)) for m in PUBLISH_COLUMNS)]
        for shards in ("1-shard", "3-shards")
    ]
    rows.append(
        [
            "3 / 1",
            times(ratios.get("appends_per_s_3_over_1")),
            "",
            "",
            times(ratios.get("capacity_appends_per_s_3_over_1")),
        ]
    )
    header = ["shards", "appends/s", "busiest master µs per append", "all masters µs per append", "capacity appends/s"]
    parts.append(table(header, rows, right=range(1, 5)))
    return "\n".join(parts)
