"""Whether the engine answers now: a ping to the broadcast backend and to the room store every
`ENGINE_PROBE_SECONDS`, each given as long to answer.

`Hubs.listening` says whether this process's subscription is up, which an engine that stalls
(stopped, swapping, a network that drops packets but keeps the connections) leaves true for as
long as it lasts: only a round trip tells. A hub's probe runs from its start to its stop; what its
latest round found is its `finding` (for `/health`), the `starlette_ws_engine_up` gauge, and one
log line when the engine stops answering and one when it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette_ws import metrics
from starlette_ws.backends import Backend, BackendError
from starlette_ws.backends.retry import describe
from starlette_ws.history import HistoryError, RoomStore

logger = logging.getLogger("starlette_ws.probe")


@dataclass(frozen=True, slots=True)
class Finding:
    """What a probe found: `error` says why the engine is unreachable, None when it answered."""

    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


ANSWERED = Finding()


class Probe:
    """Pings `backend`, and the room store `store()` gives once there is one, every `seconds`.

    It starts out `ANSWERED`: the hub has just reached the engine to start.
    """

    def __init__(self, backend: Backend, store: Callable[[], RoomStore | None], seconds: float) -> None:
        self.backend = backend
        self.store = store
        self.seconds = seconds
        self.finding = ANSWERED
        self._task: asyncio.Task[None] | None = None
        self._failing_since: float | None = None

    def start(self) -> None:
        metrics.ENGINE_UP.set(1)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> Finding:
        """One round: every target at once, each within `seconds`."""
        asks = [self._ask("broadcast", self.backend.ping)]
        store = self.store()
        if store is not None:
            asks.append(self._ask("room_store", store.ping))
        errors = [error for error in await asyncio.gather(*asks) if error is not None]
        return Finding("; ".join(errors)) if errors else ANSWERED

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.seconds)
            self._record(await self.check())

    async def _ask(self, target: str, ping: Callable[[], Awaitable[None]]) -> str | None:
        """None when `ping` answered in time, else why not (counted)."""
        try:
            async with asyncio.timeout(self.seconds):
                await ping()
            return None
        except TimeoutError:
            reason = f"no answer within {self.seconds:g} s"
        except (BackendError, HistoryError) as exc:
            reason = describe(exc)
        except Exception as exc:  # a bug in a ping: the engine's state is unknown, so not "ok"
            logger.exception("Probing the %s failed", target.replace("_", " "))
            reason = f"the probe failed: {describe(exc)}"
        metrics.ENGINE_PROBE_FAILURES.labels(target=target).inc()
        return f"{target.replace('_', ' ')}: {reason}"

    def _record(self, finding: Finding) -> None:
        self.finding = finding
        metrics.ENGINE_UP.set(1 if finding.ok else 0)
        if not finding.ok and self._failing_since is None:
            self._failing_since = time.monotonic()
            logger.warning("The engine does not answer: %s", finding.error)
        elif finding.ok and self._failing_since is not None:
            elapsed = time.monotonic() - self._failing_since
            self._failing_since = None
            logger.info("The engine answers again, after %.1f s", elapsed)
