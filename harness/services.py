"""Real redis-server and PostgreSQL processes on free loopback ports in temp dirs, and Chromium.

Plain functions, not fixtures: the tests' conftest files decide the scope, and the benchmarks use
them too. Each server can be stopped (a crash: Redis gets SIGKILL, PostgreSQL an immediate
shutdown) and started again on the same port with the same data directory, to play an outage.
A binary that is not installed raises `Unavailable`; the tests turn it into a skip, or a failure
under CI (`in_ci`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from harness.net import HOST, free_port, stop_process, wait_until

START_TIMEOUT = 30.0


class Unavailable(RuntimeError):
    """A binary a service needs is not installed here."""


def in_ci() -> bool:
    """Whether this runs under CI (CI=true, as GitHub Actions and most others set it), where a
    missing component is an error rather than a reason to skip."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def find_binary(name: str) -> str | None:
    """`name` on PATH, else in Debian's versioned PostgreSQL directories (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates.sort(key=lambda path: int(Path(path).parts[-3]), reverse=True)
    return candidates[0] if candidates else None


def require(name: str) -> str:
    """The path of a binary; Unavailable when it is not installed."""
    path = find_binary(name)
    if path is None:
        raise Unavailable(f"{name} is not installed (run scripts/system-deps.sh as root)")
    return path


def chromium() -> str:
    """Debian's Chromium (or CHROMIUM_PATH); Unavailable when it is not there."""
    path = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise Unavailable(f"no Chromium at {path} (apt-get install chromium, or set CHROMIUM_PATH)")
    return str(path)


class Engine:
    """A server process on a loopback port, its files in a temporary directory. `stop()` ends it as
    a crash would (`crash_signal`), `start()` brings it back on the same port and files, `close()`
    stops it and removes the files."""

    crash_signal: int = signal.SIGKILL

    def __init__(self, port: int, prefix: str) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        assert self._process is not None, "the server is not running"
        return self._process.pid

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, START_TIMEOUT, self.crash_signal)
            self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(Engine):
    """SIGKILL stops it: the server vanishes as in a crash, its clients see their sockets closed."""

    def __init__(self, binary: str, port: int, *options: str) -> None:
        super().__init__(port, "starlette-ws-redis-")
        self.url = f"redis://{HOST}:{port}/0"
        self.log = self.dir / "redis.log"
        self._command = [
            binary,
            "--bind", HOST,
            "--port", str(port),
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.log),
            *options,
        ]  # fmt: skip

    def start(self) -> None:
        if self.running:
            return
        self._process = subprocess.Popen(
            self._command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._answers_ping, START_TIMEOUT, self._process, "redis-server", self.log)

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def start_redis(port: int | None = None) -> RedisServer:
    server = RedisServer(require("redis-server"), port or free_port())
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


