from __future__ import annotations

from starlette_ws.ratelimit import TokenBucket


def test_token_bucket_allows_bursts_then_the_sustained_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.1
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] += 100  # refills only up to the burst
    assert sum(bucket.take() for _ in range(10)) == 3
