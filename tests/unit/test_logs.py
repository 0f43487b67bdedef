from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable

import pytest
from starlette.datastructures import URL
from uvicorn.logging import AccessFormatter, DefaultFormatter

from starlette_ws import logs
from starlette_ws.logs import REDACTED, RedactSecrets, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a whole line: the value runs to the space, quote included (the filter redacts the path alone)
        ('1.2.3.4:5 - "WebSocket /i/ws?token=abc" [accepted]', '"WebSocket /i/ws?token=[redacted] [accepted]'),
        ("/ws?q=1&token=abc&z=2", "/ws?q=1&token=[redacted]&z=2"),
        ("/ws?%74oken=abc", "/ws?%74oken=[redacted]"),
        ("/ws?%74%6F%6b%65%6E=abc", "/ws?%74%6F%6b%65%6E=[redacted]"),
        ("/ws?token=", "/ws?token=[redacted]"),
        ("/ws?token=a&token=b", "/ws?token=[redacted]&token=[redacted]"),
        ("/rooms/a/ws/1?x=1;token=abc", "/rooms/a/ws/1?x=1;token=[redacted]"),
        ("/ws?x=1?token=abc", "/ws?x=1?token=[redacted]"),
        ('/ws?token=ab"SECRET', "/ws?token=[redacted]"),
        ("/ws?token=ab'SECRET&q=1", "/ws?token=[redacted]&q=1"),
        ('"GET /x?token=ab"SECRET HTTP/1.1" 200', '"GET /x?token=[redacted] HTTP/1.1" 200'),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert expected in redact(text)
    assert "SECRET" not in redact(text) and "abc" not in redact(text)


@pytest.mark.parametrize(
    "text",
    ["/ws?tokens=abc&mytoken=x", "no query here token=abc", "/ws?Token=abc", "/ws?%2574oken=abc", "/ws?tok+en=x"],
)
def test_redact_leaves_other_parameters_alone(text: str) -> None:
    assert redact(text) == text


def access_record(path: str) -> logging.LogRecord:
    """As uvicorn's access log makes it."""
    args = ("1.2.3.4:5", "GET", path, "1.1", 200)
    return logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d', args, None)


def best_of(runs: int, action: Callable[[], object]) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return min(timings)


@pytest.mark.parametrize(
    "hostile",
    [
        "/x?=" + "?" * 60_000,  # the URL that held the old regex for 19 s
        "/x?" + "?" * 60_000 + "=",
        "/x" + "?a" * 30_000 + "=",
        "/x?a=" + "&t=" * 20_000,
        "/x" + "?token=" * 9_000,
        "/x?" + "%74" * 20_000 + "=",
    ],
)
def test_redaction_is_linear_a_60_kb_hostile_url_takes_under_10_ms(hostile: str) -> None:
    assert len(hostile) >= 60_000
    assert best_of(5, lambda: redact(hostile)) < 0.010
    assert best_of(5, lambda: RedactSecrets().filter(access_record(hostile))) < 0.010


def test_access_records_stay_formattable_by_uvicorns_access_formatter() -> None:
    record = access_record('/health?token=ab"SECRET&q=1')
    assert RedactSecrets().filter(record)
    assert isinstance(record.args, tuple) and len(record.args) == 5
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False).format(record)
    assert line == '1.2.3.4:5 - "GET /health?token=[redacted]&q=1 HTTP/1.1" 200 OK'
    assert record.getMessage() == '1.2.3.4:5 - "GET /health?token=[redacted]&q=1 HTTP/1.1" 200'


def test_filter_rewrites_formatted_records() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s" %s', ("ip", "/i?token=s", 403), None
    )
    assert RedactSecrets().filter(record)
    assert record.getMessage() == 'ip - "WebSocket /i?token=[redacted]" 403'


def record_of(msg: object, *args: object, exc_info: logging._SysExcInfoType | None = None) -> logging.LogRecord:
    return logging.LogRecord("starlette_ws", logging.ERROR, "", 0, msg, args, exc_info)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (record_of("GET /x?token=%s&q=%d", "SECRET", 1), "GET /x?token=[redacted]&q=1"),  # the format names it
        (record_of("at %s", URL("ws://h/i?token=SECRET")), "at ws://h/i?token=[redacted]"),  # not a str
        (record_of("at %(url)s", {"url": "/i?token=SECRET"}), "at /i?token=[redacted]"),  # mapping arguments
        (record_of(ValueError("/i?token=SECRET")), "/i?token=[redacted]"),  # not a str message
        (record_of("odd /i?token=%s %s", "SECRET"), "odd /i?token=[redacted] %s"),  # a format that does not fit
        (record_of("100%% sure, /i?token=%s", "SECRET"), "100% sure, /i?token=[redacted]"),
    ],
)
def test_every_record_stays_formattable_and_keeps_no_secret(record: logging.LogRecord, expected: str) -> None:
    assert RedactSecrets().filter(record)
    assert record.getMessage() == expected


