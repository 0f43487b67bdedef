"""`starlette_ws.probe`: what a round of pings finds, and how `Hubs` and `/health` report it."""

from __future__ import annotations

import asyncio
import logging

import anyio
import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from harness.net import free_port
from starlette_ws.app import create_app
from starlette_ws.backends.memory import MemoryBackend
from starlette_ws.history import HistoryError, RoomStore
from starlette_ws.history.memory import MemoryStore
from starlette_ws.hubs import Hubs
from starlette_ws.probe import ANSWERED, Finding, Probe
from starlette_ws.settings import Settings

SECONDS = 0.05


class Stalling(MemoryBackend):
    """A backend whose pings wait while `stalled` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = False
        self.answer = asyncio.Event()

    async def ping(self) -> None:
        if self.stalled:
            await self.answer.wait()


class Refusing(MemoryStore):
    def __init__(self) -> None:
        super().__init__("memory://", "p:", 10, 60.0)

    async def ping(self) -> None:
        raise HistoryError("Redis at 127.0.0.1:1 does not answer: Connection refused")


def failures(target: str) -> float:
    return REGISTRY.get_sample_value("starlette_ws_engine_probe_failures_total", {"target": target}) or 0.0


def up() -> float | None:
    return REGISTRY.get_sample_value("starlette_ws_engine_up")


async def until(probe: Probe, ok: bool) -> Finding:
    while probe.finding.ok is not ok:  # noqa: ASYNC110 - a probe sets no event: its finding is read
        await asyncio.sleep(SECONDS / 5)
    return probe.finding


@pytest.mark.anyio
async def test_a_ping_left_unanswered_makes_the_engine_unreachable_until_one_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="starlette_ws.probe")
    backend = Stalling()
    probe = Probe(backend, lambda: None, SECONDS)
    failed = failures("broadcast")
    with anyio.fail_after(5):
        probe.start()
        try:
            assert probe.finding is ANSWERED and up() == 1
            backend.stalled = True
            finding = await until(probe, ok=False)
            assert finding.error == f"broadcast: no answer within {SECONDS:g} s"
            assert up() == 0 and failures("broadcast") > failed
            backend.answer.set()
            assert await until(probe, ok=True) is ANSWERED
            assert up() == 1
        finally:
            await probe.stop()
    messages = [record.getMessage() for record in caplog.records if record.name == "starlette_ws.probe"]
    assert messages[0] == f"The engine does not answer: broadcast: no answer within {SECONDS:g} s"
    assert messages[1].startswith("The engine answers again, after ")
    assert len(messages) == 2  # one line when it stops answering, one when it answers again


@pytest.mark.anyio
async def test_the_room_store_is_probed_once_there_is_one() -> None:
    store: RoomStore | None = None
    probe = Probe(MemoryBackend(), lambda: store, SECONDS)
    with anyio.fail_after(5):
        assert await probe.check() is ANSWERED  # no store yet: the backend alone
        store = Refusing()
        failed = failures("room_store")
        finding = await probe.check()
    assert finding.error == "room store: Redis at 127.0.0.1:1 does not answer: Connection refused"
    assert failures("room_store") == failed + 1


@pytest.mark.anyio
async def test_hubs_probe_from_their_start_to_their_stop() -> None:
    hubs = Hubs(Settings(send_queue_bytes=1000, engine_probe_seconds=SECONDS))
    with anyio.fail_after(5):
        await hubs.start()
        try:
            (probe,) = hubs._probes.values()
            assert probe._task is not None and not probe._task.done()
            assert probe.store() is not None  # the lifespan started the rooms' store: it is probed too
            assert hubs.probed.ok
        finally:
            await hubs.stop()
    assert not hubs._probes and probe._task is None


def test_health_says_degraded_and_why_when_no_hub_reaches_the_engine() -> None:
    """Without the lifespan nothing has reached Redis yet: neither listening nor probed."""
    client = TestClient(create_app(Settings(broadcast_url=f"redis://127.0.0.1:{free_port()}/0")))
    body = client.get("/health").json()
    assert (body["status"], body["listening"], body["engine"]) == ("degraded", False, "unreachable")
    assert body["engine_error"].startswith("not connected")


def test_engine_probe_seconds_is_read_from_the_environment() -> None:
    assert Settings.from_environ({}).engine_probe_seconds == 2.0
    assert Settings.from_environ({"ENGINE_PROBE_SECONDS": "0.5"}).engine_probe_seconds == 0.5
