from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucket:
    """`rate` events a second on average, `burst` at once; `take()` says whether one may pass."""

    __slots__ = ("_clock", "_tokens", "_updated", "burst", "rate")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class ConnectGate:
    """Per-key token buckets (a client address, a client id) for connections, in a bounded map:
    past `keys`, the bucket used longest ago goes (a key that comes back starts full again)."""

    def __init__(self, rate: float, burst: int, keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.keys = keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > self.keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take()


class SharedBuckets:
    """One `TokenBucket` per key for as long as something holds it: the connections of one client
    id share one rate, however many it opens."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._held: dict[str, tuple[TokenBucket, int]] = {}

    def acquire(self, key: str) -> TokenBucket:
        bucket, holders = self._held.get(key) or (TokenBucket(self.rate, self.burst), 0)
        self._held[key] = (bucket, holders + 1)
        return bucket

    def release(self, key: str) -> None:
        bucket, holders = self._held.get(key) or (None, 0)
        if bucket is None:
            return
        if holders > 1:
            self._held[key] = (bucket, holders - 1)
        else:
            del self._held[key]

    def __len__(self) -> int:
        return len(self._held)
