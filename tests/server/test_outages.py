"""Engine outages seen by chat users on two uvicorn processes (real Redis and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import asyncpg
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from tests.clients import ws_connect
from tests.proxy import Proxy
from tests.server.test_scale_out import wait_for_subscribers
from tests.services import PostgresServer
from tests.uvicorn_server import UvicornServer


class Heard(threading.Thread):
    """Everything a client receives, with the time it arrived."""

    def __init__(self, ws: ClientConnection) -> None:
        super().__init__(daemon=True)
        self.ws = ws
        self.messages: list[tuple[float, str]] = []
        self.start()

    def run(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError, RuntimeError):
            for message in self.ws:
                self.messages.append((time.monotonic(), str(message)))

    def first(self, prefix: str, after: float = 0.0, within: float = 10.0) -> float:
        """When the first message starting with `prefix` arrived (after `after`); waits for it."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for at, message in list(self.messages):
                if at >= after and message.startswith(prefix):
                    return at
            time.sleep(0.01)
        raise AssertionError(f"no {prefix!r} within {within} s; heard {[m for _, m in self.messages][-5:]}")

    def texts(self, prefix: str) -> list[str]:
        return [message for _, message in self.messages if message.startswith(prefix)]


async def terminate_listeners(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        query = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%'"
        return len(await connection.fetch(query))
    finally:
        await connection.close()


def test_postgres_dying_connection_window_keeps_the_process_listening(postgres_server: PostgresServer) -> None:
    """Process A reaches PostgreSQL through a proxy that holds back the socket close after the
    server's FATAL message; in that window asyncpg raises InternalClientError. A's last chat
    client leaves inside the window (UNLISTEN there), its "left the chat" must still go out,
    and A must hear B again afterwards."""
    postgres_server.start()
    with Proxy(postgres_server.port, hold_close=1.5) as proxy:
        proxied = postgres_server.url.replace(f":{postgres_server.port}/", f":{proxy.port}/")
        env_a, env_b = {"BROADCAST_URL": proxied}, {"BROADCAST_URL": postgres_server.url}
        with UvicornServer(env=env_a) as a, UvicornServer(env=env_b) as b, ws_connect(b, "/ws/2") as two:
            heard = Heard(two)
            with ws_connect(a, "/ws/1"):
                wait_for_subscribers(a, b, count=2)
                mark = a.log_mark()
                assert asyncio.run(terminate_listeners(postgres_server.url)) == 2
                time.sleep(0.3)  # the FATAL message is through, the close is held back
                assert proxy.closes_held >= 1
            heard.first("Client #1 left the chat", within=5)
            with ws_connect(a, "/ws/3") as three:  # A listens again, on a new connection
                wait_for_subscribers(a, b, count=2)
                started = time.monotonic()
                while time.monotonic() - started < 10:
                    two.send("are you there")
                    with contextlib.suppress(TimeoutError):
                        if str(three.recv(timeout=0.5)) == "Client #2 says: are you there":
                            break
                else:
                    raise AssertionError("process A no longer hears process B")
            log = a.log_since(mark)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log
    assert "Lost the LISTEN connection" in log, log
