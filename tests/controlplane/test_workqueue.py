"""Rate limiters and the work queue on a FakeClock: pure logic, no etcd."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdlab.common.clock import FakeClock
from etcdlab.controlplane.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimitConfig,
    default_controller_rate_limiter,
)
from etcdlab.controlplane.workqueue import RateLimitingQueue, ShutDown, WorkQueue


def test_exponential_doubles_per_item_and_caps() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    delays = [limiter.when("a") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 1000.0
    assert limiter.when("b") == 0.005
    assert limiter.num_requeues("a") == 20
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 0.005


@given(st.integers(min_value=0, max_value=5000))
def test_exponential_never_exceeds_max(failures: int) -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    for _ in range(failures):
        limiter.when("x")
    assert 0.005 <= limiter.when("x") <= 1000.0


def test_bucket_allows_burst_then_paces_at_qps() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(10.0, 100, clock)
    assert [limiter.when(i) for i in range(100)] == [0.0] * 100
    assert limiter.when("next") == pytest.approx(0.1)
    assert limiter.when("after") == pytest.approx(0.2)
    assert limiter.num_requeues("next") == 0


async def test_bucket_refills_with_time_up_to_burst() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(10.0, 5, clock)
    for i in range(5):
        limiter.when(i)
    await clock.advance(0.3)
    assert [limiter.when(i) for i in range(3)] == [0.0] * 3
    assert limiter.when("x") == pytest.approx(0.1)
    await clock.advance(100)
    assert [limiter.when(i) for i in range(5)] == [0.0] * 5
    assert limiter.when("y") > 0


def test_max_of_takes_the_longest_wait_and_forgets_everywhere() -> None:
    clock = FakeClock()
    limiter = default_controller_rate_limiter(clock)
    # The bucket's burst hides nothing: the per-item backoff decides early on.
    assert [limiter.when("k") for _ in range(3)] == [0.005, 0.01, 0.02]
    assert limiter.num_requeues("k") == 3
    limiter.forget("k")
    assert limiter.num_requeues("k") == 0
    # Past the burst the bucket is the slower one for fresh items.
    for i in range(200):
        limiter.when(i)
    assert limiter.when("fresh") > 10.0


def test_limiters_validate_their_parameters() -> None:
    with pytest.raises(ValueError, match="base_delay"):
        ItemExponentialFailureRateLimiter(0, 1)
    with pytest.raises(ValueError, match="max_delay"):
        ItemExponentialFailureRateLimiter(2, 1)
    with pytest.raises(ValueError, match="qps"):
        BucketRateLimiter(0, 1, FakeClock())
    with pytest.raises(ValueError, match="burst"):
        BucketRateLimiter(1, 0, FakeClock())
    with pytest.raises(ValueError, match="limiters"):
        MaxOfRateLimiter()
    with pytest.raises(ValueError, match="burst"):
        RateLimitConfig(burst=0)
    with pytest.raises(ValueError, match="time_scale"):
        RateLimitConfig().scaled(0)


def test_config_scales_delays_and_refill_together() -> None:
    config = RateLimitConfig().scaled(0.1)
    assert config.base_delay == pytest.approx(0.0005)
    assert config.max_delay == pytest.approx(100.0)
    assert config.qps == pytest.approx(100.0)
    assert config.burst == 100


async def test_queue_dedups_waiting_items_in_fifo_order() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "c", "b"):
        queue.add(key)
    assert len(queue) == 3
    assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]


async def test_item_added_while_processing_is_requeued_on_done_only() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    item = await queue.get()
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0, "a key being processed must not be handed to a second worker"
    queue.done(item)
    assert len(queue) == 1
    assert await queue.get() == "a"
    queue.done("a")
    assert len(queue) == 0 and queue.processing == 0


async def test_get_waits_for_an_add() -> None:
    queue: WorkQueue[int] = WorkQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.add(7)
    assert await asyncio.wait_for(getter, 1) == 7


async def test_a_cancelled_getter_does_not_swallow_a_wakeup() -> None:
    queue: WorkQueue[int] = WorkQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add(1)
    first.cancel()
    assert await asyncio.wait_for(second, 1) == 1
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_shut_down_hands_out_the_rest_then_raises() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.shut_down()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(waiting, 1)

    queue = WorkQueue()
    queue.add("x")
    queue.shut_down()
    queue.add("ignored")
    assert await queue.get() == "x"
    with pytest.raises(ShutDown):
        await queue.get()


async def test_shut_down_with_drain_waits_for_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("x")
    item = await queue.get()
    drain = asyncio.create_task(queue.shut_down_with_drain())
    await asyncio.sleep(0)
    assert not drain.done()
    queue.done(item)
    await asyncio.wait_for(drain, 1)


async def test_add_after_waits_on_the_clock_and_keeps_the_earliest_deadline() -> None:
    clock = FakeClock()
    queue: RateLimitingQueue[str] = RateLimitingQueue(default_controller_rate_limiter(clock), clock)
    queue.add_after("a", 5)
    queue.add_after("a", 10)  # later: ignored
    queue.add_after("b", 3)
    queue.add_after("b", 1)  # earlier: moves it forward
    assert len(queue) == 0 and queue.waiting == 2
    await clock.advance(1)
    assert len(queue) == 1 and await queue.get() == "b"
    await clock.advance(3.9)
    assert len(queue) == 0
    await clock.advance(0.2)
    assert await queue.get() == "a"
    assert queue.waiting == 0
    await clock.advance(10)
    assert len(queue) == 0, "the superseded deadline must not add the item again"


async def test_add_rate_limited_backs_off_until_forget() -> None:
    clock = FakeClock()
    queue: RateLimitingQueue[str] = RateLimitingQueue(
        ItemExponentialFailureRateLimiter(1.0, 100.0), clock
    )
    ready_times = []
    for _ in range(3):
        queue.add_rate_limited("k")
        start = clock.now()
        while len(queue) == 0:
            await clock.advance(0.5)
        ready_times.append(clock.now() - start)
        queue.done(await queue.get())
    assert ready_times == [1.0, 2.0, 4.0]
    assert queue.num_requeues("k") == 3 and queue.retries == 3
    queue.forget("k")
    assert queue.num_requeues("k") == 0


async def test_shut_down_cancels_delayed_items() -> None:
    clock = FakeClock()
    queue: RateLimitingQueue[str] = RateLimitingQueue(default_controller_rate_limiter(clock), clock)
    queue.add_after("a", 1)
    queue.shut_down()
    await clock.advance(2)
    assert queue.waiting == 0
    with pytest.raises(ShutDown):
        await queue.get()
