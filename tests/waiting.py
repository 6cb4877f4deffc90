"""Wait on a condition with a deadline: the only way tests synchronise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


async def settled(value: Callable[[], object], quiet: float, timeout: float, what: str) -> None:
    """Wait until ``value()`` has stayed the same for ``quiet`` seconds; fail
    after ``timeout`` if it keeps changing."""
    last = value()
    since = time.monotonic()

    def still() -> bool:
        nonlocal last, since
        now, current = time.monotonic(), value()
        if current != last:
            last, since = current, now
        return now - since >= quiet

    await eventually(still, timeout, what)
