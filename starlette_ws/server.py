"""`starlette-ws` (or `python -m starlette_ws`): the demos served on uvicorn as they are meant to be.

That is, on this package's protocol classes (`starlette_ws.protocol`), with permessage-deflate
declined unless asked for, connections capped below the open-files limit (raised to its hard
limit where allowed), the package's log config, uvicorn's message limit from MAX_MESSAGE_BYTES, and
with several workers a shared metrics directory, emptied at each start. The app's own settings
come from the environment (`Settings.from_environ`), read once per worker.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from starlette_ws.logs import LOG_CONFIG
from starlette_ws.settings import Settings, share_metrics_dir

if TYPE_CHECKING:
    from starlette.applications import Starlette

FACTORY = "starlette_ws.app:create_app"  # what each of several workers imports and calls
HTTP_PROTOCOL = "starlette_ws.protocol:HttpProtocol"
WS_PROTOCOL = "starlette_ws.protocol:WebSocketProtocol"
FD_RESERVE = 100  # descriptors kept for everything but client connections (logs, engine, metrics)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

DESCRIPTION = """Serve the demos (echo, items, chat, rooms, the server API) on uvicorn, with this
package's protocol classes and limits.

The app's own settings come from environment variables, read by each worker when it starts:
BROADCAST_URL, MAX_MESSAGE_BYTES (also uvicorn's WebSocket message limit), ALLOWED_HOSTS (the
names this server answers to: add this machine's names when --host is not loopback),
ALLOWED_ORIGINS, ROOMS_TOKEN_SECRET, API_KEYS and the rest the README lists.
PROMETHEUS_MULTIPROC_DIR names the directory several workers share their metrics in (by default
one per port under the temporary directory); it is emptied at each start."""


def boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {value!r}")


def counted(least: int, most: int | None = None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {value!r}") from None
        if number < least:
            raise argparse.ArgumentTypeError(f"expected at least {least}, not {number}")
        if most is not None and number > most:
            raise argparse.ArgumentTypeError(f"expected at most {most}, not {number}")
        return number

    return parse


def seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {value!r}") from None
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"expected zero or more seconds, not {value!r}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=counted(0, 65535), default=8000, help="the port to listen on (default 8000)")
    parser.add_argument("--workers", type=counted(1), default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--limit-concurrency",
        type=counted(1),
        help="open connections per worker past which a new one is refused with 503"
        " (default: the open-files limit, raised to its hard limit, less --fd-reserve)",
    )
    parser.add_argument(
        "--fd-reserve",
        type=counted(0),
        default=FD_RESERVE,
        help=f"descriptors the default --limit-concurrency leaves for everything else (default {FD_RESERVE})",
    )
    parser.add_argument(
        "--timeout-graceful-shutdown",
        type=seconds,
        default=5.0,
        help="seconds open connections have to end at shutdown (default 5)",
    )
    parser.add_argument(
        "--ws-per-message-deflate",
        type=boolean,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOL",
        help="accept permessage-deflate when a client offers it (default false: it costs memory and CPU"
        " per connection and saves little on short messages)",
    )
    parser.add_argument("--log-config", type=Path, help="a logging config file (default: the package's logging.json)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="uvicorn's log level (default: the log config's)")


def open_files_limit() -> int:
    """This process's open-files limit, first raised to its hard limit where allowed (workers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # an unlimited hard limit is over the kernel's own ceiling
            return soft
        return hard
    return soft


def concurrency_limit(given: int | None, open_files: int, reserve: int) -> int:
    if given is not None:
        return given
    limit = open_files - reserve
    if limit < 1:
        raise ValueError(
            f"the open-files limit ({open_files}) leaves no connections after --fd-reserve {reserve}:"
            " give --limit-concurrency, or raise the limit (ulimit -n)"
        )
    return limit


def default_metrics_dir(port: int) -> Path:
    """One directory per port in a folder under the temporary directory that only this user may use."""
    base = Path(tempfile.gettempdir()) / f"starlette-ws-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    status = base.lstat()
    if base.is_symlink() or status.st_uid != os.getuid() or status.st_mode & 0o077:
        raise ValueError(f"{base} is not a private directory of this user: set PROMETHEUS_MULTIPROC_DIR")
    return base / f"metrics-{port}"


def fresh_metrics_dir(directory: Path) -> Path:
    """`directory`, made if missing, without the files of the workers of an earlier run."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    return directory


def metrics_dir(settings: Settings, workers: int, port: int) -> Path | None:
    """Where the workers share their metrics: PROMETHEUS_MULTIPROC_DIR if set, else with several
    workers one per port; with one worker and no such setting, nowhere (counts stay in memory)."""
    if settings.metrics_dir is not None:
        return fresh_metrics_dir(settings.metrics_dir)
    if workers > 1 and settings.metrics:
        return fresh_metrics_dir(default_metrics_dir(port))
    return None


def options(args: argparse.Namespace, settings: Settings, limit: int) -> dict[str, Any]:
    """uvicorn's keyword arguments (`uvicorn.run`, `uvicorn.Config`) for these arguments and settings."""
    return {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "factory": args.workers > 1,
        "http": HTTP_PROTOCOL,
        "ws": WS_PROTOCOL,
        "limit_concurrency": limit,
        "log_config": str(args.log_config or LOG_CONFIG),
        "log_level": args.log_level,
        "ws_max_size": settings.max_message_bytes,
        "ws_per_message_deflate": args.ws_per_message_deflate,
        "timeout_graceful_shutdown": args.timeout_graceful_shutdown,
    }


def serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Read the settings, prepare what the workers share, and serve until stopped."""
    try:
        settings = Settings.from_environ()
        limit = concurrency_limit(args.limit_concurrency, open_files_limit(), args.fd_reserve)
        directory = metrics_dir(settings, args.workers, args.port)
        if directory is not None and settings.metrics_dir is None:
            share_metrics_dir(directory)
            settings = dataclasses.replace(settings, metrics_dir=directory)
        # One worker serves the app made here; several each make their own from the environment
        # (uvicorn needs an import string), which is checked here first. The app is imported only
        # now: prometheus_client opens this process's files in the metrics directory when the
        # metrics are made, and they must not be among the files emptied above.
        app: Starlette | str = FACTORY
        if args.workers == 1:
            from starlette_ws.app import create_app

            app = create_app(settings)
        else:
            settings.verifier  # noqa: B018 - a token setting that cannot work fails here, once
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    uvicorn.run(app, **options(args, settings, limit))
    return 0
