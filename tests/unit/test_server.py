"""The server command's arguments (`starlette_ws.server`, `python -m starlette_ws`): what uvicorn is given."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from starlette_ws import server
from starlette_ws.__main__ import main
from starlette_ws.logs import LOG_CONFIG
from starlette_ws.settings import Settings


def parse(*words: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    server.add_arguments(parser)
    return parser.parse_args(words)


def test_the_defaults_are_make_runs() -> None:
    options = server.options(parse(), Settings(), limit=900)
    assert options == {
        "host": "127.0.0.1",
        "port": 8000,
        "workers": 1,
        "factory": False,
        "http": "starlette_ws.protocol:HttpProtocol",
        "ws": "starlette_ws.protocol:WebSocketProtocol",
        "limit_concurrency": 900,
        "log_config": str(LOG_CONFIG),
        "log_level": None,
        "ws_max_size": 64 * 1024,
        "ws_per_message_deflate": False,
        "timeout_graceful_shutdown": 5.0,
    }
    assert Path(options["log_config"]).name == "logging.json" and Path(options["log_config"]).is_file()


def test_arguments_and_settings_reach_uvicorn() -> None:
    args = parse(
        "--host", "0.0.0.0", "--port", "8001", "--workers", "3", "--ws-per-message-deflate",
        "--timeout-graceful-shutdown", "2.5", "--log-config", "my.json", "--log-level", "debug",
    )  # fmt: skip
    options = server.options(args, Settings(max_message_bytes=1000), limit=50)
    assert (options["host"], options["port"], options["workers"]) == ("0.0.0.0", 8001, 3)
    assert options["factory"] is True  # several workers import the factory, each making its own app
    assert options["ws_per_message_deflate"] is True
    assert options["ws_max_size"] == 1000
    assert (options["timeout_graceful_shutdown"], options["log_config"], options["log_level"]) == (
        2.5,
        "my.json",
        "debug",
    )


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False), ("0", False), ("YES", True)])
def test_deflate_takes_a_value_as_make_passes_it(value: str, expected: bool) -> None:
    assert parse("--ws-per-message-deflate", value).ws_per_message_deflate is expected


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--workers", "0"], "--workers: expected at least 1, not 0"),
        (["--port", "http"], "--port: expected a whole number, not 'http'"),
        (["--port", "99999"], "--port: expected at most 65535, not 99999"),
        (["--limit-concurrency", "0"], "--limit-concurrency: expected at least 1"),
        (["--timeout-graceful-shutdown", "-1"], "expected zero or more seconds"),
        (["--ws-per-message-deflate", "maybe"], "expected true or false, not 'maybe'"),
        (["--reload"], "unrecognized arguments: --reload"),
    ],
)
def test_bad_arguments_are_refused_clearly(words: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(words, prog="starlette-ws")  # serve is the default command
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_help_says_the_settings_come_from_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    for words in (["--help"], ["serve", "--help"]):
        with pytest.raises(SystemExit) as exit:
            main(words, prog="starlette-ws")
        assert exit.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "settings come from environment variables" in out
    assert "--limit-concurrency" in out and "--ws-per-message-deflate" in out


def test_the_connection_cap_is_the_open_files_limit_less_the_reserve() -> None:
    assert server.concurrency_limit(None, 1024, 100) == 924
    assert server.concurrency_limit(5000, 1024, 100) == 5000  # given: as it is
    with pytest.raises(ValueError, match="give --limit-concurrency"):
        server.concurrency_limit(None, 100, 100)


def test_the_open_files_limit_is_raised_to_the_hard_limit_where_allowed() -> None:
    import resource

    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        limit = server.open_files_limit()
        assert limit == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert before[0] <= limit <= before[1] or before[1] == resource.RLIM_INFINITY
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_several_workers_share_a_metrics_directory_emptied_at_start(tmp_path: Path) -> None:
    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_1.db").write_bytes(b"stale")
    (given / "keep.txt").write_text("not ours")
    assert server.metrics_dir(Settings(metrics_dir=given), 1, 8000) == given
    assert sorted(path.name for path in given.iterdir()) == ["keep.txt"]
    assert server.metrics_dir(Settings(), 1, 8000) is None  # one worker: counts in memory
    assert server.metrics_dir(Settings(metrics=False), 2, 8000) is None


def test_the_default_metrics_directory_is_per_port_and_private() -> None:
    directory = server.default_metrics_dir(8123)
    assert directory.name == "metrics-8123"
    assert directory.parent.stat().st_uid == os.getuid()
    assert directory.parent.stat().st_mode & 0o777 == 0o700
