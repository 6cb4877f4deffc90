"""gRPC's connection backoff and clientv3's retry waits, against their sources' numbers."""

from __future__ import annotations

import random

import pytest

from etcdlab.client.backoff import ConnectionBackoff, jitter_up
from etcdlab.client.config import ClientConfig
from etcdlab.client.retry import ClientV3Retry


def grpc_default(seed: int = 0) -> ConnectionBackoff:
    config = ClientConfig()
    return ConnectionBackoff(
        base=config.reconnect_backoff_base,
        multiplier=config.reconnect_backoff_multiplier,
        jitter=config.reconnect_backoff_jitter,
        cap=config.reconnect_backoff_cap,
        min_connect_timeout=config.min_connect_timeout,
        rng=random.Random(seed),
    )


def test_first_backoff_is_the_base_exactly_then_grows_by_1_6_with_20_percent_jitter() -> None:
    backoff = grpc_default()
    assert [backoff.delay(0) for _ in range(5)] == [1.0] * 5
    for retries in range(1, 11):
        ceiling = 1.6**retries
        samples = [backoff.delay(retries) for _ in range(400)]
        assert all(0.8 * ceiling <= s <= 1.2 * ceiling for s in samples)
        # Spread over the whole band, not pinned to one end.
        assert min(samples) < 0.85 * ceiling and max(samples) > 1.15 * ceiling


def test_backoff_is_capped_at_120_s_plus_jitter() -> None:
    backoff = grpc_default()
    # 1.6**11 = 176: from the 11th retry on, the cap applies before the jitter.
    samples = [backoff.delay(retries) for retries in range(11, 60) for _ in range(20)]
    assert all(96.0 <= s <= 144.0 for s in samples)
    assert backoff.delay(10**6) <= 144.0  # no overflow for absurd counts


def test_connect_timeout_is_at_least_20_s_and_grows_with_a_longer_backoff() -> None:
    backoff = grpc_default()
    assert backoff.connect_timeout(1.0) == 20.0
    assert backoff.connect_timeout(41.9) == 41.9


def test_same_seed_same_waits() -> None:
    first, second, other = grpc_default(3), grpc_default(3), grpc_default(4)
    waits = [first.delay(r) for r in range(1, 20)]
    assert waits == [second.delay(r) for r in range(1, 20)]
    assert waits != [other.delay(r) for r in range(1, 20)]


def test_jitter_up_spreads_both_ways() -> None:
    rng = random.Random(1)
    samples = [jitter_up(0.025, 0.1, rng) for _ in range(1000)]
    assert all(0.0225 <= s <= 0.0275 for s in samples)
    assert min(samples) < 0.023 and max(samples) > 0.027


@pytest.mark.parametrize(("endpoints", "quorum"), [(1, 1), (3, 2), (5, 3)])
def test_clientv3_retries_a_quorum_at_once_then_waits_25ms(endpoints: int, quorum: int) -> None:
    policy = ClientV3Retry(endpoints, seed=2)
    waits = [policy.delay(attempt, 0.0) for attempt in range(1, 100)]
    for attempt, wait in enumerate(waits, start=1):
        assert wait is not None
        if attempt % quorum:
            assert wait == 0.0
        else:
            assert 0.0225 <= wait <= 0.0275
    # 100 attempts in all, the first included.
    assert policy.delay(100, 0.0) is None
