"""Real uvicorn servers on free loopback ports, in their own processes, and what they answer on /health."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.net import HOST, accepts, free_port, kill_group, stop_process, wait_for_port, wait_until

__all__ = [
    "PROTOCOL_ARGS",
    "ROOT",
    "CommandServer",
    "UvicornServer",
    "errors_in",
    "free_port",
    "health",
    "wait_for_port",
]

ROOT = Path(__file__).resolve().parent.parent
# uvicorn's protocols as `make run` serves them (starlette_ws/protocol.py), for our app and the
# FastAPI twin alike; they come first, so a caller's own `--http` or `--ws` wins.
PROTOCOL_ARGS = ("--http", "starlette_ws.protocol:HttpProtocol", "--ws", "starlette_ws.protocol:WebSocketProtocol")
STARTED = "Application startup complete."  # one line per worker, at log level info and below
TELLS_STARTED = {None, "trace", "debug", "info"}
ERROR_MARKERS = ("Traceback", "ERROR", "Exception in ASGI application")


def errors_in(log: str) -> list[str]:
    """The error markers that show up in a server's log."""
    return [marker for marker in ERROR_MARKERS if marker in log]


def health(http_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET /health, never through a proxy (the servers are on loopback)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{http_url}/health", timeout=timeout) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


class UvicornServer:
    """`python -m uvicorn app` on 127.0.0.1 in its own process group.

    `env` is laid over this process's environment (a None value removes a variable). `start()`
    returns once the port accepts and, with several workers at log level info or below, once
    every worker has logged its start-up. `cpus` pins the server (its workers inherit it);
    `profile` runs it under cProfile, the statistics written there when it stops (on SIGINT).
    Without `log_path` the log is a temporary file, removed on leaving the `with` block.
    """

    def __init__(
        self,
        app: str = "starlette_ws.app:app",
        env: Mapping[str, str | None] | None = None,
        args: Sequence[str] = (),
        port: int | None = None,
        *,
        workers: int = 1,
        cpus: set[int] | None = None,
        log_level: str | None = None,
        profile: Path | None = None,
        log_path: Path | None = None,
        protocols: bool = True,
        python: str = sys.executable,
        cwd: Path = ROOT,
        start_timeout: float = 15.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.app = app
        self.env = dict(env or {})
        self.args = [*(PROTOCOL_ARGS if protocols else ()), *args]
        self.port = port or free_port()
        self.workers = workers
        self.cpus = cpus
        self.log_level = log_level
        self.profile = profile
        self.python = python
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._own_log = log_path is None
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="uvicorn-", suffix=".log")[1])
        self.log_path.write_bytes(b"")
        self.process: subprocess.Popen[bytes] | None = None
        self._started_at = 0  # the log's size when the running process started

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not running"
        return self.process.pid

    def command(self) -> list[str]:
        profile = ["-m", "cProfile", "-o", str(self.profile)] if self.profile else []
        command = [self.python, *profile, "-m", "uvicorn", self.app, "--host", HOST, "--port", str(self.port)]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        if self.log_level is not None:
            command += ["--log-level", self.log_level]
        return command + self.args

    def start(self) -> UvicornServer:
        layered = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        env = {key: value for key, value in layered.items() if value is not None}
        self._started_at = self.log_mark()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, process_group=0
            )
        try:
            if self.cpus:
                os.sched_setaffinity(self.process.pid, self.cpus)
            wait_until(self.ready, self.start_timeout, self.process, f"uvicorn {self.app}", self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def ready(self) -> bool:
        if not accepts(self.port):
            return False
        if self.workers == 1 or self.log_level not in TELLS_STARTED:
            return True
        return self.log_since(self._started_at).count(STARTED) >= self.workers

    def stop(self, sig: int | None = None, timeout: float | None = None) -> int:
        """SIGTERM (SIGINT under cProfile, so it writes), SIGKILL after `timeout`; then whatever is
        left of the process group (workers whose parent was killed). The exit status."""
        if self.process is None:
            return 0
        if sig is None:
            sig = signal.SIGINT if self.profile else signal.SIGTERM
        code = stop_process(self.process, self.stop_timeout if timeout is None else timeout, sig)
        kill_group(self.process.pid)
        self.process = None
        return code

    def health(self) -> dict[str, Any]:
        return health(self.http_url)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_mark(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, mark: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(mark)
            return log.read().decode(errors="replace")

    def __enter__(self) -> UvicornServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._own_log:
            self.log_path.unlink(missing_ok=True)


class CommandServer(UvicornServer):
    """The server command (`python -m starlette_ws`, or `program`: the `starlette-ws` script) on
    127.0.0.1, started, awaited and stopped as `UvicornServer` does; `args` go to the command."""

    def __init__(
        self,
        program: Sequence[str] = (sys.executable, "-m", "starlette_ws"),
        *,
        args: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__("starlette_ws.app:create_app", args=args, protocols=False, **kwargs)
        self.program = list(program)

    def command(self) -> list[str]:
        command = [*self.program, "--host", HOST, "--port", str(self.port), "--workers", str(self.workers)]
        if self.log_level is not None:
            command += ["--log-level", self.log_level]
        return command + self.args
