"""The per-key limiter on a real Redis with a hand-set clock: requests and tokens are counted over the last 60
seconds (not per calendar minute, where a burst across the boundary gets twice the limit), Retry-After is when the
oldest counted entry leaves the window, and in-flight slots free on release."""

import uuid

import pytest

from chimera.config import KeyLimits
from chimera.identity.limits import Limiter, RateLimitedError
from chimera.identity.principal import Principal


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def principal(**limits: int) -> Principal:
    return Principal(f"key-{uuid.uuid4().hex[:8]}", limits=KeyLimits(**limits))


async def refused(limiter: Limiter, who: Principal) -> RateLimitedError:
    with pytest.raises(RateLimitedError) as e:
        await limiter.admit(who)
    return e.value


async def test_requests_are_counted_over_the_last_minute_across_a_minute_boundary(redis_url: str) -> None:
    clock = Clock(60 * 1_000_000 + 59.5)  # half a second before a minute boundary
    limiter, carol = Limiter(redis_url, request_timeout_s=30, clock=clock), principal(requests_per_minute=2)
    try:
        await limiter.admit(carol)
        await limiter.admit(carol)
        clock.now += 1.0  # the next calendar minute: a fixed window would let two more in
        over = await refused(limiter, carol)
        assert (over.limit, over.retry_after_s) == ("requests_per_minute", 59)
        clock.now += 59.0  # the first two are now a minute old
        await limiter.admit(carol)
    finally:
        await limiter.close()


async def test_tokens_spent_in_the_last_minute_hold_the_key_back(redis_url: str) -> None:
    clock = Clock(1_000_000.0)
    limiter, dave = Limiter(redis_url, request_timeout_s=30, clock=clock), principal(tokens_per_minute=100)
    try:
        first = await limiter.admit(dave)
        clock.now += 10
        await limiter.release(first, 60)
        second = await limiter.admit(dave)  # 60 of 100 spent: still under
        await limiter.release(second, 60)
        clock.now += 5
        over = await refused(limiter, dave)
        assert (over.limit, over.retry_after_s) == ("tokens_per_minute", 55)
        clock.now += 55  # the first 60 tokens leave the window
        await limiter.admit(dave)
    finally:
        await limiter.close()


async def test_requests_in_flight_free_their_slot_on_release_or_when_stale(redis_url: str) -> None:
    clock = Clock(1_000_000.0)
    limiter, erin = Limiter(redis_url, request_timeout_s=30, clock=clock), principal(concurrent_requests=1)
    try:
        held = await limiter.admit(erin)
        assert (await refused(limiter, erin)).limit == "concurrent_requests"
        await limiter.release(held, 0)
        await limiter.admit(erin)  # never released: a crashed API process
        clock.now += 31
        await limiter.admit(erin)
    finally:
        await limiter.close()
