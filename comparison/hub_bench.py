"""Broadcast backends and a client that never reads: the chat hub's figures.

Run from the repository root (``make bench`` runs it after ``comparison.bench``)::

    python -m comparison.hub_bench [--quick] [--rounds N] [--out comparison/results/hub_bench.json]

1. **fan-out**: ``loadgen.broadcast_fanout`` (receivers in a spawned process, one sender paced
   inside the chat's flood limit) against ``starlette_ws.app:app`` for every broadcast backend:
   ``memory://``, Redis with one uvicorn process, Redis with ``--workers 2`` (the receivers land
   on both workers) and PostgreSQL. Rounds alternate the configurations (each round starts one
   further along); the summary gives medians and every configuration's ratio to ``memory://``.
2. **stalled client**: the server's RSS while ~100 MiB (``--quick``: 20 MiB) of 60 KiB chat
   messages are broadcast at 40 messages/s to two live readers and to a raw client that never
   reads (``harness.rawws.StalledClient``). The hub should cut that client off with 1013 once its
   1 MiB outbox overflows, so the RSS stays near idle and the live readers get every message.
   It runs once, after the fan-out rounds.

Redis and PostgreSQL are started here (``harness.services``, free loopback ports, temporary
directories) and stopped at the end; one that cannot start skips its configurations with a
note. Nothing is pinned to a CPU: the server, the engines and the load generator share the
machine alike for every configuration. Every wait is bounded; every process started here is
stopped, the uvicorn workers included.
"""

import argparse
import asyncio
import contextlib
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from comparison import common, loadgen
from comparison.common import RESULTS, number
from comparison.loadgen import Figures
from comparison.stats import medians, ratio, times
from harness import services
from harness.rawws import StalledClient
from harness.servers import UvicornServer, health

APP = "starlette_ws.app:app"
MIB = 2**20
START_TIMEOUT = 30.0  # seconds for uvicorn (every worker) to finish its start-up
STOP_TIMEOUT = 8.0  # seconds for uvicorn to stop after SIGTERM before it is killed
GRACEFUL_SHUTDOWN = 3  # uvicorn's --timeout-graceful-shutdown
HTTP_TIMEOUT = 2.0
SETTLE = 1.0  # seconds to let the server settle before an RSS reading
SAMPLE_INTERVAL = 0.1  # the RSS sampler's period (seconds)
HEALTH_EVERY = 5  # the RSS sampler asks /health every this many samples
SPLIT_INTERVAL = 0.5  # seconds between two counts of the connections per worker
SAMPLER_LIMIT = 600.0  # no sampler thread lives longer than this
STALLED_ID = 4  # chat ids of the stalled-client scenario: sender 1, live readers 2 and 3
LIVE_IDS = (2, 3)
KEEPALIVE_TIMEOUT = 1011  # uvicorn's close code when a client leaves its pings unanswered


@dataclass(frozen=True)
class Workload:
    """How much each scenario sends and how fast (--quick: QUICK)."""

    rounds: int
    receivers: int  # fan-out: chat receivers
    fanout_messages: int  # fan-out: measured broadcasts per run
    fanout_rate: float  # fan-out: messages/s from the sender (flood limit: 50/s)
    flood_mib: float  # stalled client: MiB broadcast in all
    flood_rate: float  # stalled client: messages/s from the sender
    message_bytes: int  # stalled client: bytes per chat message (under MAX_MESSAGE_BYTES, 64 KiB)


FULL = Workload(3, 200, 200, 40.0, 100.0, 40.0, 60 * 1024)
QUICK = Workload(1, 200, 60, 40.0, 20.0, 40.0, 60 * 1024)


@dataclass(frozen=True)
class Config:
    key: str
    engine: str  # memory, redis or postgres
    workers: int = 1

    @property
    def scenario(self) -> str:
        return f"fanout-{self.key}"

    @property
    def label(self) -> str:
        processes = f"{self.workers} workers" if self.workers > 1 else "1 process"
        return f"{self.engine}:// ({processes})"


CONFIGS = (
    Config("memory", "memory"),
    Config("redis", "redis"),
    Config("redis-2workers", "redis", 2),
    Config("postgres", "postgres"),
)
BASELINE = CONFIGS[0]
STALLED = "stalled-client"


# -- engines (Redis, PostgreSQL) -------------------------------------------------------------


def start_engine(engine: str) -> services.RedisServer | services.PostgresServer:
    """A fresh redis-server or PostgreSQL cluster; services.Unavailable when it is not installed."""
    return services.start_redis() if engine == "redis" else services.start_postgres()


