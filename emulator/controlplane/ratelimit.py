"""Rate limiters for workqueue retries, with client-go's semantics.

Each limiter answers one question, "how long must this item wait before it is
processed again?", and is told when an item succeeded (:meth:`forget`). They
compose: :class:`MaxOfRateLimiter` takes the longest wait any of them asks for,
which is how client-go's default controller limiter combines a per-item
exponential backoff (protects etcd from one hot-looping key) with an overall
token bucket (protects it from all keys failing at once).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import Protocol

from etcdlab.common.clock import Clock
from etcdlab.common.timescale import TimeScale
from etcdlab.common.tokenbucket import TokenBucket


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float:
        """Seconds the item must wait now; counts as one more failure of it."""
        ...

    def forget(self, item: Hashable) -> None:
        """The item succeeded: stop tracking it (its backoff starts over)."""
        ...

    def num_requeues(self, item: Hashable) -> int:
        """How many failures of the item are being tracked."""
        ...


class ItemExponentialFailureRateLimiter:
    """``base_delay * 2**failures``, capped at ``max_delay``, counted per item."""

    def __init__(self, base_delay: float, max_delay: float) -> None:
        if base_delay <= 0:
            raise ValueError("base_delay must be positive")
        if max_delay < base_delay:
            raise ValueError("max_delay must not be less than base_delay")
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        failures = self._failures.get(item, 0)
        self._failures[item] = failures + 1
        # 2**failures overflows a float long after it passes any sane max_delay.
        if failures >= 1024:
            return self.max_delay
        return min(self.base_delay * 2.0**failures, self.max_delay)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """One token bucket shared by all items (``qps`` refill, ``burst`` capacity).

    Like Go's ``rate.Limiter.Reserve``: a request always gets a reservation, and
    the bucket may go into debt, so the n-th request past the burst waits
    ``n / qps``. Items are not tracked, so :meth:`forget` does nothing.
    """

    def __init__(self, qps: float, burst: int, clock: Clock) -> None:
        if qps <= 0:
            raise ValueError("qps must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.qps = qps
        self.burst = burst
        self._bucket = TokenBucket(qps, clock, burst)

    def when(self, item: Hashable) -> float:
        return self._bucket.reserve()

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest wait any of its limiters asks for; every limiter sees every call."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("limiters must not be empty")
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


@dataclass(frozen=True)
class RateLimitConfig:
    """client-go's ``DefaultControllerRateLimiter`` numbers.

    ``base_delay``/``max_delay``: per-item exponential backoff, 5 ms doubling to
    1000 s. ``qps``/``burst``: the overall bucket, 10 retries per second after a
    burst of 100. Scaling shrinks the delays and speeds the refill by the same
    factor, so the bucket's drain time scales like every other duration.
    """

    base_delay: float = 0.005
    max_delay: float = 1000.0
    qps: float = 10.0
    burst: int = 100

    def __post_init__(self) -> None:
        if self.base_delay <= 0:
            raise ValueError("base_delay must be positive")
        if self.max_delay < self.base_delay:
            raise ValueError("max_delay must not be less than base_delay")
        if self.qps <= 0:
            raise ValueError("qps must be positive")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")

    def scaled(self, time_scale: float) -> RateLimitConfig:
        scale = TimeScale(time_scale)
        return replace(
            self,
            base_delay=scale.scaled(self.base_delay),
            max_delay=scale.scaled(self.max_delay),
            # A rate: tokens per unscaled second become tokens per scaled second.
            qps=scale.unscaled(self.qps),
        )


def default_controller_rate_limiter(
    clock: Clock, config: RateLimitConfig | None = None
) -> MaxOfRateLimiter:
    """Per-item exponential backoff and an overall token bucket, the slower wins."""
    config = config or RateLimitConfig()
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(config.base_delay, config.max_delay),
        BucketRateLimiter(config.qps, config.burst, clock),
    )
