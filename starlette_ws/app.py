"""`create_app(settings)`: the demos as one Starlette app; `app`, the one made from the environment.

`app` is made when first asked for (`from starlette_ws.app import app`, `uvicorn
starlette_ws.app:app`), so that importing this module reads nothing; `uvicorn --factory
starlette_ws.app:create_app` makes a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route, WebSocketRoute
from starlette.templating import Jinja2Templates

from starlette_ws import api, logs, metrics, pages
from starlette_ws.chat import ChatEndpoint
from starlette_ws.echo import EchoEndpoint
from starlette_ws.health import health
from starlette_ws.hosts import TrustedHosts
from starlette_ws.hubs import Hubs
from starlette_ws.items import ItemsEndpoint
from starlette_ws.ratelimit import ConnectGate, SharedBuckets
from starlette_ws.rooms import RoomEndpoint, presence, room_page, rooms_page
from starlette_ws.settings import Settings
from starlette_ws.tokens import Tokens


def create_app(settings: Settings | None = None) -> Starlette:
    """The demos, ready to serve; the handlers find settings, templates and hubs on `app.state`.

    The lifespan connects the chat's broadcast engine and the rooms' store at start-up (either
    failing fails the start-up) and closes them at shutdown; without it (`TestClient(app)`
    outside `with`) the first chat or room connection starts what it needs.
    """
    settings = settings or Settings.from_environ()
    verifier = settings.verifier  # a token setting that cannot work fails here, not at the first connection
    if settings.metrics:
        metrics.check_metrics_dir(settings.metrics_dir)
    templates = Jinja2Templates(directory=settings.templates_dir or pages.package_templates())
    templates.env.globals.update(ITEM_ID=pages.ITEM_ID, CLIENT_ID=pages.CLIENT_ID)
    hubs = Hubs(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        secret_filter = logs.install()
        # With several workers, each writes its counts for the others' scrapes once a second.
        flushing = asyncio.create_task(metrics.flushing()) if settings.metrics_dir and settings.metrics else None
        try:
            await hubs.start()
            try:
                yield
            finally:
                await hubs.stop()
        finally:
            if flushing is not None:
                flushing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flushing
                metrics.flush()
            logs.uninstall(secret_filter)

    routes = [
        Route("/", pages.index, name="index"),
        Route("/echo", pages.echo, name="echo_page"),
        Route("/items", pages.items, name="items_page"),
        Route("/chat", pages.chat, name="chat_page"),
        Route("/health", health, name="health"),
        WebSocketRoute("/ws", EchoEndpoint, name="echo_ws"),
        WebSocketRoute("/items/{item_id}/ws", ItemsEndpoint, name="items_ws"),
        WebSocketRoute("/ws/{client_id}", ChatEndpoint, name="chat_ws"),
        Route("/rooms", rooms_page, name="rooms_page"),
        Route("/rooms/{room}", room_page, name="room_page"),
        Route("/rooms/{room}/presence", presence, name="room_presence"),
        WebSocketRoute("/rooms/{room}/ws/{client_id}", RoomEndpoint, name="room_ws"),
        *api.routes(),
    ]
    if settings.metrics:
        routes.append(Route("/metrics", metrics.scrape, name="metrics"))
    middleware = [Middleware(TrustedHosts, allowed_hosts=settings.allowed_hosts)]
    app = Starlette(debug=settings.debug, routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.settings = settings
    app.state.templates = templates
    app.state.hubs = hubs
    app.state.tokens = None if verifier is None else Tokens(verifier)
    app.state.room_buckets = SharedBuckets(settings.chat_rate_per_second, settings.chat_rate_burst)
    app.state.room_gates = (
        ConnectGate(settings.room_address_rate, settings.room_address_burst),
        ConnectGate(settings.room_connect_rate, settings.room_connect_burst),
    )
    return app


app: Starlette  # made on first access, by `__getattr__`


def __getattr__(name: str) -> Starlette:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    made = globals()["app"] = create_app()
    return made
