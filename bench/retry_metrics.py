"""What a retry-strategy run measured, computed from per-operation records.

Pure functions over :class:`OperationRecord` lists, so the numbers the
benchmark prints are unit-tested on synthetic runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class OperationRecord:
    """One logical operation as the workload saw it.

    ``attempts`` counts the RPCs sent to etcd for it (1 without retries; hedged
    reads count every copy).
    """

    start: float
    end: float
    ok: bool
    attempts: int


@dataclass(frozen=True)
class StrategyResult:
    strategy: str
    operations: int
    succeeded: int
    goodput: float
    p50_ms: float | None
    p99_ms: float | None
    amplification: float | None
    recovery_s: float | None
    fault_rpc_rate_ratio: float | None

    @property
    def storm(self) -> bool:
        """True when the strategy sent more RPCs per second during the fault than before it."""
        return self.fault_rpc_rate_ratio is not None and self.fault_rpc_rate_ratio > 1.2


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    if not 0 <= fraction <= 1:
        raise ValueError("fraction must be within [0, 1]")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def recovery_time(
    records: Sequence[OperationRecord], fault_end: float, window: float
) -> float | None:
    """Seconds after ``fault_end`` until a full ``window`` passes with no failed operation.

    Counts operations by completion time. None when the run never recovered.
    """
    if window <= 0:
        raise ValueError("window must be positive")
    after = sorted((r for r in records if r.end >= fault_end), key=lambda r: r.end)
    if not after:
        return None
    last_end = after[-1].end
    quiet_since = fault_end
    for record in after:
        if not record.ok:
            quiet_since = record.end
        elif record.end - quiet_since >= window:
            return quiet_since - fault_end
    return quiet_since - fault_end if last_end - quiet_since >= window else None


def rpc_rate(records: Sequence[OperationRecord], start: float, end: float) -> float:
    """RPCs per second sent by operations that started in ``[start, end)``."""
    if end <= start:
        raise ValueError("end must be after start")
    return sum(r.attempts for r in records if start <= r.start < end) / (end - start)


def summarize(
    strategy: str,
    records: Sequence[OperationRecord],
    *,
    duration: float,
    fault_start: float,
    fault_end: float,
    recovery_window: float,
) -> StrategyResult:
    if duration <= 0:
        raise ValueError("duration must be positive")
    ok = [r for r in records if r.ok]
    latencies = [(r.end - r.start) * 1000 for r in ok]
    sent = sum(r.attempts for r in records)
    before = rpc_rate(records, 0.0, fault_start) if fault_start > 0 else 0.0
    during = rpc_rate(records, fault_start, fault_end) if fault_end > fault_start else 0.0
    return StrategyResult(
        strategy=strategy,
        operations=len(records),
        succeeded=len(ok),
        goodput=len(ok) / duration,
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        amplification=sent / len(ok) if ok else None,
        recovery_s=recovery_time(records, fault_end, recovery_window),
        fault_rpc_rate_ratio=during / before if before > 0 else None,
    )
