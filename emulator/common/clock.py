"""Injectable clocks: timing logic asks a clock, never ``time`` or ``asyncio.sleep``.

``MonotonicClock`` is the real one. ``FakeClock`` only moves when a test calls
:meth:`FakeClock.advance`, waking every sleeper whose deadline has passed, so
renew deadlines, backoffs and rate limits are tested without sleeping.
:func:`within` is ``asyncio.timeout`` on a clock: ``asyncio.timeout`` follows
the event loop's clock, which a ``FakeClock`` does not move.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds; only differences are meaningful."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Never returns early. uvloop's timers (millisecond resolution) fire up
        to a millisecond before their time, Go's never do: a check polled once a
        second behind a one-per-second rate limiter was refused on every early
        wake-up and answered its previous result, so the emulated apiserver
        noticed a dead member a probe or two later than the real one."""
        due = time.monotonic() + seconds
        await asyncio.sleep(max(0.0, seconds))
        # Not a condition to wait for (ASYNC110): the timer's own precision.
        while (left := due - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left)


class FakeClock:
    """A clock that stands still until advanced."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting on this clock (cancelled ones excluded)."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers in deadline order.

        Between wake-ups the event loop runs until idle, so a woken task that
        sleeps again with a deadline inside the window is woken in this call too.
        """
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        target = self._now + seconds
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
                await _settle()
        self._now = target
        await _settle()


async def _settle() -> None:
    # A handful of loop iterations lets woken tasks run up to their next await.
    for _ in range(20):
        await asyncio.sleep(0)


async def within(clock: Clock, seconds: float, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` for at most ``seconds`` of ``clock``.

    Past the deadline ``work`` is cancelled and ``TimeoutError`` raised; if the
    caller is cancelled, ``work`` is cancelled and finished before re-raising.
    """
    task = asyncio.ensure_future(work)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        timer.cancel()
        task.cancel()
        await asyncio.wait((task,))
        if not task.cancelled():
            task.exception()  # retrieved: the caller's cancellation wins
        raise
    timer.cancel()
    if not task.done():
        task.cancel()
        await asyncio.wait((task,))
    if task.cancelled():
        raise TimeoutError(f"not done within {seconds:g}s")
    return task.result()
