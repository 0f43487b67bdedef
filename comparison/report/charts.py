"""The charts: which ones the results allow (pure, for the Markdown), and drawing them (matplotlib).

`python -m comparison.report` draws them after writing REPORT.md; rendering the Markdown never
imports matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comparison.report.loc import Loc, loc_split
from comparison.report.markdown import number
from comparison.report.results import FLOOR, OURS, REFERENCE, Medians, ratio, value

COLOURS = {OURS: "#2a7ab0", REFERENCE: "#e0882b", FLOOR: "#9a9a9a"}
MORE_CPU = "#c0392b"  # a scenario where starlette-ws used more server CPU than FastAPI
NOISE = "#ececec"  # the band of ratios a run on the shared VM does not tell apart from 1.0
LOC_CHART = "loc.png"
CPU_RATIO_CHART = "cpu_ratio.png"
CPU = "server_cpu_us_per_op"
FANOUTS = (  # (scenario, bar label) of the broadcast charts
    ("broadcast-100", "100 clients, paced"),
    ("broadcast-1000", "1000 clients, paced"),
    ("burst-200", "200 clients, unpaced"),
    ("burst-1000", "1000 clients, unpaced"),
)


@dataclass(frozen=True)
class Chart:
    file: str
    title: str


@dataclass(frozen=True)
class Headline:
    file: str
    title: str
    unit: str
    bars: tuple[tuple[str, str, str], ...]  # (scenario, metric, x label)
    scale: float = 1.0


HEADLINES = (
    Headline(
        "echo.png",
        "Echo round trips per second (higher is better)",
        "round trips/s",
        (("echo-1", "round_trips_per_s", "1 client"), ("echo-50", "round_trips_per_s", "50 clients")),
    ),
    Headline(
        "sessions.png",
        "Items sessions per second (higher is better)",
        "sessions/s",
        (("items", "sessions_per_s", "connect, 1 message, close"),),
    ),
    Headline(
        "fanout.png",
        "Broadcast deliveries per second (higher is better)",
        "deliveries/s",
        tuple((scenario, "deliveries_per_s", label) for scenario, label in FANOUTS),
    ),
    Headline(
        "fanout_p99.png",
        "Broadcast delivery latency, p99 (lower is better)",
        "ms",
        tuple((scenario, "p99_ms", label) for scenario, label in FANOUTS),
    ),
    Headline(
        "rss.png",
        "Server memory per idle connection (lower is better)",
        "KiB per connection",
        (("rss", "bytes_per_conn_1000", "1000 connections"), ("rss", "bytes_per_conn_5000", "5000 connections")),
        scale=1 / 1024,
    ),
)


def headline_apps(headline: Headline, medians: Medians) -> list[str]:
    return [app for app in (OURS, REFERENCE, FLOOR) if any(app in medians.get(s, {}) for s, _, _ in headline.bars)]


def cpu_ratio_scenarios(medians: Medians) -> list[str]:
    return [s for s in medians if ratio(medians, s, CPU, REFERENCE) is not None]


def bench_charts(medians: Medians | None) -> list[Chart]:
    """The benchmark charts these medians fill, in the report's order."""
    if medians is None:
        return []
    charts = [Chart(h.file, h.title) for h in HEADLINES if headline_apps(h, medians)]
    if cpu_ratio_scenarios(medians):
        charts.append(Chart(CPU_RATIO_CHART, "Server CPU per operation relative to FastAPI (lower is better)"))
    return charts


# -- drawing -------------------------------------------------------------------------------------


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot().close(figure)


def grouped_bars(
    title: str, unit: str, labels: Sequence[str], series: dict[str, list[float | None]], path: Path
) -> None:
    """One group of bars per label, one bar per app; a missing value is left out and marked "n/a"."""
    figure, axes = pyplot().subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(series), 1)
    for index, (app, values) in enumerate(series.items()):
        positions = [i + (index - (len(series) - 1) / 2) * width for i in range(len(labels))]
        heights = [v if v is not None else 0.0 for v in values]
        bars = axes.bar(positions, heights, width, label=app, color=COLOURS.get(app))
        texts = [number(v) if v is not None else "n/a" for v in values]
        axes.bar_label(bars, texts, fontsize=8, padding=2)
    axes.set_xticks(range(len(labels)), labels)
    axes.set_ylabel(unit)
    axes.set_title(title)
    axes.margins(y=0.15)
    axes.legend(fontsize=8)
    save(figure, path)


