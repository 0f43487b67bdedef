"""Room tokens: what the signed-token check costs per connect, for a token the process has not
seen and for one it has, and whether tokens cost anything per message.

Run from the repository root (``make bench`` runs it after ``comparison.rooms_bench``)::

    python -m comparison.token_bench [--quick] [--rounds N] [--out comparison/results/token_bench.json]

A server checks a room socket's token with ``app.state.tokens``, a ``tokens.Tokens``: its
``identify`` remembers every token it verified (by a blake2b digest, the 10,000 last used, until
the token's ``exp``), so a token it has seen before is not decoded again, and a first-seen one
goes through ``tokens.identify`` (PyJWT's ``jwt.decode``, then the claims' checks). Per message
``RoomEndpoint.on_receive`` reads ``read_only``, a plain attribute ``admit`` sets once.

Every "first-seen" token here is one nothing has seen: made in advance, outside anything timed,
each with an ``iat`` one second earlier than the last made and the ``exp`` they all share, so
they are all distinct and all as long as one another (and as the seen-before ones).

1. **the check alone**, in this process pinned to the server's CPU before any server starts,
   timeit-style (many calls per round, the timers interleaved, the order rotating, medians of
   rounds): ``jwt.decode`` (the floor under any check that decodes), ``tokens.identify(token,
   verifier)``, ``Tokens.identify`` on a first-seen token (a cache miss: digest, lookup, decode,
   claims, insert) and on a token seen before (a cache hit: digest and lookup), and the whole
   check ``RoomEndpoint.admit`` runs once per connect (``Tokens.identify``, ``tokens.for_room``,
   ``Identity.may_send``) for either kind of token; and the per-message read of ``read_only`` on
   an endpoint, set as ``admit`` sets it (tokens on) and left at the class default (tokens off).
   Each timer that calls ``Tokens`` has one of its own, kept across rounds: once it holds 10,000
   tokens each new one also pushes out the least recently used, as in a busy server.
2. **per connect**: two ``starlette_ws.app:app`` servers on ``memory://`` with the same settings
   but for ``ROOMS_TOKEN_SECRET`` (set: every room socket needs ``?token=``; unset: rooms are
   open), both pinned to the first CPU, the load generator on the others. A few clients at once,
   each in a room of its own, connect, read the room's presence message and close, again and
   again; the server's CPU per connect + close, in three runs: tokens off; tokens on with a
   first-seen token every connect ("first"); tokens on with each client's one token, seen by the
   server in the warm-up, every connect ("seen").
3. **per message**: on the same two servers, one member of a fresh room says ``messages`` lines
   (a window of them in flight, each one's own broadcast awaited before the next goes out past
   the window) and hears every one back; the server's CPU per line. The rate limits are raised
   out of the way (``CHAT_RATE_*``, the connect gates, ``ROOM_PRESENCE_*``) on both servers.

Each round starts both servers afresh (one process's own luck, its memory layout and hash seed,
moves these figures by several percent, so no pair of processes is kept for every round), checks
that the token server refuses a connection without a token and the other does not, warms both
(unmeasured connects, with first-seen and seen tokens, and lines), then measures the runs back
to back, their order changing from round to round, and stops them. Ratios and differences are
the medians of each round's. Every wait is bounded; every process started here is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import inspect
import itertools
import os
import secrets
import signal
import statistics
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import jwt

from comparison import common, loadgen
from comparison.common import RESULTS, number, placement
from comparison.hub_bench import exit_on_sigterm
from comparison.loadgen import Figures, tree_cpu
from comparison.rooms_bench import UNLIMITED_CONNECTS
from comparison.stats import medians, ratio, times
from harness.rawws import OP_TEXT, RawWebSocket, open_raw, text_frame
from harness.servers import UvicornServer, errors_in
from starlette_ws import tokens
from starlette_ws.rooms import RoomEndpoint
from starlette_ws.settings import Settings

APP = "starlette_ws.app:app"
ON, OFF = "on", "off"  # the two servers; per message, the two configurations
FIRST, SEEN = "first", "seen"  # per connect with tokens on: a token new to the server, or one it has seen
CONNECT_CONFIGS = (OFF, FIRST, SEEN)
GOAL_US = 30.0  # the bound on the check, per connect
PATTERNS = ("lobby", "team-*", "bench-*")  # the token's rooms; the bench's rooms match the last
TTL = 3600  # seconds from the bench's start to every token's exp
FIRST_CLIENT_ID = 100
START_TIMEOUT = 30.0
STOP_TIMEOUT = 8.0
READ_TIMEOUT = 10.0  # seconds any one awaited frame may take
WARM_CONNECTS = 10  # per client and kind of token, on each fresh server before it is measured
WARM_MESSAGES = 200
WINDOW_WARM = 32
SETTLE = 0.05  # seconds after a batch before the server's CPU is read: its last departure's work
MESSAGE = b'"type":"message"'
PRESENCE = b'"type":"presence"'
OPEN = {
    **UNLIMITED_CONNECTS,
    "CHAT_RATE_PER_SECOND": "1000000",
    "CHAT_RATE_BURST": "1000000",
    # Every arrival and departure announced, none coalesced into a later member list.
    "ROOM_PRESENCE_RATE": "1000000",
    "ROOM_PRESENCE_BURST": "1000000",
}

# The timers of the check alone: what each is, and which kind of token it is given.
DECODE = "jwt_decode"
CHECK_TIMERS = {
    DECODE: FIRST,
    "identify": FIRST,  # tokens.identify(token, verifier): decode + the claims' checks
    "tokens_first": FIRST,  # Tokens.identify, a cache miss
    "tokens_seen": SEEN,  # Tokens.identify, a cache hit
    "check_first": FIRST,  # Tokens.identify + for_room + may_send, as admit runs them
    "check_seen": SEEN,
}
READ_ONLY_SET, READ_ONLY_DEFAULT = "read_only_set", "read_only_default"


@dataclass(frozen=True)
class Workload:
    check_rounds: int
    first_calls: int  # calls per round of a timer given first-seen tokens (each one made beforehand)
    seen_calls: int  # calls per round of a timer given a token seen before
    read_calls: int  # attribute reads per round
    rounds: int  # paired server rounds
    clients: int  # connecting at once (under ROOM_CONNECTS_AT_ONCE, 8)
    connects: int  # per client, run and round
    messages: int
    window: int  # lines in flight


FULL = Workload(
    check_rounds=15,
    first_calls=2000,
    seen_calls=20000,
    read_calls=1_000_000,
    rounds=21,
    clients=4,
    connects=250,
    messages=5000,
    window=32,
)
QUICK = Workload(
    check_rounds=5,
    first_calls=500,
    seen_calls=5000,
    read_calls=200_000,
    rounds=3,
    clients=4,
    connects=50,
    messages=500,
    window=32,
)


class Mint:
    """Valid tokens that were never made before: each one's `iat` a second earlier than the last
    one's, every `exp` the same (the bench's start + TTL), so they all differ and are all as long."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.start = int(time.time())
        self.made = 0

    def one(self, client_id: int) -> str:
        self.made += 1
        return tokens.make(self.secret, client_id, PATTERNS, ttl=TTL + self.made, now=self.start - self.made)

    def many(self, client_id: int, count: int) -> list[str]:
        made = [self.one(client_id) for _ in range(count)]
        if len(set(made)) != count:
            raise RuntimeError("the mint made the same token twice")
        return made


