from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from harness.services import RedisCluster
from tests.services import start_redis_cluster


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    """A loopback Redis Cluster, 3 masters and a replica each, for one test module."""
    cluster = start_redis_cluster()
    yield cluster
    cluster.close()


@pytest.fixture
def whole(redis_cluster: RedisCluster) -> Iterator[RedisCluster]:
    """The cluster, made whole again after the test: every node running, 3 masters with a synced
    replica each (a killed master comes back as its successor's replica)."""
    yield redis_cluster
    for node in redis_cluster.nodes:
        node.start()
    deadline = time.monotonic() + 30
    while not redis_cluster.ready():
        assert time.monotonic() < deadline, redis_cluster.roles()
        time.sleep(0.2)
