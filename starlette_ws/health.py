from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from starlette_ws.hubs import Hubs


async def health(request: Request) -> JSONResponse:
    """Liveness, this process's chat registry size (what churn tests watch return to zero), whether
    broadcasts from other processes reach it now (false during an engine outage), and whether the
    engine answered its latest probe (a stalled engine keeps `listening` true). Either failing makes
    the status "degraded", still with a 200: the load balancer decides what that means."""
    hubs: Hubs = request.app.state.hubs
    engine = hubs.probed
    listening = hubs.listening
    body: dict[str, Any] = {
        "status": "ok" if engine.ok and listening else "degraded",
        "chat_connections": len(hubs),
        "broadcast": hubs.engine.scheme,
        "listening": listening,
        "engine": "ok" if engine.ok else "unreachable",
    }
    if engine.error is not None:
        body["engine_error"] = engine.error
    return JSONResponse(body)
