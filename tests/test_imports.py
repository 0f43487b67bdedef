"""Importing starlette_ws reads nothing from the environment: `create_app()` reads it, once.

Each check runs in a fresh interpreter, whose environment holds settings that cannot work.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from harness.servers import ROOT

# Every one of these fails `Settings.from_environ()` or `create_app()`.
POISON = {
    "BROADCAST_URL": "nope://",
    "ROOMS_TOKEN_SECRET": "s",
    "ROOMS_TOKEN_PUBLIC_KEY": "/nonexistent.pem",
    "ROOMS_TOKEN_ALGORITHMS": "none",
    "HANDSHAKE_TIMEOUT": "x",
    "WS_DRAIN_TIMEOUT": "x",
    "WS_MAX_FRAGMENTS": "x",
    "MAX_MESSAGE_BYTES": "x",
    "METRICS": "maybe",
    "TEMPLATES_DIR": "/nonexistent",
}


def run(code: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(extra or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_every_module_imports_with_settings_that_cannot_work() -> None:
    result = run(
        """
        import importlib, pkgutil, starlette_ws
        names = [info.name for info in pkgutil.walk_packages(starlette_ws.__path__, "starlette_ws.")]
        for name in names:
            importlib.import_module(name)
        print(len(names))
        import starlette_ws.app
        try:
            starlette_ws.app.app
        except ValueError as exc:  # the environment is read now, when the app is first asked for
            print("read on access:", exc)
        """,
        POISON,
    )
    assert result.returncode == 0, result.stderr
    count, read = result.stdout.splitlines()
    assert int(count) >= 40  # starlette_ws, its backends and history, the protocol modules, the server command
    assert read.startswith("read on access:"), read


def test_the_default_app_is_made_once_on_first_access() -> None:
    result = run(
        """
        import starlette_ws.app as module
        assert "app" not in vars(module)
        from starlette_ws.app import app
        assert module.app is app and vars(module)["app"] is app
        print(app.state.settings.broadcast_url, app.state.settings.max_message_bytes)
        """,
        {"BROADCAST_URL": "memory://", "MAX_MESSAGE_BYTES": "1234"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["memory://", "1234"]


def test_a_metrics_dir_prometheus_client_does_not_write_to_is_refused() -> None:
    # no PROMETHEUS_MULTIPROC_DIR when prometheus_client was imported: it keeps its counts in memory
    result = run(
        """
        import tempfile
        from pathlib import Path
        from starlette_ws.app import create_app
        from starlette_ws.settings import Settings
        directory = Path(tempfile.gettempdir())
        create_app(Settings(metrics_dir=directory, metrics=False))  # no metrics: nothing to write
        create_app(Settings(metrics_dir=directory))
        """
    )
    assert result.returncode == 1
    assert "ValueError" in result.stderr and "set PROMETHEUS_MULTIPROC_DIR in the environment" in result.stderr


def test_the_server_command_imports_no_metrics_before_it_empties_their_directory() -> None:
    # prometheus_client opens this process's files there as the metrics are made
    result = run("import sys, starlette_ws.__main__; print(sorted(m for m in sys.modules if 'prometheus' in m))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
