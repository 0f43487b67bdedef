from __future__ import annotations

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
