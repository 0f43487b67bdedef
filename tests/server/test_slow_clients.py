"""Contract B7 "one slow client": a client that stops reading is cut off with 1013; nobody else notices."""

from __future__ import annotations

import contextlib
import threading
import time

from harness.rawws import StalledClient
from harness.servers import UvicornServer
from tests.clients import Reader, ws_connect

MESSAGE = "x" * 60_000
COUNT = 150  # 9 MB: past the loopback buffers (4 MB send side) and the 1 MiB outbox


def test_client_that_stops_reading_is_cut_off_and_others_get_everything(server: UvicornServer) -> None:
    stalled = StalledClient(server, "/ws/900")
    received: dict[int, list[str]] = {901: [], 902: [], 903: []}
    with contextlib.ExitStack() as stack:
        live = {n: stack.enter_context(ws_connect(server, f"/ws/{n}")) for n in received}
        sender = live[903]
        stack.callback(stalled.reset)
        deadline = time.monotonic() + 30
        while server.health()["chat_connections"] < 4 and time.monotonic() < deadline:
            time.sleep(0.02)

        def read(n: int) -> None:
            while len([m for m in received[n] if m.startswith("Client #903 says")]) < COUNT:
                received[n].append(str(live[n].recv(timeout=20)))

        readers = [threading.Thread(target=read, args=(n,)) for n in received]
        for reader in readers:
            reader.start()
        for i in range(COUNT):  # paced as a chat user is allowed to (40 of the 50 messages/s)
            sender.send(f"{i:04d}{MESSAGE}")
            time.sleep(1 / 40)
        for reader in readers:
            reader.join(60)
        cut_off_count = server.health()["chat_connections"]
        frames, close = stalled.frames()

    expected = [f"Client #903 says: {i:04d}{MESSAGE}" for i in range(COUNT)]
    for n, messages in received.items():
        assert [m for m in messages if m.startswith("Client #903 says")] == expected, n
    assert len([m for m in received[903] if m.startswith("You wrote: ")]) == COUNT
    assert cut_off_count == 3  # the stalled client is no longer in the registry
    assert close is not None and close[0] == 1013
    assert frames < COUNT


def test_cut_off_client_that_also_misses_its_pings_logs_no_error() -> None:
    """Cut off with 1013 while stalled, then timed out by uvicorn's keepalive (it closes with
    1011 itself), then the socket drains: the close we still had pending must not blow up."""
    with UvicornServer(args=["--ws-ping-interval", "1", "--ws-ping-timeout", "1"]) as server:
        stalled = StalledClient(server, "/ws/950")
        try:
            with ws_connect(server, "/ws/951") as sender:
                # The sender reads what it is sent, so that it answers its own pings: only the
                # stalled client may miss them (left unread, its keepalive would race the cut-off).
                Reader(sender)
                deadline = time.monotonic() + 10
                while server.health()["chat_connections"] < 2 and time.monotonic() < deadline:
                    time.sleep(0.02)
                for i in range(COUNT):  # until the stalled client's outbox overflows
                    sender.send(f"{i:04d}{MESSAGE}")
                    time.sleep(1 / 40)
                    if server.health()["chat_connections"] == 1:
                        break
                assert server.health()["chat_connections"] == 1
                time.sleep(3)  # past the ping interval and timeout
                _, close = stalled.frames()
        finally:
            stalled.reset()
        time.sleep(0.5)
        log = server.log()
    assert close is None or close[0] in (1011, 1013)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log
