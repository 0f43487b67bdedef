from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse

from starlette_ws.hubs import Hubs
from starlette_ws.settings import Settings


async def health(request: Request) -> JSONResponse:
    """Liveness, this process's chat registry size (what churn tests watch return to zero), and
    whether broadcasts from other processes reach it now (false during an engine outage)."""
    hubs: Hubs = request.app.state.hubs
    settings: Settings = request.app.state.settings
    return JSONResponse(
        {
            "status": "ok",
            "chat_connections": len(hubs),
            "broadcast": urlsplit(settings.broadcast_url).scheme,
            "listening": hubs.listening,
        }
    )
