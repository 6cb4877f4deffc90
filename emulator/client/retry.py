"""Retry policies for the etcd client, and the rule of which failures may be retried.

A policy answers one question per failed attempt: how long to wait before the
next attempt, or None to give up. :class:`ClientV3Retry` is clientv3's own (its
retry interceptor with ``roundRobinQuorumBackoff``), the client's default.
The other backoff shapes follow AWS's "Exponential backoff and jitter";
:class:`ThrottledRetry` is gRPC's retry throttling (gRFC A6: a token bucket that
stops retries while more than about 1 in 10 attempts fail) and
:class:`RetryBudget` is a Finagle/SRE style budget (retries at most a fixed
fraction of calls over a window). Randomness comes from a seeded
``random.Random`` so runs repeat.

Whether a failure may be retried at all is :func:`retry_reason`'s job, not the
policy's, and follows clientv3 (``retry.go``): only UNAVAILABLE is retried, and
only for repeatable calls (reads, lease calls, Status), because UNAVAILABLE on a
write that went out may mean it was applied. A write is retried only when it
never left the client, or when the caller marks it idempotent.
"""

from __future__ import annotations

import collections
import math
import random
from typing import Protocol

import grpc

from etcdlab.client.backoff import jitter_up
from etcdlab.common.clock import Clock


class RetryPolicy(Protocol):
    def delay(self, attempt: int, previous: float) -> float | None:
        """Seconds to wait before retry number ``attempt`` (1 = the first retry), or
        None to give up. ``previous`` is the delay returned for the retry before
        (0.0 for the first)."""
        ...

    def record_call(self) -> None:
        """A new call (not a retry) starts: feeds budgets."""
        ...

    def record_result(self, ok: bool) -> None:
        """One attempt finished, successfully or with a retryable failure."""
        ...


def _check_attempts(max_attempts: int) -> None:
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")


def _check_backoff(base: float, cap: float) -> None:
    _check_positive("base", base)
    _check_positive("cap", cap)
    if cap < base:
        raise ValueError("cap must be at least base")


