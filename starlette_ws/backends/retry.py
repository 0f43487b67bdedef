"""What the Redis and PostgreSQL backends share when their server goes away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from starlette_ws import metrics


class Reconnector:
    """Backoff with jitter (`retry_min` doubling up to `retry_max`), one warning per outage.

    It runs from `start` (the backend connects) to `stop` (it disconnects): `stopped` is set
    meanwhile, which cuts a pause short and ends the retries.
    """

    def __init__(
        self, logger: logging.Logger, what: str, retry_min: float, retry_max: float, lost: str | None = None
    ) -> None:
        self.logger = logger
        self.what = what
        self.lost_what = lost or what
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.stopped = asyncio.Event()
        self.stopped.set()  # until start()
        self._down_since: float | None = None
        backend = logger.name.rpartition(".")[2]  # starlette_ws.backends.redis -> redis
        self._outages = metrics.BACKEND_OUTAGES.labels(backend=backend)
        self._reconnects = metrics.BACKEND_RECONNECTS.labels(backend=backend)

    @property
    def running(self) -> bool:
        return not self.stopped.is_set()

    def start(self) -> None:
        self.stopped.clear()

    def stop(self) -> None:
        self.stopped.set()

    def lost(self, reason: BaseException | str) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._outages.inc()
            self.logger.warning("Lost %s (%s); reconnecting", self.lost_what, describe(reason))
        else:
            self.logger.debug("%s still unreachable: %s", self.what, describe(reason))

    async def until_back(
        self, attempt: Callable[[], Awaitable[None]], errors: tuple[type[BaseException], ...], detail: str
    ) -> None:
        """Run `attempt` until it succeeds or the backend stops; say so when an outage ends."""
        delay = self.retry_min
        while not self.stopped.is_set():
            try:
                await attempt()
            except errors as exc:
                self.lost(exc)
                await self.pause(random.uniform(delay / 2, delay))
                delay = min(delay * 2, self.retry_max)
                continue
            if self._down_since is not None:
                elapsed = time.monotonic() - self._down_since
                self.logger.info("%s is back after %.1f s; %s", self.what, elapsed, detail)
                self._down_since = None
                self._reconnects.inc()
            return

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopped.wait()


def describe(reason: BaseException | str) -> str:
    return str(reason) or type(reason).__name__
