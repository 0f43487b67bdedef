"""Echo's and the chat fan-out's cost inside the process: no network, no server, only the app.

Echo: each app's ASGI callable is driven with a receive that hands it `websocket.connect`, N
text messages and a disconnect, and a send that only counts. What is left is the app's own work
per message, so ours, the bare ASGI echo and FastAPI's tutorial can be compared without noise
from the event loop's socket handling.

Fan-out (`--fanout RECEIVERS`): RECEIVERS chat sessions on `/ws/{id}` that receive nothing after
`websocket.connect`, and one sender whose lines come back to back; the sends only count (they
never suspend, as a server's send to a client that keeps up). What is measured is the app's
own CPU per delivery, from the first line until every receiver has been sent every line.

Run: python -m comparison.inprocess [--messages N] [--repeat R] [--profile ours|bare|fastapi]
     python -m comparison.inprocess --fanout 1000 [--messages 150] [--profile ours|fastapi]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

from starlette.websockets import WebSocketDisconnect

Message = MutableMapping[str, Any]
App = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Coroutine[Any, Any, None],
]


def scope(path: str = "/ws") -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "http_version": "1.1",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
        "state": {},
    }


async def drive(app: App, messages: int) -> tuple[float, int]:
    """Seconds for `messages` round trips through `app`, and how many replies it sent."""
    incoming = iter(
        [{"type": "websocket.connect"}]
        + [{"type": "websocket.receive", "text": "hello"}] * messages
        + [{"type": "websocket.disconnect", "code": 1000}]
    )
    replies = 0

    async def receive() -> Message:
        return next(incoming)

    async def send(message: Message) -> None:
        nonlocal replies
        if message["type"] == "websocket.send":
            replies += 1

    started = time.perf_counter()
    with contextlib.suppress(WebSocketDisconnect):  # FastAPI's tutorial echo lets the client's close escape
        await app(scope(), receive, send)
    return time.perf_counter() - started, replies


async def fan_out(app: App, receivers: int, messages: int) -> tuple[float, int]:
    """CPU seconds from the sender's first line until every receiver has had every line; deliveries."""
    loop = asyncio.get_running_loop()
    wanted = receivers * messages
    everyone_served = loop.create_future()
    end = loop.create_future()  # never set: the sessions are cancelled
    deliveries = 0
    prefix = "Client #1 says: "

    async def send(message: Message) -> None:
        nonlocal deliveries
        if message["type"] == "websocket.send" and message["text"].startswith(prefix):
            deliveries += 1
            if deliveries == wanted + messages and not everyone_served.done():  # the sender has its copies too
                everyone_served.set_result(None)

    def receiver() -> Callable[[], Awaitable[Message]]:
        connected = False

        async def receive() -> Message:
            nonlocal connected
            if not connected:
                connected = True
                return {"type": "websocket.connect"}
            await end
            raise AssertionError("unreachable")

        return receive

    joined = loop.create_future()
    lines = iter(range(messages))

    async def sender_receive() -> Message:
        if not joined.done():
            joined.set_result(None)
            return {"type": "websocket.connect"}
        line = next(lines, None)
        if line is None:
            await end
        return {"type": "websocket.receive", "text": f"{line} x"}

    sessions = [asyncio.create_task(app(scope(f"/ws/{1000 + i}"), receiver(), send)) for i in range(receivers)]
    for _ in range(10):  # every receiver is in the chat
        await asyncio.sleep(0)
    started = time.process_time()
    sessions.append(asyncio.create_task(app(scope("/ws/1"), sender_receive, send)))
    async with asyncio.timeout(60):
        await everyone_served
    cpu = time.process_time() - started
    for session in sessions:
        session.cancel()
    await asyncio.gather(*sessions, return_exceptions=True)
    return cpu, deliveries - messages


def measure_fanout(name: str, receivers: int, messages: int, repeat: int) -> float:
    """Microseconds of CPU per delivery, the best of `repeat` runs, each on a fresh app."""
    runs = []
    for _ in range(repeat):
        cpu, deliveries = asyncio.run(fan_out(load(name), receivers, messages))
        assert deliveries == receivers * messages, (name, deliveries)
        runs.append(cpu / deliveries * 1e6)
    return min(runs)


def load(name: str) -> App:
    if name == "ours":
        from starlette_ws.app import create_app
        from starlette_ws.settings import Settings

        return create_app(Settings.from_environ())
    if name == "bare":
        from comparison.bare_app import app

        return app
    from comparison.fastapi_app import app as fastapi_app

    return fastapi_app


def measure(name: str, messages: int, repeat: int) -> float:
    """Microseconds per message, the best of `repeat` runs (the others met a busier machine)."""
    app = load(name)
    asyncio.run(drive(app, 1000))  # warm up: imports, route compilation, caches
    runs = []
    for _ in range(repeat):
        seconds, replies = asyncio.run(drive(app, messages))
        assert replies == messages, (name, replies)
        runs.append(seconds / messages * 1e6)
    return min(runs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", choices=("ours", "bare", "fastapi"))
    parser.add_argument("--fanout", type=int, default=0, help="chat receivers: measure the fan-out instead")
    args = parser.parse_args(argv)
    if args.fanout:
        fanout_main(args.fanout, min(args.messages, 150), args.repeat, args.profile)
        return
    if args.profile:
        app = load(args.profile)
        profiler = cProfile.Profile()
        profiler.runcall(asyncio.run, drive(app, args.messages))
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return
    results = {name: measure(name, args.messages, args.repeat) for name in ("ours", "bare", "fastapi")}
    metrics = os.environ.get("METRICS", "true")
    print(f"us per message (best of {args.repeat} x {args.messages}; METRICS={metrics})")
    for name, us in results.items():
        print(f"  {name:8} {us:6.2f}")
    print(
        f"  ours/bare {results['ours'] / results['bare']:.2f}  ours/fastapi {results['ours'] / results['fastapi']:.2f}"
    )


def fanout_main(receivers: int, messages: int, repeat: int, profile: str | None) -> None:
    if profile:
        app = load(profile)
        profiler = cProfile.Profile()
        profiler.runcall(asyncio.run, fan_out(app, receivers, messages))
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return
    results = {name: measure_fanout(name, receivers, messages, repeat) for name in ("ours", "fastapi")}
    metrics = os.environ.get("METRICS", "true")
    print(f"fan-out: us of CPU per delivery (best of {repeat}, {receivers} receivers x {messages}; METRICS={metrics})")
    for name, us in results.items():
        print(f"  {name:8} {us:6.2f}")
    print(f"  ours/fastapi {results['ours'] / results['fastapi']:.2f}")


if __name__ == "__main__":
    main()
