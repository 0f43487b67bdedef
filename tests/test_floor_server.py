"""The fan-out floor the benchmark compares against (comparison/floor_server.py) is a working chat."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from harness.net import accepts, free_port
from harness.servers import ROOT


@pytest.fixture(params=["a", "b"])
def floor(request: pytest.FixtureRequest) -> Iterator[str]:
    port = free_port()
    args = [sys.executable, "-m", "comparison.floor_server", "--port", str(port)]
    process = subprocess.Popen([*args, *(["--joined"] if request.param == "b" else [])], cwd=ROOT)
    try:
        deadline = time.monotonic() + 10
        while not accepts(port):
            assert process.poll() is None and time.monotonic() < deadline, "the floor server did not start"
            time.sleep(0.05)
        yield f"ws://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def test_the_tutorial_chat_in_order_for_every_member(floor: str) -> None:
    with connect(f"{floor}/ws/1") as one, connect(f"{floor}/ws/2") as two, connect(f"{floor}/ws/3") as three:
        time.sleep(0.1)  # every handshake done before the first line
        for n in range(50):  # a burst: in floor b, joined into a few writes
            one.send(f"line {n}")
        said = [f"Client #1 says: line {n}" for n in range(50)]
        mine = [str(one.recv(timeout=5)) for _ in range(100)]
        assert [m for m in mine if m.startswith("Client")] == said
        assert [m for m in mine if m.startswith("You wrote")] == [f"You wrote: line {n}" for n in range(50)]
        assert mine[0] == "You wrote: line 0"
        for other in (two, three):
            assert [other.recv(timeout=5) for _ in range(50)] == said
        two.send("héllo ✓")
        assert three.recv(timeout=5) == "Client #2 says: héllo ✓"


def test_anything_but_the_chat_is_refused(floor: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{floor}/items/1")
    assert refused.value.response.status_code == 404
