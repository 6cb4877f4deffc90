from __future__ import annotations

import pytest

from etcdlab.bench.retry_metrics import (
    OperationRecord,
    percentile,
    recovery_time,
    rpc_rate,
    summarize,
)


def ok(start: float, end: float, attempts: int = 1) -> OperationRecord:
    return OperationRecord(start, end, True, attempts)


def failed(start: float, end: float, attempts: int = 1) -> OperationRecord:
    return OperationRecord(start, end, False, attempts)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError, match="fraction"):
        percentile(values, 1.5)


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
