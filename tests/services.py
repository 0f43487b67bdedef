"""The harness's services as tests need them: a component that is not installed skips the test,
or fails it under CI (harness.services.in_ci), where nothing may pass without having run."""

from __future__ import annotations

from typing import NoReturn

import pytest

from harness import services
from harness.services import PostgresServer, RedisCluster, RedisServer, Unavailable


def missing(reason: str) -> NoReturn:
    if services.in_ci():
        pytest.fail(f"cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require(name: str) -> str:
    """The path of a binary the test needs."""
    try:
        return services.require(name)
    except Unavailable as exc:
        missing(str(exc))


def start_redis(port: int | None = None) -> RedisServer:
    try:
        return services.start_redis(port)
    except Unavailable as exc:
        missing(str(exc))


def start_postgres(port: int | None = None) -> PostgresServer:
    try:
        return services.start_postgres(port)
    except Unavailable as exc:
        missing(str(exc))


def start_redis_cluster() -> RedisCluster:
    try:
        return services.start_redis_cluster()
    except Unavailable as exc:
        missing(str(exc))
