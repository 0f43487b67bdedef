"""Echo's cost per message inside the process: no network, no server, only the app.

Each app's ASGI callable is driven with a receive that hands it `websocket.connect`, N text
messages and a disconnect, and a send that only counts. What is left is the app's own work per
message, so ours, the bare ASGI echo and FastAPI's tutorial can be compared without noise from
the event loop's socket handling.

Run: python -m comparison.inprocess [--messages N] [--repeat R] [--profile ours|bare|fastapi]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.websockets import WebSocketDisconnect

Message = MutableMapping[str, Any]
App = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


def scope() -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "http_version": "1.1",
        "path": "/ws",
        "raw_path": b"/ws",
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


def load(name: str) -> App:
    if name == "ours":
        from starlette_ws.app import create_app
        from starlette_ws.settings import Settings

        return create_app(Settings.from_environ())  # type: ignore[return-value]
    if name == "bare":
        from comparison.bare_app import app

        return app
    from comparison.fastapi_app import app as fastapi_app

    return fastapi_app  # type: ignore[return-value]


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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    main()
