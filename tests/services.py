"""Real redis-server and PostgreSQL processes for tests, on free loopback ports in temp dirs.

Plain functions, not fixtures: conftest files decide the scope. Each server can be stopped
(a crash: Redis gets SIGKILL, PostgreSQL an immediate shutdown) and started again on the same
port with the same data directory, so tests can play an outage.
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
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.servers import free_port

HOST = "127.0.0.1"
START_TIMEOUT = 30.0


def find_binary(name: str) -> str | None:
    """`name` on PATH, else in Debian's versioned PostgreSQL directories (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates.sort(key=lambda path: int(Path(path).parts[-3]), reverse=True)
    return candidates[0] if candidates else None


def require(name: str) -> str:
    """The path of a binary the test needs; missing, it fails the test under CI=true, else skips."""
    path = find_binary(name)
    if path is None:
        message = f"{name} is not installed (run scripts/system-deps.sh as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.005
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {START_TIMEOUT} s:\n{_tail(log)}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    except OSError:
        return "(no log)"


class RedisServer:
    def __init__(self, binary: str, port: int) -> None:
        self.port = port
        self.url = f"redis://{HOST}:{port}/0"
        self.dir = Path(tempfile.mkdtemp(prefix="starlette-ws-redis-"))
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
        ]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        assert self._process is not None, "the server is not running"
        return self._process.pid

    def start(self) -> None:
        if self.running:
            return
        self._process = subprocess.Popen(
            self._command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_until(self._answers_ping, self._process, "redis-server", self.log)

    def stop(self) -> None:
        """SIGKILL: the server vanishes as in a crash, its clients see their sockets closed."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGKILL)
            self._process.wait()
            self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

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


class PostgresServer:
    """A throwaway cluster with trust auth, owned by the `postgres` user when we are root."""

    user = "postgres"
    database = "starlette_ws"

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"postgresql://{self.user}@{HOST}:{port}/{self.database}"
        self.dir = Path(tempfile.mkdtemp(prefix="starlette-ws-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._postgres = require("postgres")
        self._pg_isready = require("pg_isready")
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as: int | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root needs a `postgres` system user to own the cluster")
            self._run_as = owner.pw_uid
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

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
        _wait_until(self._ready, self._process, "postgres", self.log)

    def stop(self) -> None:
        """Immediate shutdown (SIGQUIT): every backend dies at once, recovery runs on start.

        SIGKILL on the postmaster alone would leave its backends behind and block a restart.
        """
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGQUIT)
            try:
                self._process.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

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