# -- 1. the check alone -----------------------------------------------------------------------


class Feed:
    """The next first-seen token for a timer: a list made before each timed run, used up by it."""

    def __init__(self) -> None:
        self.next: Callable[[], str] = iter(()).__next__


def check_timers(
    secret: str, mint: Mint
) -> tuple[dict[str, Callable[[], object]], dict[str, Feed], dict[str, tokens.Tokens], dict[str, Any]]:
    """The calls to time, each checked once to do what it is timed for; the first-seen timers'
    feeds and caches; and what the token is."""
    verifier = Settings(rooms_token_secret=secret).verifier
    assert verifier is not None
    client_id, room = FIRST_CLIENT_ID, "bench-c0"
    seen = mint.one(client_id)
    caches = {name: tokens.Tokens(verifier) for name in ("tokens_first", "tokens_seen", "check_first", "check_seen")}
    for name in ("tokens_seen", "check_seen"):
        first, _ = caches[name].identify(seen)
        again, errors = caches[name].identify(seen)
        if again is None or again is not first or errors:  # a hit returns the identity remembered
            raise RuntimeError(f"Tokens does not remember the token it verified: {errors}")
        if tokens.for_room(again, client_id, room) or not again.may_send(room):
            raise RuntimeError(f"the bench's token does not let client {client_id} join and send in {room!r}")
    algorithms = list(verifier.algorithms)
    feeds = {name: Feed() for name, kind in CHECK_TIMERS.items() if kind == FIRST}

    def decode() -> object:
        return jwt.decode(feeds[DECODE].next(), secret, algorithms=algorithms)

    def identify() -> object:
        return tokens.identify(feeds["identify"].next(), verifier)

    def tokens_first() -> object:
        return caches["tokens_first"].identify(feeds["tokens_first"].next())

    def tokens_seen() -> object:
        return caches["tokens_seen"].identify(seen)

    def check(cache: tokens.Tokens, token: str) -> bool:
        """What `RoomEndpoint.admit` does with the token: identify, the room, read-only or not."""
        identified, errors = cache.identify(token)
        if identified is None or errors or tokens.for_room(identified, client_id, room):
            raise RuntimeError(f"the check refused the bench's token: {errors}")
        return not identified.may_send(room)

    def check_first() -> object:
        return check(caches["check_first"], feeds["check_first"].next())

    def check_seen() -> object:
        return check(caches["check_seen"], seen)

    timers: dict[str, Callable[[], object]] = {
        DECODE: decode,
        "identify": identify,
        "tokens_first": tokens_first,
        "tokens_seen": tokens_seen,
        "check_first": check_first,
        "check_seen": check_seen,
    }
    about = {
        "token_bytes": len(seen),
        "patterns": list(PATTERNS),
        "room": room,
        "algorithm": "HS256",
        "cache_size": caches["tokens_first"].size,
    }
    return timers, feeds, caches, about


