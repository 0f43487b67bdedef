"""Log lines an operator can read, with no credentials in them.

uvicorn logs every request and WebSocket handshake with its query string, which is where the items
socket takes its token: `RedactSecrets` turns each `token=` value into `token=[redacted]`. It runs
on the event loop for every line, so its cost is linear in the line's length whatever the URL.

`logging.json`, next to this module, is the configuration `make run` hands to uvicorn's
`--log-config`: time, level and logger on every line, our loggers at INFO, the filter on every
handler (so it holds from the first line, before the app's lifespan installs it again).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from pathlib import Path

SECRET_PARAMETERS = ("token",)
REDACTED = "[redacted]"
LOG_CONFIG = Path(__file__).with_name("logging.json")
FORMAT = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"
LOGGERS = ("uvicorn.error", "uvicorn.access", "starlette_ws")


def _spelling(name: str) -> str:
    """A pattern for every way a query key can spell `name`: each character as is or `%XX`."""

    def char(c: str) -> str:
        hex_digits = "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{ord(c):02x}")
        return f"(?:{re.escape(c)}|%{hex_digits})"

    return "".join(char(c) for c in name)


# A secret parameter is `?`, `&` or `;` (which some proxies read as `&`), a key of bounded length
# that decodes to a secret name, `=`, and a value up to the next `&` or whitespace, quotes and all:
# what Starlette's query parsing hands the app as that parameter. Each start costs at most the
# key's length and a match's value is consumed once, so a scan is linear in the text (no
# backtracking over attacker-controlled runs).
_SECRET = re.compile(r"(?P<head>[?&;](?:" + "|".join(_spelling(name) for name in SECRET_PARAMETERS) + r")=)[^&\s]*")

# Under uvicorn's websockets-sansio implementation the websockets library logs each handshake a
# second time, after uvicorn's own `"WebSocket /path" [accepted]` (or status) line.
_DUPLICATES = frozenset({"connection open", "connection rejected (%d %s)"})
# That implementation also never marks a handshake answered with a denial response as complete, so
# after every refusal of ours it logs this ERROR (uvicorn's wsproto implementation does not).
_AFTER_DENIAL = "ASGI callable returned without completing handshake."
_denial_sent: ContextVar[bool] = ContextVar("starlette_ws_denial_sent", default=False)
_TRACEBACKS = logging.Formatter()


def redact(text: str) -> str:
    return _SECRET.sub(rf"\g<head>{REDACTED}", text) if "=" in text else text


def denial_sent() -> None:
    """Note that this connection's handshake is answered with a denial response (see _AFTER_DENIAL).

    The flag lives in the connection's own task context, so it quiets that connection only.
    """
    _denial_sent.set(True)


class RedactSecrets(logging.Filter):
    """Redact every record's arguments in place, keeping their shape, so that any formatter (such
    as uvicorn's access formatter, which unpacks the arguments itself) still formats the record."""

    fallback: tuple[logging.Handler, int] | None = None  # the handler install() added, the level before

    def filter(self, record: logging.LogRecord) -> bool:
        if _noise(record):
            return False
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _redact_arg(value) for key, value in record.args.items()}
        msg = str(record.msg)
        if redact(msg) != msg:  # the format itself carries a secret parameter (`token=%s`)
            record.msg, record.args = redact(_message(record)), ()
        if record.exc_info and not record.exc_text:
            text = _TRACEBACKS.formatException(record.exc_info)
            if redact(text) != text:
                record.exc_text = redact(text)
        return True


def _noise(record: logging.LogRecord) -> bool:
    if record.name != "uvicorn.error" or not isinstance(record.msg, str):
        return False
    return record.msg in _DUPLICATES or (record.msg == _AFTER_DENIAL and _denial_sent.get())


def _redact_arg(arg: object) -> object:
    if isinstance(arg, str):
        return redact(arg)
    if arg is None or isinstance(arg, int | float):
        return arg
    try:
        text = str(arg)  # a URL object, an exception, ...
    except Exception:
        return arg
    redacted = redact(text)
    return arg if redacted == text else redacted


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a format that does not fit its arguments: keep the format alone
        return str(record.msg)


def install(names: Iterable[str] = LOGGERS) -> RedactSecrets:
    """Add one shared filter to the loggers that can print a request's URL.

    When nothing would print our own loggers' lines (uvicorn's default configuration leaves them to
    Python's last-resort handler: warnings and up, message only), give them a handler of their own.
    """
    secret_filter = RedactSecrets()
    for name in names:
        logging.getLogger(name).addFilter(secret_filter)
    ours = logging.getLogger("starlette_ws")
    if not ours.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(secret_filter)
        secret_filter.fallback = (handler, ours.level)
        ours.addHandler(handler)
        ours.setLevel(min(ours.getEffectiveLevel(), logging.INFO))
    return secret_filter


def uninstall(secret_filter: RedactSecrets, names: Iterable[str] = LOGGERS) -> None:
    for name in names:
        logging.getLogger(name).removeFilter(secret_filter)
    if secret_filter.fallback is not None:
        handler, level = secret_filter.fallback
        ours = logging.getLogger("starlette_ws")
        ours.removeHandler(handler)
        ours.setLevel(level)
        secret_filter.fallback = None


class Outage:
    """One warning per outage: the first failure is logged, the ones after it only counted, and
    the count is said with the next line, at most one a `quiet` seconds however often the outage
    ends and starts again (a store that fails every other call), and one line when it ends."""

    def __init__(self, logger: logging.Logger, what: str, quiet: float = 60.0) -> None:
        self.logger = logger
        self.what = what
        self.quiet = quiet
        self.failures = 0  # not said yet
        self._said: float | None = None  # when the last warning went
        self._open = False  # a warning went and its end was not said yet

    def failed(self, reason: object, now: float) -> None:
        self.failures += 1
        if self._said is None or now - self._said >= self.quiet:
            more = f" ({self.failures - 1} more since the last line)" if self.failures > 1 else ""
            self.logger.warning("%s: %s%s", self.what, reason, more)
            self._said, self.failures, self._open = now, 0, True

    def ended(self) -> None:
        if self._open:
            self._open = False
            self.logger.info("%s: over (%d more failures since the last line)", self.what, self.failures)
            self.failures = 0
