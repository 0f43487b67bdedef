"""Room tokens: the check alone, for a token the process has not seen and for one it has, and the
server's CPU per connect (tokens off, a first-seen token, a token seen before) and per message
(token_bench.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comparison.report.markdown import number, pinning, relative, table, times

DECODE = "jwt_decode"
FIRST, SEEN = "first", "seen"
KIND = {FIRST: "first seen", SEEN: "seen before"}
CHECK_ROWS = (
    (DECODE, FIRST, "`jwt.decode` alone, PyJWT {pyjwt}: the floor"),
    ("identify", FIRST, "`tokens.identify(token, verifier)`: `jwt.decode` + the claims' checks"),
    ("tokens_first", FIRST, "`Tokens.identify`, a cache miss: digest, lookup, `tokens.identify`, insert"),
    ("tokens_seen", SEEN, "`Tokens.identify`, a cache hit: digest, lookup"),
    ("check_first", FIRST, "the check per connect: `Tokens.identify` + `for_room` + `may_send`, as `admit` runs it"),
    ("check_seen", SEEN, "the check per connect: `Tokens.identify` + `for_room` + `may_send`, as `admit` runs it"),
)
SERVER_ROWS = (
    ("connect_first", "connect", FIRST, "per room connect + close, a first-seen token each time"),
    ("connect_seen", "connect", SEEN, "per room connect + close, the client's token seen before"),
    ("message", "message", "on", "per message"),
)
METRIC = {"connect": "server_cpu_us_per_connect", "message": "server_cpu_us_per_message"}


def us(value: float | None) -> str:
    return "-" if value is None else f"{number(value)} µs"


def ns(value_us: float | None) -> str:
    return "-" if value_us is None else f"{value_us * 1000:.0f} ns"


def within(pair: dict[str, Any], value: float) -> bool:
    """Whether `value` lies between the quartiles of the rounds' ratios."""
    low, high = pair.get("ratio_q1"), pair.get("ratio_q3")
    return low is not None and high is not None and low <= value <= high


def under(value: float | None, goal: float) -> str:
    return "-" if value is None else ("yes" if value < goal else "**no**")


def against(value: float | None, goal: float) -> str:
    if value is None:
        return "not measured"
    return f"{us(value)}, **{'under' if value < goal else 'over'} {goal:.0f} µs**"


def server_goal(pair: dict[str, Any], goal: float) -> str:
    """The median of on - off against the goal, and whether the rounds' upper quartile agrees."""
    value, high = pair.get("difference"), pair.get("difference_q3")
    sentence = against(value, goal)
    if value is not None and high is not None and value < goal <= high:
        sentence += f" (though not the rounds' upper quartile, {us(high)})"
    return sentence


def message_verdict(pair: dict[str, Any]) -> str:
    value, difference = pair.get("ratio"), pair.get("difference")
    if value is None:
        return "not measured"
    if within(pair, 1.0):
        return f"on / off {times(value, 3)}, 1.0 between the rounds' quartiles: **nothing measurable per message**"
    more = "more" if value > 1 else "less"
    return (
        f"on / off {times(value, 3)}, 1.0 outside the rounds' quartiles ({times(pair.get('ratio_q1'), 3)} to "
        f"{times(pair.get('ratio_q3'), 3)}): **{us(None if difference is None else abs(difference))} {more} "
        "per message**"
    )


def floor_sentence(check: dict[str, float | None], pyjwt: str, goal: float) -> str:
    decode, first = check[DECODE], check["check_first"]
    if decode is None or first is None:
        return "The check on a first-seen token, or `jwt.decode` alone, was not measured."
    share = f"{decode / first:.0%}" if first else "-"
    verb = "is over the goal by itself" if decode >= goal else "is under the goal by itself"
    return (
        f"A token the process has not seen costs what PyJWT's decode costs: `jwt.decode` alone (PyJWT {pyjwt}) "
        f"takes {us(decode)}, {share} of the check on a first-seen token ({us(first)}), and {verb}; the rest, "
        f"{us(first - decode)}, is the claims' checks, the cache's digest and insert and the room check."
    )


