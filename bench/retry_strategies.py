"""The retry strategies ``etcdlab bench retries`` compares.

Each is one of the client's own :class:`~etcdlab.client.retry.RetryPolicy` kinds
(and, for ``hedged``, the client's hedged reads), with AWS-blog shaped timings
in real seconds, scaled by the run's time scale when a policy is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from etcdlab.client.retry import (
    DecorrelatedJitter,
    Exponential,
    ExponentialFullJitter,
    FixedDelay,
    NoRetry,
    RetryBudget,
    RetryPolicy,
    ThrottledRetry,
)
from etcdlab.common.clock import MonotonicClock
from etcdlab.common.timescale import TimeScale

MAX_ATTEMPTS = 6
BACKOFF_BASE = 0.05
BACKOFF_CAP = 2.0
FIXED_DELAY = 0.2
HEDGE_DELAY = 0.05
BUDGET_WINDOW = 10.0

Policy = Callable[[int, TimeScale, int], RetryPolicy]


@dataclass(frozen=True)
class Strategy:
    name: str
    description: str
    policy: Policy
    """``policy(seed, time_scale, max_attempts)``: a fresh policy for one client."""
    hedge: bool = False
    """Reads are hedged to another member after :data:`HEDGE_DELAY`."""


def _full_jitter(seed: int, scale: TimeScale, attempts: int) -> ExponentialFullJitter:
    return ExponentialFullJitter(
        scale.scaled(BACKOFF_BASE), scale.scaled(BACKOFF_CAP), max_attempts=attempts, seed=seed
    )


def _budget(seed: int, scale: TimeScale, attempts: int) -> RetryPolicy:
    window = scale.scaled(BUDGET_WINDOW)
    # Floor of one retry per window, so an idle client can still retry once.
    return RetryBudget(
        _full_jitter(seed, scale, attempts),
        MonotonicClock(),
        ratio=0.1,
        min_per_second=1 / window,
        window=window,
    )


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("none", "no retry: the first failure is final", lambda seed, ts, n: NoRetry()),
        Strategy(
            "immediate",
            f"retry at once, up to {MAX_ATTEMPTS} attempts",
            lambda seed, ts, n: FixedDelay(0.0, max_attempts=n),
        ),
        Strategy(
            "fixed",
            f"retry after {FIXED_DELAY * 1000:g} ms each time",
            lambda seed, ts, n: FixedDelay(ts.scaled(FIXED_DELAY), max_attempts=n),
        ),
        Strategy(
            "exponential",
            f"{BACKOFF_BASE * 1000:g} ms doubling, cap {BACKOFF_CAP:g} s, no jitter",
            lambda seed, ts, n: Exponential(
                ts.scaled(BACKOFF_BASE), ts.scaled(BACKOFF_CAP), max_attempts=n
            ),
        ),
        Strategy("full-jitter", "exponential ceiling, wait uniform in [0, ceiling]", _full_jitter),
        Strategy(
            "decorrelated",
            "wait uniform in [base, 3 x previous wait], capped",
            lambda seed, ts, n: DecorrelatedJitter(
                ts.scaled(BACKOFF_BASE), ts.scaled(BACKOFF_CAP), max_attempts=n, seed=seed
            ),
        ),
        Strategy(
            "throttled",
            "full jitter behind a gRFC A6 token bucket (10 tokens, ratio 0.1)",
            lambda seed, ts, n: ThrottledRetry(_full_jitter(seed, ts, n)),
        ),
        Strategy(
            "budget",
            f"full jitter within a 10% retry budget per client ({BUDGET_WINDOW:g} s window)",
            _budget,
        ),
        Strategy(
            "hedged",
            f"reads hedged to another member after {HEDGE_DELAY * 1000:g} ms "
            "(or at once on a failure); no retries",
            lambda seed, ts, n: NoRetry(),
            hedge=True,
        ),
    )
}