def read_only_timers() -> dict[str, timeit.Timer]:
    """`endpoint.read_only` as `on_receive` reads it: once `admit` set it (tokens on), and left at
    the class default (tokens off). Statements, not calls: timeit's loop is all that comes with them."""
    default = inspect.getattr_static(RoomEndpoint, "read_only")
    if type(default) is not bool:
        raise RuntimeError(f"RoomEndpoint.read_only is no longer a plain attribute: {type(default).__name__}")
    with_token = RoomEndpoint.__new__(RoomEndpoint)  # no socket: only the attribute is read
    with_token.read_only = False  # what admit sets for a token that may send in the room
    without = RoomEndpoint.__new__(RoomEndpoint)
    return {
        READ_ONLY_SET: timeit.Timer("endpoint.read_only", globals={"endpoint": with_token}),
        READ_ONLY_DEFAULT: timeit.Timer("endpoint.read_only", globals={"endpoint": without}),
    }


def check_rounds(secret: str, mint: Mint, workload: Workload) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """µs per call of each timer, one run per timer and round, the order rotating each round. A
    first-seen timer's tokens are made before its run starts, exactly as many as it calls for."""
    timers, feeds, caches, about = check_timers(secret, mint)
    compiled = {name: timeit.Timer(call) for name, call in timers.items()}
    compiled.update(read_only_timers())
    calls = {name: workload.first_calls if CHECK_TIMERS.get(name) == FIRST else workload.seen_calls for name in timers}
    calls.update({name: workload.read_calls for name in (READ_ONLY_SET, READ_ONLY_DEFAULT)})

    def timed(name: str, count: int) -> float:
        if name not in feeds:
            return compiled[name].timeit(number=count)
        feeds[name].next = iter(mint.many(FIRST_CLIENT_ID, count)).__next__
        cache = caches.get(name)
        held = 0 if cache is None else len(cache)
        seconds = compiled[name].timeit(number=count)
        if cache is not None and len(cache) != min(cache.size, held + count):  # every call a miss, inserted
            raise RuntimeError(f"{name}: {held + count - len(cache)} of {count} first-seen tokens were not new to it")
        return seconds

    for name in compiled:  # unmeasured: the first calls' imports and caches
        timed(name, max(1, calls[name] // 10))
    names = list(compiled)
    runs = []
    for round_ in range(1, workload.check_rounds + 1):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = timed(name, calls[name])
            runs.append(
                {
                    "round": round_,
                    "scenario": "check",
                    "config": name,
                    "calls": calls[name],
                    "figures": {"us": seconds * 1e6 / calls[name]},
                }
            )
    about["first_cache_held"] = {name: len(caches[name]) for name in ("tokens_first", "check_first")}
    return runs, about


# -- 2. and 3. against a real server ------------------------------------------------------------


def room_url(base_url: str, room: str, client_id: int, token: str | None) -> str:
    url = f"{base_url}/rooms/{room}/ws/{client_id}"
    return url if token is None else f"{url}?token={token}"


async def next_text(ws: RawWebSocket) -> bytes:
    async with asyncio.timeout(READ_TIMEOUT):
        while True:
            opcode, payload = await ws.recv()
            if opcode == OP_TEXT:
                return payload


async def join(url: str) -> RawWebSocket:
    """A member of the room once its presence message (the first thing a room sends) arrived."""
    async with asyncio.timeout(READ_TIMEOUT):
        ws = await open_raw(url)
    try:
        first = await next_text(ws)
        if PRESENCE not in first:
            raise RuntimeError(f"the room's first message is not its member list: {first[:120]!r}")
    except BaseException:
        ws.abort()
        raise
    return ws


async def connect_close(urls: Sequence[str]) -> int:
    """Join, then close (the closing handshake, until the server drops TCP), once per URL; the
    number that failed."""
    failed = 0
    for url in urls:
        try:
            ws = await join(url)
            await ws.close()
        except Exception:
            failed += 1
    return failed


async def connects_async(server_pid: int, urls: Sequence[Sequence[str]]) -> Figures:
    """Each client its URLs in turn, the clients at once; the server's CPU per connect + close."""
    cpu_before = tree_cpu(server_pid)
    started = time.perf_counter()
    failures = await asyncio.gather(*(connect_close(mine) for mine in urls))
    elapsed = time.perf_counter() - started
    await asyncio.sleep(SETTLE)
    cpu = tree_cpu(server_pid) - cpu_before
    done = sum(len(mine) for mine in urls) - sum(failures)
    return {
        "server_cpu_us_per_connect": cpu / max(done, 1) * 1e6,
        "connects_per_s": done / elapsed,
        "errors": float(sum(failures)),
    }


async def say(ws: RawWebSocket, tag: str, count: int, window: int) -> None:
    """Send `count` lines, at most `window` of them unanswered, until the last comes back; every
    one must come back, in order (the member is alone in its room)."""
    sent = heard = 0
    while sent < min(window, count):
        ws.send(text_frame(f"{tag} {sent}"))
        sent += 1
    while heard < count:
        payload = await next_text(ws)
        if MESSAGE not in payload:
            continue
        expected = f'"text":"{tag} {heard}"'.encode()
        if expected not in payload:
            raise RuntimeError(f"line {heard} of {tag!r} did not come back in order: {payload[:160]!r}")
        heard += 1
        if sent < count:
            ws.send(text_frame(f"{tag} {sent}"))
            sent += 1


async def messages_async(server_pid: int, url: str, messages: int, window: int) -> Figures:
    ws = await join(url)
    try:
        await say(ws, "warm", window * 2, window)  # unmeasured
        cpu_before = tree_cpu(server_pid)
        started = time.perf_counter()
        await say(ws, "line", messages, window)
        elapsed = time.perf_counter() - started
        cpu = tree_cpu(server_pid) - cpu_before
    finally:
        await ws.close()
    return {"server_cpu_us_per_message": cpu / messages * 1e6, "messages_per_s": messages / elapsed}


async def refused_without_token(base_url: str) -> bool:
    """Whether a room refuses a connection that brings no token (the secret is in effect)."""
    try:
        ws = await join(room_url(base_url, "bench-check", FIRST_CLIENT_ID, None))
    except ConnectionError:
        return True
    await ws.close()
    return False


def measured(scenario: str, config: str, round_: int, measure: Callable[[], Figures]) -> dict[str, Any]:
    began = time.perf_counter()
    try:
        outcome: dict[str, Any] = {"figures": measure()}
    except Exception as error:  # one failed run must not end the study
        outcome = {"error": f"{type(error).__name__}: {error}"}
    outcome.update(seconds=time.perf_counter() - began, loadavg_1min=os.getloadavg()[0])
    return {"round": round_, "scenario": scenario, "config": config, **outcome}


def start_server(config: str, secret: str | None, cpus: set[int] | None, logs: Path) -> UvicornServer:
    server = UvicornServer(
        APP,
        env={"BROADCAST_URL": "memory://", "METRICS": "true", "ROOMS_TOKEN_SECRET": secret, **OPEN},
        cpus=cpus,
        log_level="warning",
        log_path=logs / f"tokens-{config}.log",
        start_timeout=START_TIMEOUT,
        stop_timeout=STOP_TIMEOUT,
    )
    return server.start()


@dataclass(frozen=True)
class Plan:
    """One round's URLs, every token in them made before either server starts."""

    connects: dict[str, list[list[str]]]  # per connect config: each client's URLs in turn
    warm: dict[str, list[list[str]]]  # per server: the warm-up's connects
    speaker: dict[str, str | None]  # per server: the token of the member who speaks (None: no token)


def plan(mint: Mint, seen: dict[int, str], workload: Workload) -> Plan:
    """Per client: off, no token; first, a token made for each connect; seen, the client's one
    token, which the warm-up shows the server first. Relative URLs: the server's base goes before."""
    clients = {FIRST_CLIENT_ID + index: f"bench-c{index}" for index in range(workload.clients)}
    connects: dict[str, list[list[str]]] = {config: [] for config in CONNECT_CONFIGS}
    warm: dict[str, list[list[str]]] = {ON: [], OFF: []}
    for client_id, room in clients.items():
        connects[OFF].append([room_url("", room, client_id, None)] * workload.connects)
        firsts = mint.many(client_id, workload.connects)
        connects[FIRST].append([room_url("", room, client_id, token) for token in firsts])
        connects[SEEN].append([room_url("", room, client_id, seen[client_id])] * workload.connects)
        warm[OFF].append([room_url("", room, client_id, None)] * WARM_CONNECTS)
        warm[ON].append(
            [room_url("", room, client_id, token) for token in mint.many(client_id, WARM_CONNECTS)]
            + [room_url("", room, client_id, seen[client_id])] * WARM_CONNECTS
        )
    return Plan(connects, warm, {ON: seen[FIRST_CLIENT_ID], OFF: None})


def based(base_url: str, urls: list[list[str]]) -> list[list[str]]:
    return [[base_url + url for url in mine] for mine in urls]


def connect_run(server: UvicornServer, urls: list[list[str]]) -> Figures:
    return loadgen.run(connects_async(server.pid, based(server.ws_url, urls)))


def message_run(server: UvicornServer, room: str, token: str | None, messages: int, window: int) -> Figures:
    url = room_url(server.ws_url, room, FIRST_CLIENT_ID, token)
    return loadgen.run(messages_async(server.pid, url, messages, window))


def warm_up(servers: dict[str, UvicornServer], round_plan: Plan) -> None:
    """Unmeasured: each refuses (or not) a tokenless connect; its first connects (the token
    server's with first-seen tokens and then the seen ones, which it remembers from here on) and
    lines."""
    for config, server in servers.items():
        if loadgen.run(refused_without_token(server.ws_url)) != (config == ON):
            raise RuntimeError(f"the server with tokens {config} does not do what it should without a token")
        failed = connect_run(server, round_plan.warm[config])["errors"]
        if failed:
            raise RuntimeError(f"{failed:.0f} of the warm-up's connects failed on the server with tokens {config}")
        message_run(server, "bench-warm", round_plan.speaker[config], WARM_MESSAGES, WINDOW_WARM)


def server_rounds(secret: str, mint: Mint, workload: Workload, logs: Path, notes: list[str]) -> list[dict[str, Any]]:
    """Fresh servers each round (what one process happens to be, its memory layout and hash seed,
    varies the figures by several percent): both started, warmed, measured in turn, stopped."""
    server_cpus, loadgen_cpus = placement(1)
    everything = os.sched_getaffinity(0)
    secrets_of: dict[str, str | None] = {ON: secret, OFF: None}
    seen = {FIRST_CLIENT_ID + index: mint.one(FIRST_CLIENT_ID + index) for index in range(workload.clients)}
    orders = list(itertools.permutations(CONNECT_CONFIGS))  # every order of the three, in turn
    runs: list[dict[str, Any]] = []
    for round_ in range(1, workload.rounds + 1):
        round_plan = plan(mint, seen, workload)
        connect_order = orders[(round_ - 1) % len(orders)]
        message_order = (ON, OFF) if round_ % 2 else (OFF, ON)
        with contextlib.ExitStack() as stack:
            servers: dict[str, UvicornServer] = {}
            for config in message_order:
                servers[config] = start_server(config, secrets_of[config], server_cpus, logs)
                stack.callback(servers[config].stop)
            try:
                if loadgen_cpus:
                    os.sched_setaffinity(0, loadgen_cpus)
                warm_up(servers, round_plan)
                steps: list[tuple[str, str, Callable[[], Figures]]] = []
                for config in connect_order:
                    urls = round_plan.connects[config]
                    steps.append(
                        ("connect", config, functools.partial(connect_run, servers[OFF if config == OFF else ON], urls))
                    )
                for config in message_order:
                    speaker = round_plan.speaker[config]
                    measure: Callable[[], Figures] = functools.partial(
                        message_run, servers[config], "bench-m", speaker, workload.messages, workload.window
                    )
                    steps.append(("message", config, measure))
                for scenario, config, step in steps:
                    run = measured(scenario, config, round_, step)
                    print(
                        f"[{round_}/{workload.rounds}] {scenario:<7} tokens {config:<5} {common.outcome_line(run)}",
                        flush=True,
                    )
                    runs.append(run)
            finally:
                os.sched_setaffinity(0, everything)
            for config, server in servers.items():
                found = errors_in(server.log())
                if found:
                    notes.append(f"round {round_}, tokens {config}: the server logged {', '.join(found)}")
    return runs


# -- summary ----------------------------------------------------------------------------------


def paired(runs: list[dict[str, Any]], scenario: str, metric: str, mine: str, theirs: str) -> dict[str, float | None]:
    """Per round mine / theirs and mine - theirs (the two ran in the same round), medians and
    quartiles over rounds."""
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        if run["scenario"] == scenario and metric in run.get("figures", {}):
            by_round.setdefault(run["round"], {})[run["config"]] = run["figures"][metric]
    pairs = [(pair[mine], pair[theirs]) for pair in by_round.values() if mine in pair and theirs in pair]
    ratios = [value for value in (ratio(a, b) for a, b in pairs) if value is not None]
    differences = [a - b for a, b in pairs]
    return {
        "ratio": statistics.median(ratios) if ratios else None,
        "ratio_q1": quartile(ratios, 0),
        "ratio_q3": quartile(ratios, 2),
        "difference": statistics.median(differences) if differences else None,
        "difference_q1": quartile(differences, 0),
        "difference_q3": quartile(differences, 2),
        "rounds": len(pairs),
    }


def quartile(values: list[float], which: int) -> float | None:
    return statistics.quantiles(values, n=4, method="inclusive")[which] if len(values) > 1 else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    per_decode = {name: paired(runs, "check", "us", name, DECODE) for name in CHECK_TIMERS if name != DECODE}
    connect = "server_cpu_us_per_connect"
    return {
        "per_decode": per_decode,
        "read_only": paired(runs, "check", "us", READ_ONLY_SET, READ_ONLY_DEFAULT),
        "connect_first": paired(runs, "connect", connect, FIRST, OFF),
        "connect_seen": paired(runs, "connect", connect, SEEN, OFF),
        "connect_first_seen": paired(runs, "connect", connect, FIRST, SEEN),
        "message": paired(runs, "message", "server_cpu_us_per_message", ON, OFF),
    }


def verdict(value: float | None) -> str:
    if value is None:
        return "-"
    return "under" if value < GOAL_US else "OVER"


def print_summary(summary: dict[str, Any], ratios: dict[str, Any], workload: Workload) -> None:
    check = summary.get("check", {})
    labels = {
        DECODE: "jwt.decode (the floor)",
        "identify": "tokens.identify(token, verifier)",
        "tokens_first": "Tokens.identify, a cache miss",
        "tokens_seen": "Tokens.identify, a cache hit",
        "check_first": "the check per connect (admit's)",
        "check_seen": "the check per connect (admit's)",
    }
    rows = [["call", "token", "µs per call", "/ decode", f"< {GOAL_US:.0f} µs"]]
    for name, label in labels.items():
        value = check.get(name, {}).get("us")
        share = "1.00×" if name == DECODE else times(ratios["per_decode"][name]["ratio"])
        rows.append([label, CHECK_TIMERS[name], number(value), share, verdict(value)])
    for name in (READ_ONLY_SET, READ_ONLY_DEFAULT):
        label = "endpoint.read_only, " + ("set by admit" if name == READ_ONLY_SET else "class default")
        rows.append([label, "-", number(check.get(name, {}).get("us")), "", ""])
    print(
        f"\nthe check alone, medians of {workload.check_rounds} rounds of {workload.first_calls:,} calls "
        f"(first-seen), {workload.seen_calls:,} (seen) and {workload.read_calls:,} (reads)"
    )
    print(common.text_table(rows, left=2))
    connects = summary.get("connect", {})
    metric = "server_cpu_us_per_connect"
    rows = [["server CPU", "µs", "/ off", "quartiles", "- off µs", "quartiles µs", f"< {GOAL_US:.0f} µs"]]
    rows.append(["connect, tokens off", number(connects.get(OFF, {}).get(metric)), "", "", "", "", ""])
    for config in (FIRST, SEEN):
        pair = ratios[f"connect_{config}"]
        rows.append(
            [
                f"connect, tokens on, {config}",
                number(connects.get(config, {}).get(metric)),
                times(pair["ratio"], 3),
                f"{times(pair['ratio_q1'], 3)}-{times(pair['ratio_q3'], 3)}",
                number(pair["difference"]),
                f"{number(pair['difference_q1'])} to {number(pair['difference_q3'])}",
                verdict(pair["difference"]),
            ]
        )
    messages, pair = summary.get("message", {}), ratios["message"]
    metric = "server_cpu_us_per_message"
    rows.append(["message, tokens off", number(messages.get(OFF, {}).get(metric)), "", "", "", "", ""])
    rows.append(
        [
            "message, tokens on",
            number(messages.get(ON, {}).get(metric)),
            times(pair["ratio"], 3),
            f"{times(pair['ratio_q1'], 3)}-{times(pair['ratio_q3'], 3)}",
            number(pair["difference"]),
            f"{number(pair['difference_q1'])} to {number(pair['difference_q3'])}",
            "",
        ]
    )
    print(f"\nagainst a real server, medians of {workload.rounds} rounds")
    print(common.text_table(rows))
    print(f"first-seen - seen, same server: {number(ratios['connect_first_seen']['difference'])} µs per connect")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="starlette-ws room tokens: the check, per connect, per message")
    parser.add_argument("--rounds", type=int, default=None, help="server rounds (default 21, --quick: 3)")
    parser.add_argument("--check-rounds", type=int, default=None, help="rounds of the check alone (default 15)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, calls, connects and messages")
    parser.add_argument("--out", type=Path, default=RESULTS / "token_bench.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    workload = replace(base, check_rounds=args.check_rounds or base.check_rounds, rounds=args.rounds or base.rounds)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    started = time.perf_counter()
    logs = common.logs_dir()
    secret = secrets.token_urlsafe(32)  # HS256 wants at least 32 bytes of key
    mint = Mint(secret)
    server_cpus, loadgen_cpus = placement(1)
    print(f"server CPUs {server_cpus or 'any'}, load generator CPUs {loadgen_cpus or 'any'}", flush=True)
    everything = os.sched_getaffinity(0)
    try:
        if server_cpus:
            os.sched_setaffinity(0, server_cpus)  # the check runs where the server will
        runs, about = check_rounds(secret, mint, workload)
    finally:
        os.sched_setaffinity(0, everything)
    notes: list[str] = []
    runs += server_rounds(secret, mint, workload, logs, notes)
    for note in notes:
        print(f"note: {note}")
    summary = medians(runs, "scenario", "config")
    ratios = summarize(runs)
    print_summary(summary, ratios, workload)
    report = {
        "meta": {
            **common.machine(["starlette", "uvicorn", "websockets", "PyJWT", "uvloop"]),
            "pinning": {"server": sorted(server_cpus or []), "loadgen": sorted(loadgen_cpus or [])},
            "check_pinning": sorted(server_cpus or []),
            "settings": asdict(workload),
            "token": about,
            "tokens_made": mint.made,
            "goal_us": GOAL_US,
            "server_env": OPEN,
            "notes": notes,
            "seconds": time.perf_counter() - started,
        },
        "medians": summary,
        "ratios": ratios,
        "runs": runs,
    }
    common.write_json(args.out, report, started)


if __name__ == "__main__":
    main()