def start_engines(engines: set[str], stack: contextlib.ExitStack, notes: list[str]) -> dict[str, str]:
    """{engine: BROADCAST_URL} for every engine that started; each is closed with `stack`."""
    urls = {"memory": "memory://"}
    for engine in sorted(engines - {"memory"}):
        started = time.perf_counter()
        try:
            server = start_engine(engine)
        except Exception as exc:
            notes.append(f"{engine} configurations skipped: {exc}")
            continue
        stack.callback(server.close)
        urls[engine] = server.url
        print(f"{engine} at {server.url} ({time.perf_counter() - started:.1f} s)", flush=True)
    return urls


def engine_version(binary: str) -> str:
    path = services.find_binary(binary)
    if path is None:
        return "not installed"
    done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
    return done.stdout.strip() or done.stderr.strip()


# -- the server under test -------------------------------------------------------------------


def start_server(broadcast_url: str, workers: int, log: Path) -> UvicornServer:
    """uvicorn on a free loopback port, returned once every worker has finished its start-up."""
    args = ["--no-access-log", "--timeout-graceful-shutdown", str(GRACEFUL_SHUTDOWN)]
    server = UvicornServer(
        APP,
        env={"BROADCAST_URL": broadcast_url},
        args=args,
        workers=workers,
        log_level="info",
        log_path=log,
        start_timeout=START_TIMEOUT,
        stop_timeout=STOP_TIMEOUT,
    )
    return server.start()


def errors_logged(log: Path) -> float:
    """Lines the server logged at ERROR (an "Exception in ASGI application" is one)."""
    return float(sum(line.startswith("ERROR:") for line in log.read_text(errors="replace").splitlines()))


def chat_connections(server: UvicornServer) -> float:
    """The chat registry size one server process reports on GET /health; NaN when it does not answer."""
    try:
        return float(health(server.http_url, HTTP_TIMEOUT)["chat_connections"])
    except (OSError, ValueError, KeyError):
        return math.nan


# -- background sampling ---------------------------------------------------------------------


class Sampler(threading.Thread):
    """Calls `sample` every `interval` seconds until `stop()` (or SAMPLER_LIMIT seconds)."""

    def __init__(self, sample: Callable[[], None], interval: float) -> None:
        super().__init__(daemon=True)
        self._sample = sample
        self._interval = interval
        self._halt = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + SAMPLER_LIMIT
        while not self._halt.wait(self._interval) and time.monotonic() < deadline:
            self._sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


@contextlib.contextmanager
def sampling(sample: Callable[[], None], interval: float) -> Iterator[None]:
    sampler = Sampler(sample, interval)
    sampler.start()
    try:
        yield
    finally:
        sampler.stop()


class WorkerSplit:
    """How the server's established connections spread over its uvicorn workers."""

    def __init__(self, server: UvicornServer) -> None:
        self.server = server
        self.busiest: list[int] = []  # per-worker counts at the moment with the most connections

    def sample(self) -> None:
        counts = []
        with contextlib.suppress(psutil.Error):
            for worker in psutil.Process(self.server.pid).children():
                with contextlib.suppress(psutil.Error):
                    sockets = worker.net_connections(kind="tcp")
                    counts.append(sum(1 for s in sockets if self.established(s)))
        if sum(counts) > sum(self.busiest):
            self.busiest = counts

    def established(self, sock: Any) -> bool:
        return bool(sock.status == psutil.CONN_ESTABLISHED and sock.laddr and sock.laddr.port == self.server.port)

    def busiest_share(self) -> float:
        """The largest worker's share of the connections: 1/workers is an even split, 1.0 one worker."""
        total = sum(self.busiest)
        return max(self.busiest) / total if total else math.nan


# -- 1. fan-out per backend ------------------------------------------------------------------


def fanout_once(config: Config, url: str, workload: Workload, logs: Path) -> dict[str, Any]:
    server = start_server(url, config.workers, logs / f"hub-{config.scenario}.log")
    started = time.perf_counter()
    split = WorkerSplit(server)
    try:
        with sampling(split.sample, SPLIT_INTERVAL) if config.workers > 1 else contextlib.nullcontext():
            figures = loadgen.broadcast_fanout(
                server.ws_url,
                workload.receivers,
                workload.fanout_messages,
                workload.fanout_rate,
                server_pid=server.pid,
            )
    finally:
        server.stop()
    if config.workers > 1:
        figures["busiest_worker_share"] = split.busiest_share()
    figures["server_errors_logged"] = errors_logged(server.log_path)
    return {"figures": figures, "seconds": time.perf_counter() - started, "loadavg_1min": os.getloadavg()[0]}


