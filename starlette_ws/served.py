"""What uvicorn's protocol classes share: the settings of the app they serve, and the log."""

from __future__ import annotations

import logging
import weakref

from uvicorn.config import Config

from starlette_ws.settings import Settings

logger = logging.getLogger("uvicorn.error")  # uvicorn prints it, and the app's secret filter covers it

MIDDLEWARE_DEPTH = 16  # layers looked through for the app's settings
FOUND: weakref.WeakKeyDictionary[Config, Settings] = weakref.WeakKeyDictionary()
DEFAULTS = Settings()  # for an app that is not ours, and before a connection is made


def settings_for(config: Config) -> Settings:
    """The settings of the app `config` serves, so that the protocols and the app share one source.

    uvicorn makes the protocol objects itself, from its config: the app it loaded is found there,
    inside the middleware wrapped round it (uvicorn's own and the user's, each holding the next
    as `.app`), as the first layer with `state.settings`. An app that is not ours, or a config
    not loaded yet, gets the defaults. Looked up once per loaded config.
    """
    found = FOUND.get(config)
    if found is None:
        found = search(getattr(config, "loaded_app", None))
        if getattr(config, "loaded", False):
            FOUND[config] = found
    return found


def search(app: object) -> Settings:
    for _ in range(MIDDLEWARE_DEPTH):
        if app is None:
            break
        settings = getattr(getattr(app, "state", None), "settings", None)
        if isinstance(settings, Settings):
            return settings
        app = getattr(app, "app", None)
    return DEFAULTS


def address(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else ""
