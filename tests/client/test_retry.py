"""Retry policies, the retry-safety rule and the client config, without a cluster."""

from __future__ import annotations

import grpc
import pytest

from etcdlab.client.config import ClientConfig
from etcdlab.client.retry import (
    DecorrelatedJitter,
    Exponential,
    ExponentialFullJitter,
    FixedDelay,
    NoRetry,
    RetryBudget,
    RetryPolicy,
    ThrottledRetry,
    retry_reason,
)
from etcdlab.common.clock import FakeClock


def delays(policy: RetryPolicy) -> list[float]:
    out: list[float] = []
    previous = 0.0
    attempt = 1
    while (wait := policy.delay(attempt, previous)) is not None:
        out.append(wait)
        previous = wait
        attempt += 1
    return out


def test_simple_policies() -> None:
    assert delays(NoRetry()) == []
    assert delays(FixedDelay(0.5, max_attempts=3)) == [0.5, 0.5]
    assert delays(Exponential(0.1, 0.5, max_attempts=6)) == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert Exponential(1.0, 10.0).ceiling(10**6) == 10.0


def test_full_jitter_is_bounded_and_seeded() -> None:
    policy = ExponentialFullJitter(0.1, 1.0, max_attempts=50, seed=7)
    got = delays(policy)
    assert len(got) == 49
    assert all(0 <= wait <= min(1.0, 0.1 * 2 ** (i)) for i, wait in enumerate(got))
    assert got == delays(ExponentialFullJitter(0.1, 1.0, max_attempts=50, seed=7))
    assert got != delays(ExponentialFullJitter(0.1, 1.0, max_attempts=50, seed=8))


def test_decorrelated_jitter_grows_from_previous() -> None:
    got = delays(DecorrelatedJitter(0.1, 2.0, max_attempts=40, seed=3))
    previous = 0.0
    for wait in got:
        assert 0.1 <= wait <= min(2.0, max(0.1, 3 * previous))
        previous = wait
    assert max(got) > 1.0


def test_throttled_retry_follows_grfc_a6() -> None:
    throttle = ThrottledRetry(FixedDelay(0.0, max_attempts=1000), max_tokens=10, token_ratio=0.1)
    for _ in range(4):
        throttle.record_result(False)
    assert throttle.tokens == 6 and throttle.delay(1, 0.0) == 0.0
    throttle.record_result(False)
    # 5 tokens is exactly half: retries stop.
    assert throttle.delay(1, 0.0) is None and throttle.throttled == 1
    for _ in range(10):
        throttle.record_result(True)
    assert throttle.tokens == pytest.approx(6.0) and throttle.delay(1, 0.0) == 0.0
    for _ in range(100):
        throttle.record_result(True)
    assert throttle.tokens == 10
    for _ in range(100):
        throttle.record_result(False)
    assert throttle.tokens == 0


async def test_retry_budget_limits_retries_to_a_ratio_of_calls() -> None:
    clock = FakeClock()
    budget = RetryBudget(
        FixedDelay(0.0, max_attempts=1000), clock, ratio=0.1, min_per_second=0.0, window=10.0
    )
    for _ in range(100):
        budget.record_call()
    granted = 0
    while budget.delay(1, 0.0) is not None:
        granted += 1
    assert granted == 10 and budget.rejected == 1
    await clock.advance(10.0)
    assert budget.available == 0
    budget.record_call()
    assert budget.delay(1, 0.0) is None
    floor = RetryBudget(NoRetry(), clock, ratio=0.0, min_per_second=0.5, window=4.0)
    assert floor.available == 2


def test_retry_reason_follows_clientv3() -> None:
    unavailable = grpc.StatusCode.UNAVAILABLE
    assert retry_reason(None, "", sent=False, safe=False) == "dial"
    assert (
        retry_reason(unavailable, "failed to connect to all addresses", sent=True, safe=False)
        == "dial"
    )
    assert retry_reason(unavailable, "etcdserver: leader changed", sent=True, safe=False) is None
    assert (
        retry_reason(unavailable, "etcdserver: leader changed", sent=True, safe=True)
        == "unavailable"
    )
    assert retry_reason(unavailable, "ping timeout", sent=True, safe=True) == "keepalive"
    # clientv3 retries nothing but UNAVAILABLE: "too many requests" included.
    assert retry_reason(grpc.StatusCode.RESOURCE_EXHAUSTED, "", sent=True, safe=True) is None
    assert retry_reason(grpc.StatusCode.INVALID_ARGUMENT, "", sent=True, safe=True) is None
    assert retry_reason(grpc.StatusCode.DEADLINE_EXCEEDED, "", sent=True, safe=True) is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"keepalive_time": 0}, "keepalive_time"),
        ({"dial_timeout": float("inf")}, "dial_timeout"),
        ({"request_timeout": -1.0}, "request_timeout"),
        ({"reconnect_backoff_cap": 0.5}, "reconnect_backoff_cap"),
        ({"reconnect_backoff_jitter": 1.0}, "reconnect_backoff_jitter"),
        ({"reconnect_backoff_multiplier": 0.5}, "reconnect_backoff_multiplier"),
        ({"retry_max_attempts": 0}, "retry_max_attempts"),
        ({"balancer": "random"}, "balancer"),
        ({"health_key": b""}, "health_key"),
    ],
)
def test_config_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ClientConfig(**kwargs)  # type: ignore[arg-type]


def test_config_scaled_and_channel_options() -> None:
    config = ClientConfig().scaled(0.1)
    assert config.keepalive_time == pytest.approx(3.0)
    assert config.keepalive_timeout == pytest.approx(1.0)
    assert config.dial_timeout == pytest.approx(2.0)
    assert config.min_connect_timeout == pytest.approx(2.0)
    assert config.reconnect_backoff_base == pytest.approx(0.1)
    assert config.reconnect_backoff_cap == pytest.approx(12.0)
    assert config.retry_wait_between == pytest.approx(0.0025)
    assert config.health_check_timeout == config.ready_check_timeout == pytest.approx(0.2)
    # Counts and fractions are not durations.
    assert config.retry_max_attempts == 100 and config.reconnect_backoff_multiplier == 1.6
    assert config.request_timeout is None and config.balancer == "round_robin"
    options = dict(config.channel_options(2.0))
    assert options["grpc.use_local_subchannel_pool"] == 1
    assert options["grpc.min_reconnect_backoff_ms"] == 2000
    assert options["grpc.keepalive_time_ms"] == 3000
    assert options["grpc.keepalive_timeout_ms"] == options["grpc.http2.ping_timeout_ms"] == 1000
    # No pings a Go client would not send: none without calls, no BDP probes.
    assert options["grpc.keepalive_permit_without_calls"] == 0
    assert options["grpc.http2.bdp_probe"] == 0
    assert options["grpc.http2.max_pings_without_data"] == 0
    with pytest.raises(ValueError, match="time_scale"):
        ClientConfig().scaled(0)
