from __future__ import annotations

import random

import pytest

from etcdlab.bench.retry_metrics import (
    OperationRecord,
    dispersion,
    herd_result,
    recovery_time,
    rpc_rate,
    summarize,
)


def ok(start: float, end: float, attempts: int = 1) -> OperationRecord:
    return OperationRecord(start, end, True, attempts)


def failed(start: float, end: float, attempts: int = 1) -> OperationRecord:
    return OperationRecord(start, end, False, attempts)


def test_recovery_time_is_first_quiet_window_after_the_fault() -> None:
    records = [ok(0, 1), failed(9, 10), failed(11, 12.5), ok(12, 13), ok(14, 15.5), ok(16, 18)]
    # Fault ends at 10; last failure completes at 12.5, then 3 s pass without failures.
    assert recovery_time(records, fault_end=10, window=3) == pytest.approx(2.5)
    assert recovery_time(records, fault_end=10, window=10) is None


def test_rpc_rate_counts_attempts_by_start_time() -> None:
    records = [ok(0, 1, attempts=3), ok(1, 2), failed(5, 6, attempts=4)]
    assert rpc_rate(records, 0, 2) == 2.0
    assert rpc_rate(records, 2, 6) == 1.0


def test_summary_flags_a_retry_storm() -> None:
    calm = [ok(t, t + 0.01) for t in range(10)]
    stormy = [failed(t + 0.5, t + 0.6, attempts=5) for t in range(10, 20)]
    healed = [ok(t, t + 0.01) for t in range(20, 30)]
    result = summarize(
        "immediate",
        calm + stormy + healed,
        duration=30,
        fault_start=10,
        fault_end=20,
        recovery_window=2,
    )
    assert result.succeeded == 20 and result.operations == 30
    assert result.amplification == pytest.approx((20 + 50) / 20)
    assert result.fault_rpc_rate_ratio == pytest.approx(5.0)
    assert result.storm
    assert result.recovery_s == pytest.approx(0.0)
    assert result.p50_ms == pytest.approx(10.0)


def test_dispersion_tells_independent_sends_from_bunched_ones() -> None:
    rng = random.Random(1)
    poisson: list[float] = []
    at = 0.0
    while at < 100:
        at += rng.expovariate(10)
        poisson.append(at)
    # The same number of sends, but in bursts of 20 at the same instant.
    bunched = [float(t) for t in range(0, 100, 2) for _ in range(20)]
    independent = dispersion(poisson, 0, 100, 0.1)
    clustered = dispersion(bunched, 0, 100, 0.1)
    assert independent is not None and clustered is not None
    assert 0.7 < independent < 1.3
    assert clustered > 10
    assert dispersion([], 0, 100, 0.1) is None
    assert dispersion(poisson, 0, 0.1, 0.1) is None


def test_herd_counts_its_rpcs_from_the_outage_start() -> None:
    # Scaled buckets whose ratio is not exact in binary: still 120 of them.
    herd = herd_result([10.5, None, 11.0], [10.0, 10.0, 10.02, 11.49], start=10.0,
                       deadline=1.5, bucket=0.0125)  # fmt: skip
    assert (herd.clients, herd.succeeded, herd.calls) == (3, 2, 4)
    assert herd.finished_s == pytest.approx(1.0)
    assert len(herd.timeline) == 120 and herd.timeline[0] == 2 and sum(herd.timeline) == 4