class RedisCluster:
    """A Redis Cluster on loopback: `masters` masters with `replicas` replicas each, every node a
    redis-server with `--cluster-enabled yes` on a free port, joined by `redis-cli --cluster
    create`. A node that stops answering for `node_timeout` ms is failed over by its replica."""

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout: int = 2000) -> None:
        binary, self._cli = require("redis-server"), require("redis-cli")
        self.replicas = replicas
        # a replica's first sync starts at once (not after repl-diskless-sync-delay's 5 s)
        options = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--repl-diskless-sync-delay", "0")
        timeout = ("--cluster-node-timeout", str(node_timeout))
        # each node's cluster bus on a free port of its own (by default it is the port + 10,000)
        self.nodes = [
            RedisServer(binary, free_port(), *options, *timeout, "--cluster-port", str(free_port()))
            for _ in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        """`redis+cluster://` with every node as a seed."""
        return "redis+cluster://" + ",".join(f"{HOST}:{node.port}" for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        if len(self.nodes) == 1:  # one master (`--cluster create` wants three): every slot on it
            self.cli(self.nodes[0], "cluster", "addslotsrange", "0", "16383")
        else:
            addresses = [f"{HOST}:{node.port}" for node in self.nodes]
            create = ["--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas), "--cluster-yes"]
            self.cli(self.nodes[0], *create)
        wait_until(self.ready, START_TIMEOUT, what="redis cluster")

    def cli(self, node: RedisServer, *args: str) -> str:
        """What `redis-cli` prints for `args` sent to `node`."""
        done = subprocess.run(
            [self._cli, "-h", HOST, "-p", str(node.port), *args],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=True,
        )
        return done.stdout

    def ready(self) -> bool:
        """Every running node sees the cluster whole (state ok, all 16,384 slots served), as many
        masters serve slots, each with its replicas, as were made, and every replica has synced."""
        try:
            infos = [self.cli(node, "cluster", "info") for node in self.nodes if node.running]
            roles = list(self.roles().values())
        except subprocess.SubprocessError:
            return False
        whole = all("cluster_state:ok" in info and "cluster_slots_ok:16384" in info for info in infos)
        # a replica that has not synced yet would not take over: its data has no age
        synced = all(
            "master_link_status:up" in self.cli(node, "info", "replication")
            for node in self.nodes
            if node.running and "role:slave" in self.cli(node, "info", "replication")
        )
        masters = len(self.nodes) // (1 + self.replicas)
        return (
            whole
            and synced
            and roles.count("master") == masters
            and roles.count("replica") == len(self.nodes) - masters
        )

    def roles(self) -> dict[int, str]:
        """Port -> `master` (serving slots), `replica`, or `failed`, as the first running node sees
        them now (a node that left or has no slots yet counts as `failed`)."""
        seen = self.cli(next(node for node in self.nodes if node.running), "cluster", "nodes")
        roles: dict[int, str] = {}
        for line in seen.splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            flags = fields[2].split(",")
            if "fail" in flags or "fail?" in flags or "disconnected" in fields[7:8]:
                roles[port] = "failed"
            elif "master" in flags and len(fields) > 8:
                roles[port] = "master"
            elif "slave" in flags:
                roles[port] = "replica"
            else:
                roles[port] = "failed"
        return roles

    def masters(self) -> list[RedisServer]:
        roles = self.roles()
        return [node for node in self.nodes if node.running and roles.get(node.port) == "master"]

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def start_redis_cluster(masters: int = 3, replicas: int = 1, attempts: int = 3) -> RedisCluster:
    """A cluster on free ports; made again on others when a port was taken between being found
    free and being bound (twelve ports, while other tests open connections from ephemeral ones)."""
    for attempt in range(1, attempts + 1):
        cluster = RedisCluster(masters, replicas)
        try:
            cluster.start()
        except RuntimeError as exc:
            cluster.close()
            if "Address already in use" not in str(exc) or attempt == attempts:
                raise
            continue
        except BaseException:
            cluster.close()
            raise
        return cluster
    raise AssertionError("unreachable")


class PostgresServer(Engine):
    """A throwaway cluster with trust auth, owned by the `postgres` user when we are root.

    An immediate shutdown (SIGQUIT) stops it: every backend dies at once, recovery runs on start.
    SIGKILL on the postmaster alone would leave its backends behind and block a restart.
    """

    user = "postgres"
    database = "starlette_ws"
    crash_signal = signal.SIGQUIT

    def __init__(self, port: int) -> None:
        super().__init__(port, "starlette-ws-pg-")
        self.url = f"postgresql://{self.user}@{HOST}:{port}/{self.database}"
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._postgres = require("postgres")
        self._pg_isready = require("pg_isready")
        self._run_as: int | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root needs a `postgres` system user to own the cluster") from None
            self._run_as = owner.pw_uid
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)

    def init(self) -> None:
        self._run(
            [require("initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync"]
        )  # fmt: skip
        self.start()
        self._run([require("createdb"), "-h", HOST, "-p", str(self.port), "-U", self.user, self.database])

    def start(self) -> None:
        if self.running:
            return
        command = [
            self._postgres,
            "-D", str(self.data),
            "-p", str(self.port),
            "-k", str(self.dir),
            "-c", f"listen_addresses={HOST}",
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, user=self._run_as
            )
        wait_until(self._ready, START_TIMEOUT, self._process, "postgres", self.log)

    def _ready(self) -> bool:
        result = subprocess.run(
            [self._pg_isready, "-q", "-h", HOST, "-p", str(self.port), "-t", "1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return result.returncode == 0

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            user=self._run_as,
            cwd=self.dir,
        )
        if result.returncode != 0:
            output = result.stdout.decode(errors="replace")
            raise RuntimeError(f"{Path(command[0]).name} failed ({result.returncode}):\n{output}")


def start_postgres(port: int | None = None) -> PostgresServer:
    server = PostgresServer(port or free_port())
    try:
        server.init()
    except BaseException:
        server.close()
        raise
    return server
