"""The protocol classes take their limits from the settings of the app uvicorn serves (`served`)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from uvicorn.config import Config
from uvicorn.server import ServerState

from starlette_ws.app import create_app
from starlette_ws.protocol import HttpProtocol, WebSocketProtocol
from starlette_ws.served import settings_for
from starlette_ws.settings import Settings

SHORT = Settings(handshake_timeout=0.5, ws_drain_timeout=1.5, ws_max_fragments=3)


def loaded(app: object, **options: object) -> Config:
    config = Config(app=app, log_config=None, **options)  # type: ignore[arg-type]
    config.load()
    return config


@pytest.mark.anyio
async def test_protocols_take_their_limits_from_the_served_apps_settings() -> None:
    config = loaded(create_app(SHORT))
    assert settings_for(config) is SHORT
    loop = asyncio.get_running_loop()
    http, websocket = HttpProtocol(config, ServerState(), {}), WebSocketProtocol(config, ServerState(), {})
    assert http.handshake_timeout == Settings().handshake_timeout  # read when a connection is made
    for protocol in (http, websocket):
        ours, theirs = socket.socketpair()
        transport, _ = await loop.create_connection(lambda: protocol, sock=ours)  # noqa: B023
        transport.close()
        theirs.close()
    assert http.handshake_timeout == 0.5
    assert (websocket.drain_timeout, websocket.max_fragments) == (1.5, 3)


def test_the_settings_are_found_inside_middleware_wrapped_round_the_app() -> None:
    # uvicorn wraps it too (proxy headers, and the message logger at log level trace)
    config = loaded(GZipMiddleware(create_app(SHORT)), log_level="trace")
    assert settings_for(config) is SHORT


def test_an_app_that_is_not_ours_gets_the_defaults() -> None:
    assert settings_for(loaded(Starlette())) == Settings()


def test_a_config_not_loaded_yet_gets_the_defaults_until_it_is() -> None:
    config = Config(app=create_app(SHORT), log_config=None)
    assert settings_for(config) == Settings()
    config.load()
    assert settings_for(config) is SHORT