def tokens_section(data: dict[str, Any] | None, path: Path) -> str:
    if data is None:
        return f"No results: `python -m comparison.token_bench` writes {relative(path)}."
    meta, summary, ratios = data["meta"], data["medians"], data["ratios"]
    settings, token, goal = meta["settings"], meta["token"], meta["goal_us"]
    pinned = pinning(meta)
    found = summary.get("check", {})
    check: dict[str, float | None] = {name: found.get(name, {}).get("us") for name in found}
    for name, _, _ in CHECK_ROWS:
        check.setdefault(name, None)
    pyjwt = meta["versions"].get("PyJWT", "?")
    rows = []
    for name, kind, label in CHECK_ROWS:
        share = "1.00×" if name == DECODE else times(ratios["per_decode"].get(name, {}).get("ratio"))
        rows.append([label.format(pyjwt=pyjwt), KIND[kind], number(check[name]), share, under(check[name], goal)])
    patterns = ", ".join(f"`{pattern}`" for pattern in token["patterns"])
    parts = [
        f"Measured by `python -m comparison.token_bench` ({meta['date']}, Python {meta['python']}, "
        f"PyJWT {pyjwt}). The goal: the token check costs under {goal:.0f} µs per connect ({token['algorithm']}) "
        "and nothing per message.",
        "",
        f"**The check alone**, in one process pinned to CPU {pinned.get('server', 'any')} (where the server runs "
        f"later), on valid {token['algorithm']} tokens as `tokens.make` writes them ({token['token_bytes']} bytes: "
        f"`sub`, `iat`, `exp`, and `rooms` {patterns}; the room, `{token['room']}`, matched by the last). A "
        "first-seen token is one no `Tokens` has verified: every call is given a token of its own, made before "
        "the timed run with an `iat` of its own, so the cache never answers; each such timer keeps one `Tokens` "
        f"across rounds, which holds at most {token['cache_size']:,} tokens, so once full each new one also "
        "pushes out the least recently used, as in a busy server. A seen-before token was verified once by the "
        "same `Tokens` before the rounds. timeit-style: per round and timer "
        f"{settings['first_calls']:,} calls with first-seen tokens, {settings['seen_calls']:,} with a seen one, "
        f"the timers interleaved, medians of {settings['check_rounds']} rounds; the ratio is the median of each "
        "round's.",
        "",
        table(
            ["call", "token", "µs per call", "/ `jwt.decode`", f"under {goal:.0f} µs"],
            rows,
            right=(2, 3),
        ),
        "",
        floor_sentence(check, pyjwt, goal),
        "",
        "Per message, `on_receive` reads `read_only`, a plain attribute `admit` sets once: "
        f"{ns(check.get('read_only_set'))} when `admit` set it (tokens on), "
        f"{ns(check.get('read_only_default'))} at the class default (tokens off), timeit's loop included "
        f"({settings['read_calls']:,} reads per round).",
        "",
        f"**Against a real server**: two `starlette_ws.app` servers on `memory://`, alike but for "
        "`ROOMS_TOKEN_SECRET` (set: every room socket needs `?token=`; unset: rooms are open and the URL carries "
        f"none), on CPU {pinned.get('server', 'any')}, the load generator on CPU {pinned.get('loadgen', 'any')}. "
        f"Per connect: {settings['clients']} clients at once, each in a room of its own, connect, read the "
        f"presence message and close, {settings['connects']} times each per run, in three runs per round: "
        "tokens off; tokens on with a token made for each connect (first seen, all made before the run); "
        "tokens on with each client's one token, which the server saw in the warm-up (seen before). Per "
        f"message: one member alone in a fresh room says {settings['messages']:,} lines ({settings['window']} "
        "in flight) and hears each back. The rate limits are raised on both servers. Both servers start "
        f"afresh each round; medians of {settings['rounds']} rounds, the runs back to back in an order that "
        "changes from round to round; on / off and on − off are the medians of each round's.",
        "",
    ]
    rows = []
    for key, scenario, config, label in SERVER_ROWS:
        figures, pair = summary.get(scenario, {}), ratios.get(key, {})
        difference = pair.get("difference")
        rows.append(
            [
                label,
                us(figures.get("off", {}).get(METRIC[scenario])),
                us(figures.get(config, {}).get(METRIC[scenario])),
                times(pair.get("ratio"), 3),
                f"{times(pair.get('ratio_q1'), 3)} – {times(pair.get('ratio_q3'), 3)}",
                us(difference),
                f"{us(pair.get('difference_q1'))} – {us(pair.get('difference_q3'))}",
            ]
        )
    header = ["server CPU", "tokens off", "tokens on", "on / off", "its quartiles", "on − off", "its quartiles"]
    parts += [table(header, rows, right=range(1, 7)), ""]
    between = ratios.get("connect_first_seen", {}).get("difference")
    first, seen = check["check_first"], check["check_seen"]
    in_loop = None if first is None or seen is None else first - seen
    text = (
        f"On the same server a first-seen token costs {us(between)} more per connect than one seen before; "
        f"in the loop the difference is {us(in_loop)}"
    )
    if between is not None and in_loop is not None and between > 1.5 * in_loop:
        text += (
            ": the loop's figures are a floor; in a server each check runs once among a connect's other work, "
            "not back to back with its code and data warm in the CPU's caches, and costs more there"
        )
    text += "."
    seen_more = ratios.get("connect_seen", {}).get("difference")
    if seen_more is not None and seen is not None and seen_more > 2 * seen:
        text += (
            f" With a token seen before, tokens add {us(seen_more)} per connect where the check takes "
            f"{us(seen)} in the loop: beside the check, the token server also reads a request line longer by the "
            f"token ({token['token_bytes']} bytes) and sets, then cancels, each member's timer for the token's "
            "`exp`, and the check too runs among a connect's other work."
        )
    parts.append(text)
    parts += [
        "",
        f"**Against the goal** (under {goal:.0f} µs per connect, nothing per message):",
        "",
        f"- first-seen token, the check alone: {against(check['check_first'], goal)}; "
        f"`jwt.decode` alone: {against(check[DECODE], goal)}",
        f"- seen-before token, the check alone: {against(check['check_seen'], goal)}",
        f"- first-seen token, server CPU per connect, on − off: {server_goal(ratios.get('connect_first', {}), goal)}",
        f"- seen-before token, server CPU per connect, on − off: {server_goal(ratios.get('connect_seen', {}), goal)}",
        f"- per message, server CPU: {message_verdict(ratios.get('message', {}))}",
    ]
    return "\n".join(parts)
