from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route, WebSocketRoute
from starlette.templating import Jinja2Templates

from starlette_ws import logs, metrics, pages
from starlette_ws.backends import backend_for_url
from starlette_ws.chat import ChatEndpoint
from starlette_ws.echo import EchoEndpoint
from starlette_ws.health import health
from starlette_ws.hosts import TrustedHosts
from starlette_ws.hub import Hub
from starlette_ws.items import ItemsEndpoint
from starlette_ws.settings import Settings


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_environ()
    templates = Jinja2Templates(directory=settings.templates_dir)
    templates.env.globals.update(ITEM_ID=pages.ITEM_ID, CLIENT_ID=pages.CLIENT_ID)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        secret_filter = logs.install()
        hub = Hub(backend_for_url(settings.broadcast_url), settings.send_queue_bytes)
        await hub.start()
        try:
            yield {"settings": settings, "templates": templates, "hub": hub}
        finally:
            await hub.stop()
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
    ]
    if settings.metrics:
        routes.append(Route("/metrics", metrics.scrape, name="metrics"))
    middleware = [Middleware(TrustedHosts, allowed_hosts=settings.allowed_hosts)]
    return Starlette(debug=settings.debug, routes=routes, middleware=middleware, lifespan=lifespan)


app = create_app()
