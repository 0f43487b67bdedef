"""`starlette_ws_closes_total` under a real uvicorn, from raw sockets: a connection that drops
without a close frame counts as 1006, a close frame without a code as 1005, a normal close as 1000
(uvicorn 0.54's sans-I/O protocol reports 1005 for the drop; `protocol.WebSocketProtocol` fixes it)."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import pytest

from harness.rawws import OP_CLOSE, StalledClient, client_frame
from harness.servers import UvicornServer
from tests.server.test_metrics import echo, scrape

CLOSES = "starlette_ws_closes_total"
CODES = ("1000", "1005", "1006")


def closes(server: UvicornServer) -> dict[str, float]:
    samples = scrape(server)
    return {code: echo(samples, CLOSES, code=code) for code in CODES}


def counted(server: UvicornServer, before: dict[str, float], timeout: float = 5.0) -> dict[str, float]:
    """How the echo endpoint's close counts changed since `before`, once one has."""
    deadline = time.monotonic() + timeout
    while True:
        after = closes(server)
        changed = {code: after[code] - before[code] for code in CODES if after[code] != before[code]}
        if changed or time.monotonic() > deadline:
            return changed
        time.sleep(0.05)


def hang_up(client: StalledClient) -> None:
    client.close()  # a FIN, no close frame


def reset(client: StalledClient) -> None:
    client.reset()  # a RST, no close frame


def close_frame(payload: bytes) -> Callable[[StalledClient], None]:
    def close(client: StalledClient) -> None:
        client.sock.sendall(client_frame(OP_CLOSE, payload))
        client.frames(timeout=5)  # the server's reply, then its end of the connection
        client.close()

    return close


@pytest.mark.parametrize(
    ("ending", "code"),
    [
        (hang_up, "1006"),
        (reset, "1006"),
        (close_frame(b""), "1005"),
        (close_frame(struct.pack("!H", 1000)), "1000"),
    ],
    ids=["fin without close frame", "rst without close frame", "close frame without code", "close 1000"],
)
def test_how_a_connection_ended_is_counted_by_its_code(
    server: UvicornServer, ending: Callable[[StalledClient], None], code: str
) -> None:
    client = StalledClient(server, "/ws")
    before = closes(server)
    ending(client)
    assert counted(server, before) == {code: 1}
