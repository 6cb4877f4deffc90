"""A controller workqueue with client-go's semantics, on asyncio and a Clock.

The contract that makes controllers correct under failure:

* an item is queued at most once: adding a key that is already waiting is a no-op
  (ten updates of one object cost one reconcile);
* an item is processed by at most one worker: while it is being processed (between
  :meth:`WorkQueue.get` and :meth:`WorkQueue.done`) adding it only marks it dirty,
  and :meth:`WorkQueue.done` queues it again, so no change is lost and no key is
  reconciled twice in parallel;
* failures are retried later, not now: :meth:`RateLimitingQueue.add_rate_limited`
  asks the rate limiter how long to wait, :meth:`RateLimitingQueue.forget` resets
  the item's backoff after a success.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Hashable
from typing import Generic, TypeVar

from etcdlab.common.clock import Clock
from etcdlab.controlplane.ratelimit import RateLimiter

T = TypeVar("T", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down and holds nothing more to hand out."""


class WorkQueue(Generic[T]):
    def __init__(self) -> None:
        self._queue: collections.deque[T] = collections.deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._shutting_down = False
        self._drained: asyncio.Event | None = None

    def __len__(self) -> int:
        """Items waiting to be handed out (client-go's depth)."""
        return len(self._queue)

    @property
    def processing(self) -> int:
        return len(self._processing)

    def add(self, item: T) -> None:
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        if item in self._processing:
            return  # re-queued by done()
        self._queue.append(item)
        self._wake_one()

    async def get(self) -> T:
        """The next item, which the caller owns until it calls :meth:`done`.

        Waits while the queue is empty; raises :class:`ShutDown` once the queue is
        shut down and empty.
        """
        while not self._queue:
            if self._shutting_down:
                raise ShutDown
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # Woken and cancelled at once: hand the wake-up to the next getter.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                raise
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        return item

    def done(self, item: T) -> None:
        self._processing.discard(item)
        if item in self._dirty:
            self._queue.append(item)
            self._wake_one()
        elif not self._processing and self._drained is not None:
            self._drained.set()

    def shut_down(self) -> None:
        """Stop accepting items; getters get what is queued, then :class:`ShutDown`."""
        self._shutting_down = True
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def shut_down_with_drain(self) -> None:
        """Shut down, then wait until every item handed out has been marked done."""
        self.shut_down()
        if self._processing:
            self._drained = asyncio.Event()
            await self._drained.wait()

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class RateLimitingQueue(WorkQueue[T]):
    """A :class:`WorkQueue` that can add items later, by a delay or a rate limiter.

    A delayed item is waiting, not queued: adding it again with a later deadline
    keeps the earlier one, with an earlier deadline moves it forward.
    """

    def __init__(self, rate_limiter: RateLimiter, clock: Clock) -> None:
        super().__init__()
        self.rate_limiter = rate_limiter
        self._clock = clock
        self._waiting: dict[T, tuple[float, asyncio.Task[None]]] = {}
        self.retries = 0

    @property
    def waiting(self) -> int:
        """Items whose delay has not yet passed."""
        return len(self._waiting)

    def add_after(self, item: T, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        ready_at = self._clock.now() + delay
        current = self._waiting.get(item)
        if current is not None:
            if current[0] <= ready_at:
                return
            current[1].cancel()
        task = asyncio.get_running_loop().create_task(self._add_when_ready(item, delay))
        self._waiting[item] = (ready_at, task)

    def add_rate_limited(self, item: T) -> None:
        self.retries += 1
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: T) -> None:
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)

    def shut_down(self) -> None:
        for _, task in self._waiting.values():
            task.cancel()
        self._waiting.clear()
        super().shut_down()

    async def _add_when_ready(self, item: T, delay: float) -> None:
        await self._clock.sleep(delay)
        del self._waiting[item]
        self.add(item)
