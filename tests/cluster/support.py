"""What the cluster engine's tests share: where a name lives, and moving a slot by hand."""

from __future__ import annotations

import json
import re
import time

from redis.crc import key_slot

from harness.services import RedisCluster, RedisServer


def rest(text: str) -> str:
    return json.dumps({"type": "message", "text": text}, separators=(",", ":"))[1:]


def slot_of(name: str) -> int:
    return key_slot(name.encode())


def owner_of(cluster: RedisCluster, name: str) -> RedisServer:
    """The master that serves `name`'s slot now, as the cluster says."""
    slot = slot_of(name)
    return next(master for master in cluster.masters() if _serves(cluster, master, slot))


def move_slot(cluster: RedisCluster, slot: int, to: RedisServer) -> RedisServer:
    """Migrate `slot` (and its keys) to the master `to` as `redis-cli --cluster reshard` does, one
    step at a time; the master it came from."""
    source = next(master for master in cluster.masters() if _serves(cluster, master, slot))
    ids = {node.port: cluster.cli(node, "cluster", "myid").strip() for node in cluster.masters()}
    cluster.cli(to, "cluster", "setslot", str(slot), "importing", ids[source.port])
    cluster.cli(source, "cluster", "setslot", str(slot), "migrating", ids[to.port])
    while keys := cluster.cli(source, "cluster", "getkeysinslot", str(slot), "100").split():
        cluster.cli(source, "migrate", "127.0.0.1", str(to.port), "", "0", "5000", "keys", *keys)
    for master in cluster.masters():
        cluster.cli(master, "cluster", "setslot", str(slot), "node", ids[to.port])
    deadline = time.monotonic() + 10
    while not all(_serves(cluster, node, slot, ids[to.port]) for node in cluster.masters()):
        assert time.monotonic() < deadline, "the slot's new owner was not agreed"
        time.sleep(0.05)
    return source


def _serves(cluster: RedisCluster, node: RedisServer, slot: int, owner: str | None = None) -> bool:
    """Whether `node` (or, with `owner`, the node of that id as `node` sees it) serves `slot`."""
    me = owner or cluster.cli(node, "cluster", "myid").strip()
    for row in cluster.cli(node, "cluster", "nodes").splitlines():
        fields = row.split()
        if fields[0] != me:
            continue
        for served in fields[8:]:
            if served.startswith("["):
                continue
            low, _, high = served.partition("-")
            if int(low) <= slot <= int(high or low):
                return True
    return False


def replica_of(cluster: RedisCluster, master: RedisServer, within: float = 10.0) -> RedisServer:
    """A running replica of `master` that has synced with it (waited for: after a failover the old
    master joins again as a replica a little later)."""
    deadline = time.monotonic() + within
    while True:
        for node in cluster.nodes:
            if node.running and node.port != master.port:
                replication = cluster.cli(node, "info", "replication")
                if (
                    re.search(f"^master_port:{master.port}\\s*$", replication, re.M)
                    and "master_link_status:up" in replication
                ):
                    return node
        assert time.monotonic() < deadline, f"no replica of {master.port}: {cluster.roles()}"
        time.sleep(0.1)


def owned_by(cluster: RedisCluster, name: str, node: RedisServer, within: float = 10.0) -> None:
    """Wait until `node` serves `name`'s slot (a failover under way leaves it to nobody for a while)."""
    deadline = time.monotonic() + within
    while not _serves(cluster, node, slot_of(name)):
        assert time.monotonic() < deadline, f"{node.port} does not serve {name!r}: {cluster.roles()}"
        time.sleep(0.05)


def taken_over(
    cluster: RedisCluster, replica: RedisServer, name: str, asked: bool = False, within: float = 25.0
) -> None:
    """Ask `replica` for a manual failover (CLUSTER FAILOVER) until it serves `name`'s slot. The
    masters vote for a replica of the same master once in twice the node timeout, so a failover
    asked for soon after another in that shard gets no votes and is given up after 5 s: asked
    again then. `asked`: the first request has been made already."""
    deadline = time.monotonic() + within
    while True:
        if not asked:
            assert cluster.cli(replica, "cluster", "failover").strip() == "OK"
        asked = False
        try:
            owned_by(cluster, name, replica, within=min(6.0, max(deadline - time.monotonic(), 0.1)))
            return
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
