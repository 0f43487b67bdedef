"""Engine outages seen by chat users on two uvicorn processes (real Redis and PostgreSQL).

A chatting client sends its next message as soon as the previous one's "You wrote" is back, so
the time until each "You wrote" is how long the engine held that client's next message. Contract
B21 (docs/behaviour.md) promises: first delivery at most 2 s after the engine is back, a sender
never held more than 0.5 s by an engine problem, and a log that says what happened to each message.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import statistics
import threading
import time
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from harness.servers import UvicornServer
from harness.services import PostgresServer, RedisServer
from tests.backends.support import paused
from tests.clients import ws_connect
from tests.proxy import Proxy
from tests.server.test_scale_out import terminate_listeners, two_processes, wait_for_subscribers

HOLD_BOUND = 1.0  # asserted: contract B21 says 0.5 s; the margin absorbs a loaded test machine
BACK_WITHIN = 2.0  # contract B21: first delivery this long after the engine is back


class Chatter(threading.Thread):
    """Sends `ping 1`, `ping 2`, ... from one client, each once the previous one's "You wrote" is back."""

    def __init__(self, ws: ClientConnection, pace: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.ws = ws
        self.pace = pace
        self.holds: list[float] = []  # seconds from sending each ping to its "You wrote"
        self.own_copies: list[float] = []  # when each "says" copy came back to the sender
        self.error: BaseException | None = None
        self._done = threading.Event()
        self.start()

    @property
    def sent(self) -> int:
        return len(self.holds)

    def run(self) -> None:
        try:
            while not self._done.is_set():
                n = len(self.holds) + 1
                started = time.monotonic()
                self.ws.send(f"ping {n}")
                while (message := str(self.ws.recv(timeout=15))) != f"You wrote: ping {n}":
                    if message.startswith("Client #"):
                        self.own_copies.append(time.monotonic())
                self.holds.append(time.monotonic() - started)
                time.sleep(self.pace)
        except BaseException as exc:  # the test reports it
            self.error = exc

    def finish(self) -> list[float]:
        self._done.set()
        self.join(20)
        assert self.error is None, repr(self.error)
        return self.holds


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


def figures(holds: list[float]) -> str:
    return f"median {statistics.median(holds):.3f} s, max {max(holds):.3f} s over {len(holds)} messages"


@pytest.fixture
def redis_pair(redis_server: RedisServer) -> Iterator[tuple[UvicornServer, UvicornServer]]:
    redis_server.start()
    with two_processes(redis_server.url) as pair:
        yield pair


@pytest.fixture(params=["redis", "postgres"])
def engine(request: pytest.FixtureRequest) -> RedisServer | PostgresServer:
    server: RedisServer | PostgresServer = request.getfixturevalue(f"{request.param}_server")
    server.start()
    return server


def test_restart_first_delivery_within_2s_and_senders_never_held(engine: RedisServer | PostgresServer) -> None:
    """The engine crashes and stays away for 2.5 s (the reconnect backoff reaches its longest
    pause); a client keeps chatting throughout. Messages during the outage are not sent (and
    logged so); the first one delivered after the engine is back comes within 2 s."""
    with two_processes(engine.url) as (a, b), ws_connect(a, "/ws/1") as one, ws_connect(b, "/ws/2") as two:
        wait_for_subscribers(a, b, count=2)
        heard = Heard(two)
        mark = a.log_mark()
        engine.stop()
        chatter = Chatter(one)
        time.sleep(2.5)
        deaf = a.health()["listening"]
        engine.start()
        back = time.monotonic()
        first_b = heard.first("Client #1 says: ping", after=back) - back
        while not [at for at in chatter.own_copies if at > back] and time.monotonic() - back < 10:
            time.sleep(0.01)
        time.sleep(0.1)  # a few deliveries more
        holds = chatter.finish()
        first_a = min(at for at in chatter.own_copies if at > back) - back
        first = max(first_a, first_b)  # both processes hear the chat again
        log = a.log_since(mark)
        listening = a.health()["listening"]
    name = type(engine).__name__
    print(
        f"\n{name} restart: first delivery {first_b:.2f} s (other process), {first_a:.2f} s (own process)"
        f" after it answers; next message held {figures(holds)}"
    )
    assert first <= BACK_WITHIN
    assert max(holds) < HOLD_BOUND
    assert "not sent" in log and "Traceback" not in log
    assert (deaf, listening) == (False, True)  # /health tells


def test_paused_redis_holds_no_sender_and_the_log_tells_the_truth(
    redis_server: RedisServer, redis_pair: tuple[UvicornServer, UvicornServer]
) -> None:
    """SIGSTOP: sockets stay open and every command waits. Past the publish timeout, the log must
    not call a message "not sent" that Redis then delivers once it runs again (SIGCONT)."""
    a, b = redis_pair
    with ws_connect(a, "/ws/1") as one, ws_connect(b, "/ws/2") as two:
        wait_for_subscribers(a, b, count=2)
        heard = Heard(two)
        mark = a.log_mark()
        chatter = Chatter(one)
        with paused(redis_server):
            time.sleep(2.5)  # past the 2 s publish timeout
        resumed = time.monotonic()
        heard.first("Client #1 says: ping", after=resumed)
        time.sleep(0.5)  # every publish still pending has its answer
        holds = chatter.finish()
        time.sleep(0.3)
        delivered = heard.texts("Client #1 says: ping")
        log = a.log_since(mark)
    not_sent = len(re.findall(r"not sent", log))
    uncertain = len(re.findall(r"may not have been sent", log))
    print(
        f"\nredis paused 2.5 s: next message held {figures(holds)}; {chatter.sent} sent,"
        f" {len(set(delivered))} delivered, {not_sent} logged as not sent, {uncertain} as maybe not sent"
    )
    assert len(delivered) == len(set(delivered))  # at most once: no PUBLISH was retried
    assert max(holds) < HOLD_BOUND
    assert not_sent + len(delivered) <= chatter.sent  # nothing logged "not sent" was delivered
    assert "Traceback" not in log


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
            proxy.release()  # A's shutdown closes its connections: no need to hold those
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log
    assert "Lost the LISTEN connection" in log, log
