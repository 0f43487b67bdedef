"""The shared harness itself (harness/): what the tests and the benchmarks both rely on."""

from __future__ import annotations

import signal
import struct
from pathlib import Path

import psutil
import pytest

from harness import services
from harness.net import wait_until
from harness.rawws import OP_CLOSE, OP_TEXT, StalledClient, take_frame
from harness.servers import STARTED, UvicornServer


def live_members(group: int) -> list[int]:
    """The processes of a process group that are not zombies (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue
        if int(pgrp) == group and state != "Z":
            found.append(int(stat.parent.name))
    return found


def server_frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", 0x80 | opcode, size) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, size) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, size) + payload


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_take_frame_reads_every_length_form_and_waits_for_the_rest(size: int) -> None:
    frame = server_frame(OP_TEXT, b"x" * size)
    buffer = bytearray(frame[:-1] if size else frame[:1])
    assert take_frame(buffer) is None  # incomplete: nothing taken
    buffer = bytearray(frame + server_frame(OP_CLOSE, b"\x03\xe8"))
    assert take_frame(buffer) == (OP_TEXT, b"x" * size)
    assert take_frame(buffer) == (OP_CLOSE, b"\x03\xe8")
    assert buffer == bytearray()


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("YES", True), ("", False), ("0", False)])
def test_ci_is_detected_one_way(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert services.in_ci() is expected


def test_missing_binary_is_unavailable_without_pytest() -> None:
    with pytest.raises(services.Unavailable, match="no-such-server is not installed"):
        services.require("no-such-server")


def test_server_waits_for_every_worker_and_stops_its_whole_group() -> None:
    """With two workers, start() returns once both have started; stop() leaves no process behind,
    even when the parent is killed outright and its workers are orphaned."""
    server = UvicornServer(workers=2, log_level="info", args=["--timeout-graceful-shutdown", "1"])
    try:
        server.start()
        assert server.log().count(STARTED) == 2
        assert server.health()["chat_connections"] == 0
        with StalledClient(server, "/ws") as client:
            assert client.frames(timeout=0.2) == (0, None)  # open, nothing sent
        group = server.pid
        ours = set(live_members(group))
        assert len(ours) >= 3  # the supervisor and its two workers
        server.stop(signal.SIGKILL)
    finally:
        server.__exit__(None, None, None)
    wait_until(lambda: not live_members(group), 5.0, what="the server's process group")
    # the port is free of ours (another test, in another worker, may have been given it since)
    listening = {
        c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr[1] == server.port and c.status == "LISTEN"
    }
    assert not listening & ours