def test_tracebacks_are_redacted() -> None:
    try:
        raise RuntimeError("while serving /i?token=SECRET")
    except RuntimeError:
        record = record_of("Error in %s", "X", exc_info=sys.exc_info())
    assert RedactSecrets().filter(record)
    text = logging.Formatter().format(record)
    assert "SECRET" not in text and f"/i?token={REDACTED}" in text and "Traceback" in text


def uvicorn_record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", logging.ERROR, "", 0, msg, args, None)


def test_uvicorns_error_after_a_denial_response_is_dropped_for_that_connection_only() -> None:
    secret_filter = RedactSecrets()
    incomplete = "ASGI callable returned without completing handshake."

    def denied_connection() -> tuple[bool, bool]:
        logs.denial_sent()
        return (
            secret_filter.filter(uvicorn_record(incomplete)),
            secret_filter.filter(uvicorn_record("Exception in ASGI application\n")),
        )

    assert contextvars.copy_context().run(denied_connection) == (False, True)
    assert secret_filter.filter(uvicorn_record(incomplete))  # any other connection: a real fault, kept


@pytest.mark.parametrize(
    ("record", "kept"),
    [
        (uvicorn_record("connection open"), False),
        (uvicorn_record("connection rejected (%d %s)", 403, "Forbidden"), False),
        (uvicorn_record("connection closed"), True),
        (uvicorn_record('%s - "WebSocket %s" [accepted]', "ip", "/ws"), True),
    ],
)
def test_the_websockets_librarys_repeat_of_a_handshake_is_dropped(record: logging.LogRecord, kept: bool) -> None:
    assert RedactSecrets().filter(record) is kept


def test_shipped_config_matches_the_fallback_format_and_filters_every_handler() -> None:
    config = json.loads(logs.LOG_CONFIG.read_text())
    assert config["formatters"]["default"]["format"] == logs.FORMAT
    assert config["filters"]["redact"]["()"] == "starlette_ws.logs.RedactSecrets"
    assert all(handler["filters"] == ["redact"] for handler in config["handlers"].values())
    assert config["loggers"]["starlette_ws"]["level"] == "INFO"


def test_install_gives_unhandled_loggers_a_readable_handler_and_uninstall_removes_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ours = logging.getLogger("starlette_ws")
    before = (list(ours.handlers), ours.level)
    ours.propagate = False  # as uvicorn's default configuration leaves it: nothing would print its lines
    try:
        secret_filter = logs.install()
        logging.getLogger("starlette_ws.backends.redis").info("Redis is back after %.1f s; /i?token=SECRET", 1)
        logs.uninstall(secret_filter)
    finally:
        ours.propagate = True
    line = capsys.readouterr().err
    assert line.endswith(" INFO     starlette_ws.backends.redis: Redis is back after 1.0 s; /i?token=[redacted]\n")
    assert line[:4].isdigit()  # the time comes first
    assert (list(ours.handlers), ours.level) == before


def test_install_leaves_configured_loggers_alone() -> None:
    secret_filter = logs.install()  # under pytest the root logger has handlers
    try:
        assert logging.getLogger("starlette_ws").handlers == []
    finally:
        logs.uninstall(secret_filter)


def test_uvicorns_default_formatter_prints_the_redacted_line() -> None:
    record = uvicorn_record('%s - "WebSocket %s" %d', "ip", "/i?%74oken=a'b\"c", 403)
    assert RedactSecrets().filter(record)
    line = DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False).format(record)
    assert line == 'ERROR:    ip - "WebSocket /i?%74oken=[redacted]" 403'


def test_an_outage_is_one_warning_a_minute_however_often_it_flaps(caplog: pytest.LogCaptureFixture) -> None:
    outage = logs.Outage(logging.getLogger("starlette_ws.test"), "Store down", quiet=60.0)
    with caplog.at_level(logging.INFO, logger="starlette_ws.test"):
        for second in range(59):  # a store failing every other call for a minute
            outage.failed("refused", float(second))
            outage.ended()
        outage.failed("refused", 61.0)
        outage.ended()
        outage.ended()  # nothing failed since: nothing to say
    said = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert said == [
        ("WARNING", "Store down: refused"),
        ("INFO", "Store down: over (0 more failures since the last line)"),
        ("WARNING", "Store down: refused (58 more since the last line)"),
        ("INFO", "Store down: over (0 more failures since the last line)"),
    ]
