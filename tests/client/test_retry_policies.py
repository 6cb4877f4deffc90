"""The retry policies' parameters (defaults, bounds, the one-line error naming each
bad one), their seeded randomness, and what the wrappers pass to the policy
they wrap. ``Recording`` is a stand-in inner policy that keeps what it is told.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import grpc
import pytest

from etcdlab.client.retry import (
    ClientV3Retry,
    DecorrelatedJitter,
    Exponential,
    ExponentialFullJitter,
    FixedDelay,
    RetryBudget,
    RetryPolicy,
    ThrottledRetry,
    retry_reason,
)
from etcdlab.common.clock import FakeClock
from tests.client.test_retry import delays

INF, NAN = math.inf, math.nan


REFUSED: list[tuple[Callable[[], object], str]] = [
    (lambda: FixedDelay(-1.0), "delay must be a non-negative finite number"),
    (lambda: FixedDelay(INF), "delay must be a non-negative finite number"),
    (lambda: FixedDelay(0.1, max_attempts=0), "max_attempts must be at least 1"),
    (lambda: Exponential(-0.1, 1.0), "base must be a non-negative finite number"),
    (lambda: Exponential(0.1, INF), "cap must be a non-negative finite number"),
    (lambda: Exponential(0.1, NAN), "cap must be a non-negative finite number"),
    (lambda: Exponential(0.2, 0.1), "cap must be at least base"),
    (lambda: Exponential(0.1, 1.0, multiplier=0.9), "multiplier must be at least 1"),
    (lambda: ExponentialFullJitter(0.1, 1.0, max_attempts=0), "max_attempts must be at least 1"),
    (lambda: DecorrelatedJitter(0.1, 0.05), "cap must be at least base"),
    (lambda: ClientV3Retry(0), "endpoints must be at least 1"),
    (lambda: ClientV3Retry(3, wait_between=-1),
     "wait_between must be a non-negative finite number"),
    (lambda: ClientV3Retry(3, max_attempts=0), "max_attempts must be at least 1"),
    (lambda: ThrottledRetry(FixedDelay(0), max_tokens=0), r"max_tokens must be in \(0, 1000\]"),
    (lambda: ThrottledRetry(FixedDelay(0), max_tokens=1001), r"max_tokens must be in \(0, 1000\]"),
    (lambda: ThrottledRetry(FixedDelay(0), max_tokens=INF), r"max_tokens must be in \(0, 1000\]"),
    (lambda: ThrottledRetry(FixedDelay(0), token_ratio=0), r"token_ratio must be in \(0, 1\]"),
    (lambda: ThrottledRetry(FixedDelay(0), token_ratio=1.5), r"token_ratio must be in \(0, 1\]"),
    (lambda: ThrottledRetry(FixedDelay(0), token_ratio=NAN), r"token_ratio must be in \(0, 1\]"),
    (lambda: RetryBudget(FixedDelay(0), FakeClock(), ratio=-0.1), r"ratio must be in \[0, 1\]"),
    (lambda: RetryBudget(FixedDelay(0), FakeClock(), ratio=1.5), r"ratio must be in \[0, 1\]"),
    (lambda: RetryBudget(FixedDelay(0), FakeClock(), ratio=NAN), r"ratio must be in \[0, 1\]"),
    (lambda: RetryBudget(FixedDelay(0), FakeClock(), min_per_second=-1),
     "min_per_second must be a non-negative finite number"),
    (lambda: RetryBudget(FixedDelay(0), FakeClock(), window=0),
     "window must be a positive finite number"),
    (lambda: RetryBudget(FixedDelay(0), FakeClock(), window=INF),
     "window must be a positive finite number"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "error"), REFUSED)
def test_a_bad_parameter_is_refused_by_name(make: Callable[[], object], error: str) -> None:
    with pytest.raises(ValueError, match=f"^{error}$"):
        make()


def test_the_edges_of_each_range_are_accepted() -> None:
    assert delays(FixedDelay(0.0, max_attempts=1)) == []
    assert delays(Exponential(0.5, 0.5, multiplier=1.0, max_attempts=3)) == [0.5, 0.5]
    assert ClientV3Retry(1).quorum == 1
    for tokens in (0.5, 1000):
        assert ThrottledRetry(FixedDelay(0), max_tokens=tokens).tokens == tokens
    assert ThrottledRetry(FixedDelay(0), token_ratio=1.0).token_ratio == 1.0
    for ratio in (0.0, 1.0):
        assert RetryBudget(FixedDelay(0), FakeClock(), ratio=ratio).ratio == ratio
    assert RetryBudget(FixedDelay(0), FakeClock(), window=0.5).window == 0.5


def test_defaults_are_the_documented_ones() -> None:
    assert len(delays(Exponential(0.1, 1.0))) == 4  # five attempts
    assert len(delays(FixedDelay(0.1))) == 4
    assert len(delays(ExponentialFullJitter(0.1, 1.0))) == 4
    assert len(delays(DecorrelatedJitter(0.1, 1.0))) == 4
    v3 = ClientV3Retry(3)
    assert (v3.wait_between, v3.jitter, v3.max_attempts) == (0.025, 0.1, 100)
    throttle = ThrottledRetry(FixedDelay(0))
    assert (throttle.max_tokens, throttle.token_ratio) == (10.0, 0.1)
    budget = RetryBudget(FixedDelay(0), FakeClock())
    assert (budget.ratio, budget.min_per_second, budget.window) == (0.1, 1.0, 10.0)
    assert budget.available == 10.0  # the floor: one a second over ten seconds


def test_randomised_policies_repeat_for_a_seed_and_default_to_seed_0() -> None:
    assert delays(ExponentialFullJitter(0.1, 1.0, max_attempts=20)) == delays(
        ExponentialFullJitter(0.1, 1.0, max_attempts=20, seed=0)
    )
    assert delays(DecorrelatedJitter(0.1, 5.0, max_attempts=20)) == delays(
        DecorrelatedJitter(0.1, 5.0, max_attempts=20, seed=0)
    )
    assert delays(ClientV3Retry(3, max_attempts=40)) == delays(
        ClientV3Retry(3, max_attempts=40, seed=0)
    )
    assert delays(ClientV3Retry(3, seed=5)) != delays(ClientV3Retry(3, seed=6))


def test_client_v3_waits_after_each_round_over_a_quorum() -> None:
    waits = delays(ClientV3Retry(5, max_attempts=10, seed=2))
    assert len(waits) == 9
    # Quorum of 5 is 3: retries 1 and 2 go at once, the 3rd waits, and so on.
    assert [w > 0 for w in waits] == [False, False, True] * 3
    assert all(0.025 * 0.9 <= w <= 0.025 * 1.1 for w in waits if w)


def test_decorrelated_jitter_gives_up_at_max_attempts() -> None:
    policy = DecorrelatedJitter(0.1, 1.0, max_attempts=3)
    assert policy.delay(2, 0.1) is not None and policy.delay(3, 0.1) is None


class Recording:
    """An inner policy that answers ``previous + 1`` and keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def delay(self, attempt: int, previous: float) -> float | None:
        self.calls.append(("delay", (attempt, previous)))
        return previous + 1

    def record_call(self) -> None:
        self.calls.append(("call", None))

    def record_result(self, ok: bool) -> None:
        self.calls.append(("result", ok))


