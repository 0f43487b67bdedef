"""`starlette_ws.backends.retry`: backoff with jitter, one warning per outage, its end said and
counted, and a disconnect that ends the retries at once."""

from __future__ import annotations

import asyncio
import logging
import random

import anyio
import pytest
from prometheus_client import REGISTRY

from starlette_ws.backends.retry import Reconnector, describe

pytestmark = pytest.mark.anyio
LOGGER = logging.getLogger("tests.unit.retrying")  # metrics label: "retrying", this module's own


def count(name: str) -> float:
    return REGISTRY.get_sample_value(f"starlette_ws_backend_{name}_total", {"backend": "retrying"}) or 0.0


class Attempts:
    """An attempt that fails `failures` times with ConnectionError, then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError(111, f"Connection refused ({self.calls})")


@pytest.fixture
def jitter(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float, float]]:
    """Every pause's range and the length drawn in it (`random.uniform` itself still draws)."""
    drawn: list[tuple[float, float, float]] = []
    uniform = random.uniform

    def recording(low: float, high: float) -> float:
        value = uniform(low, high)
        drawn.append((low, high, value))
        return value

    monkeypatch.setattr(random, "uniform", recording)
    return drawn


async def test_the_pause_doubles_from_min_to_max_with_jitter(jitter: list[tuple[float, float, float]]) -> None:
    retry = Reconnector(LOGGER, "Engine", 0.001, 0.004)
    retry.start()  # as the backend's connect does
    attempt = Attempts(5)
    with anyio.fail_after(5):
        await retry.until_back(attempt, (ConnectionError,), "subscribed again")
    assert attempt.calls == 6
    assert [(low, high) for low, high, _ in jitter] == [
        (0.0005, 0.001),
        (0.001, 0.002),
        (0.002, 0.004),
        (0.002, 0.004),  # at retry_max it stays there
        (0.002, 0.004),
    ]
    assert all(low <= value <= high for low, high, value in jitter)


async def test_an_outage_is_one_warning_then_debug_lines_then_one_line_when_it_ends(
    caplog: pytest.LogCaptureFixture, jitter: list[tuple[float, float, float]]
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER.name)
    retry = Reconnector(LOGGER, "Engine at 127.0.0.1:1", 0.001, 0.002, lost="the engine's subscription")
    retry.start()  # as the backend's connect does
    outages, reconnects = count("outages"), count("reconnects")
    with anyio.fail_after(5):
        await retry.until_back(Attempts(3), (ConnectionError,), "subscribed again")
    lines = [(record.levelname, record.getMessage()) for record in caplog.records if record.name == LOGGER.name]
    assert lines[:3] == [
        ("WARNING", "Lost the engine's subscription ([Errno 111] Connection refused (1)); reconnecting"),
        ("DEBUG", "Engine at 127.0.0.1:1 still unreachable: [Errno 111] Connection refused (2)"),
        ("DEBUG", "Engine at 127.0.0.1:1 still unreachable: [Errno 111] Connection refused (3)"),
    ]
    assert len(lines) == 4 and lines[3][0] == "INFO"
    assert lines[3][1].startswith("Engine at 127.0.0.1:1 is back after ")
    assert lines[3][1].endswith(" s; subscribed again")
    assert (count("outages"), count("reconnects")) == (outages + 1, reconnects + 1)

    caplog.clear()
    with anyio.fail_after(5):
        await retry.until_back(Attempts(1), (ConnectionError,), "again")  # a new outage: a new warning
    assert [record.levelname for record in caplog.records if record.name == LOGGER.name] == ["WARNING", "INFO"]
    assert (count("outages"), count("reconnects")) == (outages + 2, reconnects + 2)


async def test_an_attempt_that_succeeds_at_once_says_and_counts_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER.name)
    retry = Reconnector(LOGGER, "Engine", 0.001, 0.002)
    retry.start()  # as the backend's connect does
    outages, reconnects = count("outages"), count("reconnects")
    attempt = Attempts(0)
    await retry.until_back(attempt, (ConnectionError,), "connected")
    assert attempt.calls == 1 and not caplog.records
    assert (count("outages"), count("reconnects")) == (outages, reconnects)


async def test_an_error_it_is_not_told_to_retry_goes_to_the_caller() -> None:
    retry = Reconnector(LOGGER, "Engine", 0.001, 0.002)
    retry.start()  # as the backend's connect does
    with pytest.raises(ConnectionRefusedError):
        await retry.until_back(Attempts(1), (TimeoutError,), "connected")


async def test_stopped_cuts_a_pause_short() -> None:
    retry = Reconnector(LOGGER, "Engine", 60.0, 60.0)
    retry.start()  # as the backend's connect does
    loop = asyncio.get_running_loop()
    started = loop.time()
    with anyio.fail_after(5):
        pausing = asyncio.create_task(retry.pause(60.0))
        await asyncio.sleep(0)
        assert not pausing.done()
        retry.stopped.set()
        await pausing
    assert loop.time() - started < 1.0


async def test_stopped_ends_the_retries_without_an_end_of_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER.name)
    retry = Reconnector(LOGGER, "Engine", 60.0, 60.0)
    retry.start()  # as the backend's connect does
    attempt = Attempts(1_000)
    reconnects = count("reconnects")
    with anyio.fail_after(5):
        retrying = asyncio.create_task(retry.until_back(attempt, (ConnectionError,), "connected"))
        await asyncio.sleep(0)
        assert attempt.calls == 1  # failed, and pauses for up to a minute
        retry.stopped.set()
        await retrying
    assert attempt.calls == 1 and count("reconnects") == reconnects
    assert [record.levelname for record in caplog.records if record.name == LOGGER.name] == ["WARNING"]

    attempt = Attempts(0)
    await retry.until_back(attempt, (ConnectionError,), "connected")  # stopped: not even tried
    assert attempt.calls == 0


def test_describe_names_the_error_when_it_says_nothing() -> None:
    assert describe(ConnectionRefusedError(111, "Connection refused")) == "[Errno 111] Connection refused"
    assert describe(TimeoutError()) == "TimeoutError"
    assert describe("a reason given as text") == "a reason given as text"


def test_it_runs_from_start_to_stop() -> None:
    retry = Reconnector(LOGGER, "Engine", 0.001, 0.002)
    assert not retry.running and retry.stopped.is_set()  # a backend not connected yet retries nothing
    retry.start()
    assert retry.running and not retry.stopped.is_set()
    retry.stop()
    assert not retry.running
