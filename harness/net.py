"""Loopback ports, waiting for things to come up, stopping processes, killing a socket with a RST."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(port: int, timeout: float = 0.2) -> bool:
    """Whether something listens on the loopback port."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(log: Path | None, lines: int = 20) -> str:
    if log is None:
        return ""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    what: str = "server",
    log: Path | None = None,
) -> None:
    """Poll `ready` (backing off to 0.1 s) until it holds; RuntimeError when `process` exits first,
    TimeoutError after `timeout` seconds. Either error ends with the tail of `log`."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not ready():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout} s:\n{log_tail(log)}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def wait_for_port(port: int, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None) -> None:
    wait_until(lambda: accepts(port), timeout, process, f"the server for port {port}")


def stop_process(
    process: subprocess.Popen[bytes], timeout: float, sig: int = signal.SIGTERM, group: bool = False
) -> int:
    """Send `sig` (SIGTERM), then SIGKILL after `timeout` seconds; the exit status.

    With `group`, both go to the process's whole group (started with `start_new_session=True`
    or `process_group=0`): `make` and the shell it starts pass nothing on.
    """

    def send(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)

    if process.poll() is None:
        send(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            process.wait(timeout)
    return process.returncode


def kill_group(pgid: int) -> None:
    """SIGKILL whatever is left of a process group (workers whose parent was killed)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def reset(sock: socket.socket) -> None:
    """Close with a RST instead of a FIN (SO_LINGER with a zero timeout), as a crashed process or a
    cut cable would leave the peer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