def headline_chart(headline: Headline, medians: Medians, path: Path) -> None:
    series: dict[str, list[float | None]] = {}
    for app in headline_apps(headline, medians):
        values = [value(medians, scenario, app, metric) for scenario, metric, _ in headline.bars]
        series[app] = [v * headline.scale if v is not None else None for v in values]
    grouped_bars(headline.title, headline.unit, [label for _, _, label in headline.bars], series, path)


def cpu_ratio_chart(medians: Medians, path: Path) -> None:
    """starlette-ws's server CPU per operation divided by FastAPI's, one horizontal bar per scenario
    (names on the left, never crowded), coloured by which side used less."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    scenarios = cpu_ratio_scenarios(medians)
    ratios = [ratio(medians, s, CPU, REFERENCE) or 0.0 for s in scenarios]
    figure, axes = pyplot().subplots(figsize=(8, 0.45 * len(scenarios) + 2.4))
    positions = range(len(scenarios))
    axes.axvspan(0.9, 1.1, color=NOISE, zorder=0)
    bars = axes.barh(positions, ratios, color=[COLOURS[OURS] if r <= 1 else MORE_CPU for r in ratios])
    axes.bar_label(bars, [f"{r:.2f}×" for r in ratios], fontsize=9, padding=3)
    axes.set_yticks(positions, scenarios)
    axes.invert_yaxis()  # the scenarios top to bottom in the report's order
    axes.axvline(1.0, color=COLOURS[REFERENCE], linestyle="--")
    axes.set_xlabel("starlette-ws's server CPU per operation / FastAPI's")
    axes.set_title("Server CPU per operation relative to FastAPI (lower is better)")
    axes.margins(x=0.12)
    legend = [
        Patch(color=COLOURS[OURS], label="starlette-ws used less CPU than FastAPI (≤ 1.0×)"),
        Patch(color=MORE_CPU, label="starlette-ws used more CPU than FastAPI (> 1.0×)"),
        Line2D([], [], color=COLOURS[REFERENCE], linestyle="--", label="FastAPI = 1.0×"),
        Patch(color=NOISE, label="0.9–1.1×: within this machine's noise"),
    ]
    axes.legend(handles=legend, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    save(figure, path)


def stacked_pairs(axes: Any, loc: Loc, labels: Sequence[str]) -> None:
    """Per label, one bar per side: code at the bottom, page (lighter) on top, the sum above."""
    width = 0.38
    for name, offset in ((OURS, -width / 2), (REFERENCE, width / 2)):
        split = loc_split(loc, name)
        code, page = [split[label][0] for label in labels], [split[label][1] for label in labels]
        positions = [i + offset for i in range(len(labels))]
        axes.bar(positions, code, width, color=COLOURS[name], label=f"{name}: code")
        axes.bar(positions, page, width, bottom=code, color=COLOURS[name], alpha=0.45, label=f"{name}: page")
        for position, low, high in zip(positions, code, page, strict=True):
            axes.annotate(str(low + high), (position, low + high), ha="center", va="bottom", fontsize=9)
    axes.set_xticks(range(len(labels)), labels)
    axes.margins(y=0.12)


def loc_chart(loc: Loc, path: Path) -> None:
    figure, (demos, shared) = pyplot().subplots(1, 2, figsize=(9, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    stacked_pairs(demos, loc, loc.demos)
    stacked_pairs(shared, loc, ["shared"])
    demos.set_ylabel("lines (non-blank, non-comment)")
    demos.set_title("Per demo: endpoint + page")
    shared.set_title("Shared (own scale)")
    demos.legend(fontsize=8, loc="upper left")
    figure.suptitle("Lines of code: starlette-ws vs the FastAPI twin")
    save(figure, path)


def draw(charts: Path, medians: Medians | None, loc: Loc | None) -> list[Path]:
    """Draw every chart the results allow into `charts` (emptied first); the files written."""
    charts.mkdir(parents=True, exist_ok=True)
    for old in charts.glob("*.png"):
        old.unlink()
    if loc is not None:
        loc_chart(loc, charts / LOC_CHART)
    for headline in HEADLINES:
        if medians is not None and headline_apps(headline, medians):
            headline_chart(headline, medians, charts / headline.file)
    if medians is not None and cpu_ratio_scenarios(medians):
        cpu_ratio_chart(medians, charts / CPU_RATIO_CHART)
    return sorted(charts.glob("*.png"))
