"""The loopback Redis Cluster the cluster engine's tests run on: it forms, and it fails over."""

from __future__ import annotations

import time

from harness.services import RedisCluster


def test_three_masters_with_a_replica_each_serve_every_slot(redis_cluster: RedisCluster) -> None:
    roles = redis_cluster.roles()
    assert sorted(roles.values()) == ["master"] * 3 + ["replica"] * 3
    assert redis_cluster.ready()
    assert redis_cluster.url.startswith("redis+cluster://") and redis_cluster.url.count(",") == 5


def test_a_killed_master_is_replaced_by_its_replica(redis_cluster: RedisCluster) -> None:
    """SIGKILL one master: its replica takes over its slots and the cluster is whole again within
    seconds (node timeout 2 s), as the failover tests of the engine will need."""
    victim = redis_cluster.masters()[0]
    victim.stop()
    started = time.monotonic()
    while not (len(redis_cluster.masters()) == 3 and redis_cluster.roles()[victim.port] == "failed"):
        assert time.monotonic() - started < 20, redis_cluster.roles()
        time.sleep(0.2)
    took = time.monotonic() - started
    print(f"failover took {took:.1f} s")
    assert victim.port not in {node.port for node in redis_cluster.masters()}
    victim.start()  # it comes back as a replica of the promoted one: whole again, 3 + 3
    while not redis_cluster.ready():
        assert time.monotonic() - started < 30, redis_cluster.roles()
        time.sleep(0.2)
