from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

# Stand-ins the pages replace (URL-encoded) with what the user typed or the page's own id;
# the rest of each WebSocket URL comes from the router and the request (ws/wss, host, root path).
ITEM_ID = "ITEM_ID"
CLIENT_ID = "CLIENT_ID"

DEMOS = {
    "echo": ("Echo", "Every message comes back from the server."),
    "items": ("Items", "A socket guarded by path, query, cookie and token parameters."),
    "chat": ("Chat", "A broadcast chat: every connected page sees every message."),
    "rooms": ("Rooms", "Chat rooms with members, history and recovery: a dropped connection loses nothing."),
}


def package_templates() -> Path:
    """The pages the package ships: `starlette_ws.templates` once installed (setup.cfg maps the
    checkout's templates/ to it), else, run from a checkout that is not installed, that folder."""
    try:
        return Path(str(files("starlette_ws.templates")))
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parent.parent / "templates"
        if not checkout.is_dir():
            raise RuntimeError(f"starlette_ws.templates is not installed and {checkout} does not exist") from None
        return checkout


def render(request: Request, name: str, context: dict[str, Any] | None = None) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, f"{name}.html", {"demos": DEMOS, "page": name, **(context or {})})


async def index(request: Request) -> Response:
    return render(request, "index")


async def echo(request: Request) -> Response:
    return render(request, "echo")


async def items(request: Request) -> Response:
    return render(request, "items")


async def chat(request: Request) -> Response:
    return render(request, "chat")