@pytest.mark.parametrize("wrap", ["throttle", "budget"])
def test_wrappers_pass_everything_on_to_the_policy_they_wrap(wrap: str) -> None:
    inner = Recording()
    outer: RetryPolicy = (
        ThrottledRetry(inner) if wrap == "throttle" else RetryBudget(inner, FakeClock())
    )
    outer.record_call()
    outer.record_result(False)
    assert outer.delay(2, 0.5) == 1.5
    outer.record_result(True)
    assert inner.calls == [("call", None), ("result", False), ("delay", (2, 0.5)), ("result", True)]


def test_throttled_retries_are_counted() -> None:
    throttle = ThrottledRetry(FixedDelay(0.0, max_attempts=100), max_tokens=2)
    throttle.record_result(False)
    assert throttle.delay(1, 0.0) is None and throttle.delay(2, 0.0) is None
    assert throttle.throttled == 2


async def test_a_budget_forgets_calls_exactly_a_window_old_and_counts_refusals() -> None:
    clock = FakeClock()
    budget = RetryBudget(FixedDelay(0.0, max_attempts=100), clock, ratio=0.5, min_per_second=0)
    for _ in range(4):
        budget.record_call()
    assert budget.available == 2.0
    assert budget.delay(1, 0.0) == 0.0 and budget.available == 1.0
    await clock.advance(10.0)
    assert budget.available == 0.0  # the calls and the retry are a window old: gone
    assert budget.delay(2, 0.0) is None and budget.delay(3, 0.0) is None
    assert budget.rejected == 2


def test_keepalive_failures_are_named_whatever_their_case() -> None:
    for details in ("keepalive watchdog timeout", "Keepalive ping failed", "ping timeout"):
        reason = retry_reason(grpc.StatusCode.UNAVAILABLE, details, sent=True, safe=True)
        assert reason == "keepalive", details


@pytest.mark.parametrize("multiplier", [1.0, 2.0, 10.0])
def test_the_exponential_ceiling_stops_at_the_cap_for_any_attempt(multiplier: float) -> None:
    # A multiplier of 10 overflowed a float by attempt 310 when the exponent was
    # only clamped at 1000 (enough for 2, not for more).
    policy = Exponential(0.5, 30.0, multiplier=multiplier, max_attempts=10**7)
    for attempt in (1, 2, 400, 10**6):
        expected = min(30.0, 0.5 * multiplier ** min(attempt - 1, 10))
        assert policy.delay(attempt, 0.0) == expected
    assert Exponential(0.0, 1.0).ceiling(10**6) == 0.0
