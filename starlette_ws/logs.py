"""Keep credentials out of the logs: `token=` values in logged URLs become `token=[redacted]`.

uvicorn logs every WebSocket handshake with its query string, which is where the items socket
takes its token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote_plus

SECRET_PARAMETERS = frozenset({"token"})
REDACTED = "[redacted]"
_PARAMETER = re.compile(r"(?P<key>(?<=[?&])[^=&\s\"']+)=(?P<value>[^&\s\"']*)")


def redact(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if unquote_plus(match["key"]) in SECRET_PARAMETERS:
            return f"{match['key']}={REDACTED}"
        return match[0]

    return _PARAMETER.sub(replace, text) if "=" in text else text


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install(names: Iterable[str] = ("uvicorn.error", "uvicorn.access", "starlette_ws")) -> RedactSecrets:
    """Add one shared filter to the loggers that can print a request's URL."""
    secret_filter = RedactSecrets()
    for name in names:
        logging.getLogger(name).addFilter(secret_filter)
    return secret_filter


def uninstall(
    secret_filter: RedactSecrets, names: Iterable[str] = ("uvicorn.error", "uvicorn.access", "starlette_ws")
) -> None:
    for name in names:
        logging.getLogger(name).removeFilter(secret_filter)
