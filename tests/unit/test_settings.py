from __future__ import annotations

import pytest

from starlette_ws.settings import Settings


def test_settings_from_environment() -> None:
    settings = Settings.from_environ(
        {"BROADCAST_URL": "redis://127.0.0.1:1/0", "MAX_MESSAGE_BYTES": "10", "ALLOWED_ORIGINS": "https://a, https://b"}
    )
    assert settings.broadcast_url == "redis://127.0.0.1:1/0"
    assert settings.max_message_bytes == 10
    assert settings.allowed_origins == ("https://a", "https://b")
    assert settings.allowed_hosts == ("localhost", "127.0.0.1", "[::1]", "testserver")
    assert Settings.from_environ({}) == Settings()


@pytest.mark.parametrize(
    ("value", "hosts"),
    [
        ("127.0.0.1,localhost,127.0.0.1,[::1]", ("127.0.0.1", "localhost", "127.0.0.1", "[::1]")),  # make run's
        (" chat.example , *.corp.example ", ("chat.example", "*.corp.example")),
        ("*", ("*",)),
        ("", Settings().allowed_hosts),  # empty is unset, not "refuse everything"
    ],
)
def test_allowed_hosts_from_environment(value: str, hosts: tuple[str, ...]) -> None:
    assert Settings.from_environ({"ALLOWED_HOSTS": value}).allowed_hosts == hosts


def test_settings_read_metrics_from_the_environment() -> None:
    assert Settings.from_environ({}).metrics is True
    assert Settings.from_environ({"METRICS": "false"}).metrics is False


def test_settings_read_the_rooms_limits_from_the_environment() -> None:
    default = Settings.from_environ({})
    assert (default.room_history, default.room_history_seconds, default.presence_ttl) == (100, 300.0, 30.0)
    assert default.channel_prefix == "starlette-ws:"
    settings = Settings.from_environ(
        {"ROOM_HISTORY": "5", "ROOM_HISTORY_SECONDS": "1.5", "PRESENCE_TTL": "3", "CHANNEL_PREFIX": "staging:"}
    )
    assert (settings.room_history, settings.room_history_seconds, settings.presence_ttl) == (5, 1.5, 3.0)
    assert settings.channel_prefix == "staging:"


def test_a_channel_prefix_too_long_for_every_room_s_channel_is_refused() -> None:
    from starlette_ws.backends.base import MAX_CHANNEL_BYTES
    from starlette_ws.history.base import room_channel

    longest = "p" * 34
    assert len(room_channel(longest, "r" * 64).encode()) == MAX_CHANNEL_BYTES  # the longest that fits
    with pytest.raises(ValueError, match="CHANNEL_PREFIX must be at most 34 bytes"):
        Settings.from_environ({"CHANNEL_PREFIX": longest + "p"})
    with pytest.raises(ValueError, match="CHANNEL_PREFIX"):
        Settings(channel_prefix="é" * 18)  # 36 bytes in UTF-8
