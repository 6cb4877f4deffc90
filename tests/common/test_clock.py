from __future__ import annotations

import asyncio

import pytest

from etcdlab.common.clock import FakeClock, MonotonicClock, within


async def test_fake_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("late", 3), ("early", 1))]
    await clock.advance(2)
    assert woke == [("early", 1)]
    await clock.advance(5)
    assert woke == [("early", 1), ("late", 3)]
    assert clock.now() == 7
    await asyncio.gather(*tasks)


async def test_fake_clock_wakes_chained_sleeps_within_one_advance() -> None:
    clock = FakeClock()
    ticks: list[float] = []

    async def ticker() -> None:
        for _ in range(3):
            await clock.sleep(1)
            ticks.append(clock.now())

    task = asyncio.create_task(ticker())
    await clock.advance(10)
    assert ticks == [1, 2, 3]
    await task


async def test_fake_clock_rejects_going_back() -> None:
    with pytest.raises(ValueError, match="seconds"):
        await FakeClock().advance(-1)


async def test_monotonic_clock_moves_forward() -> None:
    clock = MonotonicClock()
    before = clock.now()
    await clock.sleep(0.01)
    assert clock.now() > before


async def test_within_returns_the_result_before_the_deadline() -> None:
    clock = FakeClock()

    async def work() -> str:
        await clock.sleep(1.0)
        return "done"

    task = asyncio.create_task(within(clock, 2.0, work()))
    await clock.advance(1.0)
    assert await task == "done"
    assert clock.sleepers == 0


async def test_within_cancels_the_work_at_the_deadline() -> None:
    clock = FakeClock()
    cancelled = asyncio.Event()

    async def work() -> None:
        try:
            await clock.sleep(10.0)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.create_task(within(clock, 2.0, work()))
    await clock.advance(2.0)
    with pytest.raises(TimeoutError, match="not done within 2s"):
        await task
    assert cancelled.is_set() and clock.sleepers == 0


async def test_within_passes_errors_through_and_honours_cancellation() -> None:
    clock = FakeClock()

    async def fails() -> None:
        raise ConnectionError("boom")

    with pytest.raises(ConnectionError, match="boom"):
        await within(clock, 1.0, fails())
    outer = asyncio.create_task(within(clock, 5.0, clock.sleep(10.0)))
    await clock.advance(1.0)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert clock.sleepers == 0


def test_the_real_clock_never_wakes_early_on_uvloop() -> None:
    # uvloop (what `etcdlab run` uses) fires a timer up to a millisecond early in
    # about four sleeps of ten; a rate limiter asked one interval later tells.
    import uvloop

    clock = MonotonicClock()

    async def sleeps() -> list[tuple[float, float]]:
        slept = []
        for index in range(60):
            wanted = 0.0103 + (index % 7) * 0.0001
            started = clock.now()
            await clock.sleep(wanted)
            slept.append((wanted, clock.now() - started))
        return slept

    early = [(wanted, took) for wanted, took in uvloop.run(sleeps()) if took < wanted]
    assert early == []