def rotated(configs: Sequence[Config], round_: int) -> list[Config]:
    """The configurations in round order: each round starts one further along."""
    shift = (round_ - 1) % len(configs)
    return [*configs[shift:], *configs[:shift]]


def fanout_rounds(
    configs: Sequence[Config], urls: dict[str, str], workload: Workload, rounds: int, logs: Path
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for round_ in range(1, rounds + 1):
        for config in rotated(configs, round_):
            try:
                outcome = fanout_once(config, urls[config.engine], workload, logs)
            except Exception as error:  # one failed run must not end the study
                outcome = {"error": f"{type(error).__name__}: {error}"}
            progress(f"{round_}/{rounds}", config.scenario, outcome)
            runs.append({"round": round_, "scenario": config.scenario, "config": asdict(config), **outcome})
    return runs


# -- 2. a client that never reads ------------------------------------------------------------


@dataclass
class FloodWatch:
    """Shared by the sender (bytes sent) and the sampler thread (RSS peak, the cut-off moment)."""

    server: UvicornServer
    connections_before: float
    peak_rss: int = 0
    sent_bytes: int = 0
    cut_at_bytes: int | None = None
    samples: int = 0

    def sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak_rss = max(self.peak_rss, loadgen.tree_rss(self.server.pid))
        self.samples += 1
        if self.cut_at_bytes is None and self.samples % HEALTH_EVERY == 0:
            sent = self.sent_bytes
            if chat_connections(self.server) < self.connections_before:
                self.cut_at_bytes = sent


@dataclass
class Reading:
    received: int = 0
    in_order: bool = True
    latencies_ns: list[int] = field(default_factory=list)


def flood_message(sequence: int, size: int) -> str:
    head = f"{sequence} {time.time_ns()} "
    return head + "x" * (size - len(head))


async def send_flood(ws: ClientConnection, messages: int, workload: Workload, watch: FloodWatch) -> None:
    """`messages` chat lines of `message_bytes` each, paced at `flood_rate` per second."""
    started = time.perf_counter()
    for sequence in range(messages):
        delay = started + sequence / workload.flood_rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await ws.send(flood_message(sequence, workload.message_bytes))
        watch.sent_bytes += workload.message_bytes


async def read_flood(ws: ClientConnection, messages: int, reading: Reading) -> None:
    """Count the sender's broadcasts as they arrive (in order, with their delivery latency)."""
    prefix = f"Client #{loadgen.SENDER_ID} says: "
    while reading.received < messages:
        message = await ws.recv()
        if isinstance(message, str) and message.startswith(prefix):
            now = time.time_ns()
            sequence, stamp, _ = message[len(prefix) :].split(" ", 2)
            reading.in_order = reading.in_order and int(sequence) == reading.received
            reading.received += 1
            reading.latencies_ns.append(now - int(stamp))


async def open_stalled(server: UvicornServer) -> StalledClient:
    return await asyncio.to_thread(StalledClient, server, f"/ws/{STALLED_ID}")


async def flood(server: UvicornServer, workload: Workload) -> Figures:
    messages = math.ceil(workload.flood_mib * MIB / workload.message_bytes)
    limit = messages / workload.flood_rate + 2 * loadgen.GRACE
    async with contextlib.AsyncExitStack() as stack:
        sender = await stack.enter_async_context(loadgen.open_ws(f"{server.ws_url}/ws/{loadgen.SENDER_ID}"))
        live = [await stack.enter_async_context(loadgen.open_ws(f"{server.ws_url}/ws/{i}")) for i in LIVE_IDS]
        stalled = await open_stalled(server)
        stack.callback(stalled.reset)
        await asyncio.sleep(SETTLE)
        before = await asyncio.to_thread(chat_connections, server)
        idle = loadgen.tree_rss(server.pid)
        watch = FloodWatch(server, before, peak_rss=idle)
        readings = [Reading() for _ in live]
        drainer = asyncio.create_task(loadgen.drain(sender))
        readers = [asyncio.create_task(read_flood(ws, messages, r)) for ws, r in zip(live, readings, strict=True)]
        with sampling(watch.sample, SAMPLE_INTERVAL):
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                async with asyncio.timeout(limit):
                    await send_flood(sender, messages, workload, watch)
                    await asyncio.gather(*readers)
            for task in [*readers, drainer]:
                task.cancel()
            await asyncio.gather(*readers, drainer, return_exceptions=True)
        await asyncio.sleep(SETTLE)
        end = loadgen.tree_rss(server.pid)
        after = await asyncio.to_thread(chat_connections, server)
        texts, close = await asyncio.to_thread(stalled.frames, HTTP_TIMEOUT)
    return flood_figures(messages, watch, (idle, end), (before, after), readings, (texts, close))


def flood_figures(
    messages: int,
    watch: FloodWatch,
    rss: tuple[int, int],
    connections: tuple[float, float],
    readings: list[Reading],
    stalled: tuple[int, tuple[int, str] | None],
) -> Figures:
    (idle, end), (before, after), (texts, close) = rss, connections, stalled
    latencies = sorted(value for reading in readings for value in reading.latencies_ns)
    cut_at = math.nan if watch.cut_at_bytes is None else watch.cut_at_bytes / MIB
    return {
        "broadcast_mib": watch.sent_bytes / MIB,
        "messages": float(messages),
        "rss_idle_mib": idle / MIB,
        "rss_peak_mib": watch.peak_rss / MIB,
        "rss_end_mib": end / MIB,
        "rss_growth_mib": (watch.peak_rss - idle) / MIB,
        "rss_samples": float(watch.samples),
        "chat_connections_before": before,
        "chat_connections_after": after,
        "stalled_cut_off": float(after == before - 1),
        "stalled_cut_after_mib": cut_at,
        "stalled_close_code": float(close[0]) if close else math.nan,
        "stalled_messages_received": float(texts),
        "live_delivered": min(reading.received for reading in readings) / max(messages, 1),
        "live_in_order": float(all(reading.in_order for reading in readings)),
        "live_p50_ms": loadgen.percentile(latencies, 0.50) / 1e6,
        "live_p99_ms": loadgen.percentile(latencies, 0.99) / 1e6,
    }


def stalled_once(workload: Workload, logs: Path) -> dict[str, Any]:
    server = start_server("memory://", 1, logs / f"hub-{STALLED}.log")
    started = time.perf_counter()
    try:
        figures = loadgen.run(flood(server, workload))
    finally:
        server.stop()
    figures["server_errors_logged"] = errors_logged(server.log_path)
    return {"figures": figures, "seconds": time.perf_counter() - started, "loadavg_1min": os.getloadavg()[0]}


def stalled_run(workload: Workload, logs: Path) -> dict[str, Any]:
    try:
        outcome = stalled_once(workload, logs)
    except Exception as error:
        outcome = {"error": f"{type(error).__name__}: {error}"}
    progress("once", STALLED, outcome)
    return {"round": 1, "scenario": STALLED, "config": {"broadcast_url": "memory://", "workers": 1}, **outcome}


# -- summary ---------------------------------------------------------------------------------


def progress(step: str, scenario: str, outcome: dict[str, Any]) -> None:
    print(f"[{step}] {scenario:<23} {common.outcome_line(outcome)}", flush=True)


def ratios(summary: dict[str, dict[str, float]], configs: Sequence[Config]) -> dict[str, dict[str, float | None]]:
    """{fan-out scenario: {metric: its median / memory://'s median}}."""
    baseline = summary.get(BASELINE.scenario, {})
    result: dict[str, dict[str, float | None]] = {}
    for config in configs:
        table = summary.get(config.scenario, {})
        result[config.scenario] = {metric: ratio(value, baseline.get(metric)) for metric, value in table.items()}
    return result


FANOUT_COLUMNS = (
    ("deliveries_per_s", "deliveries/s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("delivered", "delivered"),
    ("server_cpu_us_per_op", "server CPU us/delivery"),
)


def print_fanout(summary: dict[str, dict[str, float]], configs: Sequence[Config], workload: Workload) -> None:
    table = ratios(summary, configs)
    header = ["configuration", *(title for _, title in FANOUT_COLUMNS)]
    rows = [header]
    for config in configs:
        values = summary.get(config.scenario, {})
        cells = [f"{number(values.get(m))} ({times(table[config.scenario].get(m))})" for m, _ in FANOUT_COLUMNS]
        rows.append([config.label, *cells])
    print(
        f"\nFan-out: {workload.receivers} receivers, {workload.fanout_messages} messages at {workload.fanout_rate:g}/s"
    )
    print("medians; in brackets, the ratio to memory:// (lower is better except deliveries/s and delivered)")
    print("deliveries/s is the offered load (receivers x rate) while a server keeps up: latency and CPU tell apart")
    print(common.text_table(rows))
    for config in configs:
        share = summary.get(config.scenario, {}).get("busiest_worker_share")
        if share is not None:
            print(f"{config.label}: the busiest worker held {share:.0%} of the connections")


def integer(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else str(round(value))


def print_stalled(figures: dict[str, float]) -> None:
    if not figures:
        return
    get = figures.get
    print(f"\nStalled client: {number(get('broadcast_mib'))} MiB broadcast in {integer(get('messages'))} messages")
    print(
        f"  server RSS: idle {number(get('rss_idle_mib'))} MiB, peak {number(get('rss_peak_mib'))} MiB, "
        f"end {number(get('rss_end_mib'))} MiB; growth peak-idle {number(get('rss_growth_mib'))} MiB"
    )
    print(
        f"  stalled client cut off: {'yes' if get('stalled_cut_off') else 'NO'} "
        f"(close code {integer(get('stalled_close_code'))}, after ~{number(get('stalled_cut_after_mib'))} MiB; "
        f"chat connections {integer(get('chat_connections_before'))} -> {integer(get('chat_connections_after'))})"
    )
    if get("stalled_close_code") == KEEPALIVE_TIMEOUT:
        print("  (1011: uvicorn's keepalive ping timed out and closed it before the hub's 1013 could go out)")
    print(f"  server errors logged: {integer(get('server_errors_logged'))}")
    print(
        f"  live readers got every message: {'yes' if get('live_delivered') == 1.0 else 'NO'} "
        f"(delivered {number(get('live_delivered'))}, in order {'yes' if get('live_in_order') else 'NO'}, "
        f"p50 {number(get('live_p50_ms'))} ms, p99 {number(get('live_p99_ms'))} ms)"
    )


# -- report ----------------------------------------------------------------------------------


PACKAGES = ("starlette", "uvicorn", "websockets", "uvloop", "redis", "asyncpg", "psutil")


def meta(
    workload: Workload, rounds: int, configs: Sequence[Config], notes: list[str], seconds: float
) -> dict[str, Any]:
    machine = common.machine(PACKAGES)
    machine["versions"] |= {binary: engine_version(binary) for binary in ("redis-server", "postgres")}
    return {
        **machine,
        "app": APP,
        "pinning": "none: server, engines and load generator share every CPU",
        "rounds": rounds,
        "settings": asdict(workload),
        "configs": {config.scenario: {**asdict(config), "label": config.label} for config in configs},
        "baseline": BASELINE.scenario,
        "notes": notes,
        "seconds": seconds,
    }


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="starlette-ws chat hub: broadcast backends and a stalled client")
    parser.add_argument("--rounds", type=int, default=None, help="fan-out rounds (default 3, --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="fewer messages, 20 MiB to the stalled client")
    parser.add_argument("--configs", default=",".join(c.key for c in CONFIGS), help="comma-separated subset")
    parser.add_argument("--no-stalled", action="store_true", help="skip the stalled-client scenario")
    parser.add_argument("--out", type=Path, default=RESULTS / "hub_bench.json")
    return parser.parse_args(argv)


def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so every server started here is stopped."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    workload = QUICK if args.quick else FULL
    rounds = args.rounds or workload.rounds
    wanted = args.configs.split(",")
    configs = [config for config in CONFIGS if config.key in wanted]
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    loadgen.raise_nofile(65536)
    logs = common.logs_dir()
    notes: list[str] = []
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        urls = start_engines({config.engine for config in configs}, stack, notes)
        for note in notes:
            print(f"note: {note}", flush=True)
        configs = [config for config in configs if config.engine in urls]
        print(f"{rounds} round(s) of {len(configs)} fan-out configuration(s), nothing pinned", flush=True)
        runs += fanout_rounds(configs, urls, workload, rounds, logs)
        if not args.no_stalled:
            runs.append(stalled_run(workload, logs))
    summary = medians(runs, "scenario")
    print_fanout(summary, configs, workload)
    print_stalled(summary.get(STALLED, {}))
    seconds = time.perf_counter() - started
    report = {
        "meta": meta(workload, rounds, configs, notes, seconds),
        "medians": summary,
        "ratios": ratios(summary, configs),
        "runs": runs,
    }
    common.write_json(args.out, report, started)


if __name__ == "__main__":
    main()
