"""The cluster engine through failovers: a SIGKILLed master, a SIGSTOPped one, a manual failover.
Each test leaves the cluster whole again (3 masters, a replica each)."""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
import pytest

from harness.services import RedisCluster, RedisServer
from starlette_ws.backends import BackendError
from starlette_ws.backends.cluster import ClusterBackend
from starlette_ws.backends.cluster_nodes import tagged
from starlette_ws.engines import Engine
from starlette_ws.history import HistoryError
from tests.backends.support import Listener, connected, paused
from tests.cluster.support import owner_of, replica_of, rest, taken_over

LOGGER = "starlette_ws.backends.cluster"


def seeded_by(cluster: RedisCluster, node: RedisServer) -> str:
    return f"redis+cluster://127.0.0.1:{node.port}"


async def heard_again(pub: ClusterBackend, listener: Listener, channel: str, within: float) -> float:
    """Publish every 100 ms until the listener hears it (publishes that fail are retried); how long."""
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < within:
        n += 1
        try:
            await pub.publish(channel, f"again {n}")
            event = await listener.get(within=0.1)
        except (BackendError, TimeoutError):
            continue
        assert event.message.startswith("again ")
        while not listener.events.empty():
            listener.events.get_nowait()
        return time.monotonic() - started
    raise AssertionError(f"nothing heard on {channel} within {within} s")


@pytest.mark.anyio
async def test_a_killed_master_that_was_the_seed(whole: RedisCluster, caplog: pytest.LogCaptureFixture) -> None:
    """SIGKILL the master that owns the channel and was the only seed: the subscriber follows the
    promoted replica, publishing works again, and the room store appends there."""
    caplog.set_level(logging.INFO, LOGGER)
    channel = "failover-chat"
    victim = owner_of(whole, tagged(channel))
    url = seeded_by(whole, victim)
    with anyio.fail_after(40):
        sub, pub = await connected(url), await connected(url)
        assert isinstance(sub, ClusterBackend) and isinstance(pub, ClusterBackend)
        store = Engine(url).store("failover:", 100, 300.0)
        await store.connect()
        listener = Listener(sub)
        try:
            await sub.subscribe(channel)
            await heard_again(pub, listener, channel, 5)
            victim.stop()
            took = await heard_again(pub, listener, channel, 25)
            print(f"chat heard again {took:.1f} s after the master was killed")
            assert sub.resubscribed >= 1
            entry = await store.append("room", rest("after the failover"))
            assert entry.offset >= 1
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()
            await store.disconnect()
    assert any("is back after" in record.getMessage() for record in caplog.records)


@pytest.mark.anyio
async def test_a_stopped_master_is_noticed_within_5_s(whole: RedisCluster, caplog: pytest.LogCaptureFixture) -> None:
    """SIGSTOP the master of a subscribed channel: its sockets stay open and nothing answers. The
    subscriber says so within 5 s (idle PING), `ping` fails within its timeout, and once the
    replica has taken over, messages flow again."""
    caplog.set_level(logging.INFO, LOGGER)
    channel = "stopped-chat"
    victim = owner_of(whole, tagged(channel))
    with anyio.fail_after(40):
        sub, pub = await connected(whole.url), await connected(whole.url)
        assert isinstance(sub, ClusterBackend) and isinstance(pub, ClusterBackend)
        store = Engine(whole.url).store("stopped:", 100, 300.0)
        await store.connect()
        listener = Listener(sub)
        try:
            await sub.subscribe(channel)
            await heard_again(pub, listener, channel, 5)
            with paused(victim):
                stopped = time.monotonic()
                while not any("no answer to PING" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                noticed = time.monotonic() - stopped
                # silent, and named; unless its replica has taken over meanwhile (then the ping
                # has learnt the new master and pinged that one instead)
                for engine, error in ((pub, BackendError), (store, HistoryError)):
                    try:
                        await engine.ping()
                    except error as exc:
                        assert f"no answer from 127.0.0.1:{victim.port}" in str(exc)
                    else:
                        assert owner_of(whole, tagged(channel)).port != victim.port
                took = await heard_again(pub, listener, channel, 25)
                print(f"a stopped master noticed in {noticed:.1f} s; chat heard again after {took:.1f} s more")
                assert noticed < 5
                await pub.ping()  # the promoted replica answers
                await store.ping()
                victim.stop()  # killed while stopped: `whole` starts it again as a replica
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()
            await store.disconnect()


@pytest.mark.anyio
async def test_a_manual_failover_the_subscriber_follows(whole: RedisCluster) -> None:
    """CLUSTER FAILOVER on a replica: master and replica swap without losing a write; the
    subscriber, unsubscribed by its old master, subscribes on the new one."""
    channel = "manual-chat"
    old = owner_of(whole, tagged(channel))
    with anyio.fail_after(45):
        sub, pub = await connected(whole.url), await connected(whole.url)
        assert isinstance(sub, ClusterBackend) and isinstance(pub, ClusterBackend)
        listener = Listener(sub)
        try:
            await sub.subscribe(channel)
            await heard_again(pub, listener, channel, 5)
            replica = replica_of(whole, old)
            await asyncio.to_thread(taken_over, whole, replica, tagged(channel))
            took = await heard_again(pub, listener, channel, 10)
            print(f"chat heard again {took:.2f} s after the failover")
            assert sub.resubscribed >= 1
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()