def _check_positive(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative finite number")


class _Stateless:
    """Policies whose answer depends only on the attempt number."""

    def record_call(self) -> None:
        return None

    def record_result(self, ok: bool) -> None:
        return None


class NoRetry(_Stateless):
    """Never retry: the first failure is final."""

    def delay(self, attempt: int, previous: float) -> float | None:
        return None


class FixedDelay(_Stateless):
    """The same wait before every retry."""

    def __init__(self, delay: float, *, max_attempts: int = 5) -> None:
        _check_positive("delay", delay)
        _check_attempts(max_attempts)
        self.fixed = delay
        self.max_attempts = max_attempts

    def delay(self, attempt: int, previous: float) -> float | None:
        if attempt >= self.max_attempts:
            return None
        return self.fixed


class Exponential(_Stateless):
    """``base * multiplier ** (attempt - 1)``, capped: every client waits the same."""

    def __init__(
        self,
        base: float,
        cap: float,
        *,
        multiplier: float = 2.0,
        max_attempts: int = 5,
    ) -> None:
        _check_backoff(base, cap)
        if multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        _check_attempts(max_attempts)
        self.base = base
        self.cap = cap
        self.multiplier = multiplier
        self.max_attempts = max_attempts

    def ceiling(self, attempt: int) -> float:
        try:
            return min(self.cap, self.base * float(self.multiplier) ** (attempt - 1))
        except OverflowError:
            # The factor is past any float: the ceiling is the cap (0 from a base of 0).
            return self.cap if self.base else 0.0

    def delay(self, attempt: int, previous: float) -> float | None:
        if attempt >= self.max_attempts:
            return None
        return self.ceiling(attempt)


class ExponentialFullJitter(Exponential):
    """Uniform in ``[0, exponential ceiling]``: fewest total calls under contention."""

    def __init__(
        self,
        base: float,
        cap: float,
        *,
        max_attempts: int = 5,
        seed: int = 0,
    ) -> None:
        super().__init__(base, cap, max_attempts=max_attempts)
        self.random = random.Random(seed)

    def delay(self, attempt: int, previous: float) -> float | None:
        if attempt >= self.max_attempts:
            return None
        return self.random.uniform(0.0, self.ceiling(attempt))


class ClientV3Retry(_Stateless):
    """clientv3's retry interceptor: up to ``max_attempts`` attempts; the retries
    of one round over a quorum of the ``endpoints`` go at once (the balancer
    sends each to the next connection), and each round ends with a wait of
    ``wait_between`` +- ``jitter``."""

    def __init__(
        self,
        endpoints: int,
        *,
        wait_between: float = 0.025,
        jitter: float = 0.1,
        max_attempts: int = 100,
        seed: int = 0,
    ) -> None:
        if endpoints < 1:
            raise ValueError("endpoints must be at least 1")
        _check_positive("wait_between", wait_between)
        _check_attempts(max_attempts)
        self.quorum = endpoints // 2 + 1
        self.wait_between = wait_between
        self.jitter = jitter
        self.max_attempts = max_attempts
        self.random = random.Random(seed)

    def delay(self, attempt: int, previous: float) -> float | None:
        if attempt >= self.max_attempts:
            return None
        if attempt % self.quorum:
            return 0.0
        return jitter_up(self.wait_between, self.jitter, self.random)


class DecorrelatedJitter(_Stateless):
    """``min(cap, uniform(base, 3 * previous))``: each wait grows from the last one."""

    def __init__(
        self,
        base: float,
        cap: float,
        *,
        max_attempts: int = 5,
        seed: int = 0,
    ) -> None:
        _check_backoff(base, cap)
        _check_attempts(max_attempts)
        self.base = base
        self.cap = cap
        self.max_attempts = max_attempts
        self.random = random.Random(seed)

    def delay(self, attempt: int, previous: float) -> float | None:
        if attempt >= self.max_attempts:
            return None
        upper = max(self.base, previous * 3)
        return min(self.cap, self.random.uniform(self.base, upper))


class ThrottledRetry:
    """gRFC A6 retry throttling around another policy.

    A token bucket starts full at ``max_tokens``; every failed attempt takes one
    token, every success gives back ``token_ratio``. Retries are allowed only
    while more than half the bucket is left, so a client whose attempts mostly
    fail stops retrying instead of multiplying load on a struggling cluster.
    First attempts are never throttled.
    """

    def __init__(
        self,
        inner: RetryPolicy,
        *,
        max_tokens: float = 10.0,
        token_ratio: float = 0.1,
    ) -> None:
        if not math.isfinite(max_tokens) or not 0 < max_tokens <= 1000:
            raise ValueError("max_tokens must be in (0, 1000]")
        if not math.isfinite(token_ratio) or not 0 < token_ratio <= 1:
            raise ValueError("token_ratio must be in (0, 1]")
        self.inner = inner
        self.max_tokens = max_tokens
        self.token_ratio = token_ratio
        self.tokens = max_tokens
        self.throttled = 0

    @property
    def retries_allowed(self) -> bool:
        return self.tokens > self.max_tokens / 2

    def delay(self, attempt: int, previous: float) -> float | None:
        if not self.retries_allowed:
            self.throttled += 1
            return None
        return self.inner.delay(attempt, previous)

    def record_call(self) -> None:
        self.inner.record_call()

    def record_result(self, ok: bool) -> None:
        if ok:
            self.tokens = min(self.max_tokens, self.tokens + self.token_ratio)
        else:
            self.tokens = max(0.0, self.tokens - 1)
        self.inner.record_result(ok)


class RetryBudget:
    """Retries limited to ``ratio`` of the calls made in the last ``window`` seconds,
    plus a floor of ``min_per_second`` so a quiet client can still retry."""

    def __init__(
        self,
        inner: RetryPolicy,
        clock: Clock,
        *,
        ratio: float = 0.1,
        min_per_second: float = 1.0,
        window: float = 10.0,
    ) -> None:
        if not math.isfinite(ratio) or not 0 <= ratio <= 1:
            raise ValueError("ratio must be in [0, 1]")
        _check_positive("min_per_second", min_per_second)
        if not math.isfinite(window) or window <= 0:
            raise ValueError("window must be a positive finite number")
        self.inner = inner
        self.clock = clock
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window = window
        self._calls: collections.deque[float] = collections.deque()
        self._retries: collections.deque[float] = collections.deque()
        self.rejected = 0

    def _expire(self, now: float) -> None:
        for times in (self._calls, self._retries):
            while times and times[0] <= now - self.window:
                times.popleft()

    @property
    def available(self) -> float:
        """Retries the budget would grant right now."""
        self._expire(self.clock.now())
        allowance = self.ratio * len(self._calls) + self.min_per_second * self.window
        return allowance - len(self._retries)

    def delay(self, attempt: int, previous: float) -> float | None:
        if self.available < 1:
            self.rejected += 1
            return None
        wait = self.inner.delay(attempt, previous)
        if wait is not None:
            self._retries.append(self.clock.now())
        return wait

    def record_call(self) -> None:
        self._calls.append(self.clock.now())
        self.inner.record_call()

    def record_result(self, ok: bool) -> None:
        self.inner.record_result(ok)


def retry_reason(
    code: grpc.StatusCode | None, details: str, *, sent: bool, safe: bool
) -> str | None:
    """Why a failed attempt may be retried, or None when it must not be.

    ``sent`` is False when the request never left the client, which makes any
    call safe to repeat. ``safe`` marks calls that may be repeated even if the
    first attempt was applied: clientv3's repeatable calls, and writes the
    caller marked idempotent. Only UNAVAILABLE is retried (clientv3 stops on
    every other status, RESOURCE_EXHAUSTED included).
    """
    if not sent:
        return "dial"
    if code != grpc.StatusCode.UNAVAILABLE:
        return None
    if "failed to connect" in details:
        # grpc could not open a connection: the request never went out (clientv3's
        # "there is no connection available").
        return "dial"
    if not safe:
        return None
    if "ping timeout" in details or "keepalive" in details.lower():
        return "keepalive"
    return "unavailable"
