"""The Host check that stops DNS rebinding.

A page on `evil.example` whose name is made to resolve to this server has the same origin as
itself, so the Origin check alone lets it in; its requests still say `Host: evil.example`.
Pages and other HTTP requests get Starlette's own answer (400, `Invalid host header`); a refused
WebSocket handshake gets the same refusal as every other one here (`deny`), naming the host.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette import status
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from starlette_ws.deny import deny
from starlette_ws.params import Error, error

# A registered name or a bracketed IP literal, then an optional port.
HOST_HEADER = re.compile(r"(\[[0-9a-f:.]+\]|[^\s:/?#@\[\]]+)(?::[0-9]+)?", re.IGNORECASE)


def host_name(header: str | None) -> str | None:
    """`Example.com:8000` -> `example.com`, `[::1]:8000` -> `[::1]`; None when malformed or absent."""
    match = HOST_HEADER.fullmatch(header or "")
    return match[1].lower() if match else None


def host_allowed(header: str | None, patterns: Sequence[str]) -> bool:
    """TrustedHostMiddleware's rule: `*` allows all, `*.example.com` every subdomain, else exact names."""
    if "*" in patterns:
        return True
    name = host_name(header)
    if name is None:
        return False
    for pattern in (pattern.lower() for pattern in patterns):
        if name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


def host_errors(header: str | None) -> list[Error]:
    msg = "Host header missing" if header is None else f"Host not allowed: {header}"
    return [error("host", ["header", "host"], msg, header)]


class TrustedHosts(TrustedHostMiddleware):
    """Starlette's TrustedHostMiddleware, answering a refused WebSocket handshake with `deny`:
    HTTP 400 and a JSON body that names the host, or a 1008 close where the server cannot send
    a body (Starlette's own answer would be an ASGI error there)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or self.allow_any:
            await super().__call__(scope, receive, send)
            return
        header = Headers(scope=scope).get("host")
        if host_allowed(header, self.allowed_hosts):
            await self.app(scope, receive, send)
        else:
            await deny(WebSocket(scope, receive, send), host_errors(header), status.HTTP_400_BAD_REQUEST)
