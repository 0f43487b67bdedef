"""What the benchmark, the hub benchmark and the report builder share."""

from __future__ import annotations

import math
import socket
import subprocess
from collections.abc import Iterable
from importlib import metadata
from typing import Any

HOST = "127.0.0.1"
# uvicorn's protocols as `make run` serves them (starlette_ws/protocol.py): every app a benchmark
# compares is served on this same stack, so the figures differ by the apps alone.
PROTOCOLS = ("--http", "starlette_ws.protocol:HttpProtocol", "--ws", "starlette_ws.protocol:WebSocketProtocol")


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


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def clean(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean(item) for item in value]
    return value


def versions(names: Iterable[str]) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
