"""Waiting on an injected clock: jittered periods and deadlines.

``asyncio.timeout`` follows the event loop's clock, which a ``FakeClock`` does
not move; these helpers put every wait on the injected clock instead.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

from etcdlab.common.clock import Clock

T = TypeVar("T")


def jittered(period: float, factor: float, rng: random.Random) -> float:
    """``wait.Jitter``: ``period`` stretched by up to ``factor`` times itself."""
    return period * (1.0 + rng.random() * factor)


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
