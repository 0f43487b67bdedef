"""`make run` and permessage-deflate (issue 11): browsers offer the extension and uvicorn accepts
it unless told not to; `make run` tells it not to by default, and `WS_PER_MESSAGE_DEFLATE=true`
switches it back on.

The server tests start `make run` itself (its recipe, not a copy of its command line), with this
interpreter's scripts directory as BIN and the install step assumed done (`make -o install`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from websockets.sync.client import connect

from harness.net import free_port, stop_process, wait_for_port
from harness.servers import ROOT

BIN = Path(sys.executable).parent


def make() -> str:
    found = shutil.which("make")
    assert found, "make is not installed"
    return found


def make_run_args(*variables: str) -> list[str]:
    return [make(), "--no-print-directory", "-o", "install", "run", f"BIN={BIN}", *variables]


def dry_run(*variables: str) -> str:
    done = subprocess.run([*make_run_args(*variables), "-n"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_run_passes_the_deflate_switch() -> None:
    assert "--ws-per-message-deflate false" in dry_run()
    assert "--ws-per-message-deflate true" in dry_run("WS_PER_MESSAGE_DEFLATE=true")


@contextmanager
def make_run(*variables: str) -> Iterator[int]:
    """`make run` on a free port, in its own process group, stopped at the end."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    args = make_run_args("HOST=127.0.0.1", f"PORT={port}", *variables)
    process = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for_port(port, timeout=20, process=process)
        yield port
    finally:
        stop_process(process, 10, group=True)


def negotiated(port: int) -> str | None:
    """The extensions the server accepted for a chat client offering permessage-deflate, as browsers do."""
    with connect(f"ws://127.0.0.1:{port}/ws/7", compression="deflate", proxy=None, open_timeout=10) as ws:
        assert ws.request is not None
        assert ws.request.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        ws.send("hello")
        assert ws.recv(timeout=5) == "You wrote: hello"
        assert ws.response is not None
        return ws.response.headers.get("Sec-WebSocket-Extensions")


def test_make_run_declines_a_browsers_deflate_offer_by_default() -> None:
    with make_run() as port:
        assert negotiated(port) is None


def test_make_run_accepts_deflate_when_switched_on() -> None:
    with make_run("WS_PER_MESSAGE_DEFLATE=true") as port:
        accepted = negotiated(port)
    assert accepted is not None and accepted.startswith("permessage-deflate")
