"""What a retry-strategy run measured, computed from per-operation records.

Pure functions over :class:`OperationRecord` lists and send times, so the
numbers the benchmark prints are unit-tested on synthetic runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from etcdlab.common.timeline import quantile


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
        p50_ms=quantile(latencies, 0.5),
        p99_ms=quantile(latencies, 0.99),
        amplification=sent / len(ok) if ok else None,
        recovery_s=recovery_time(records, fault_end, recovery_window),
        fault_rpc_rate_ratio=during / before if before > 0 else None,
    )


def dispersion(times: Sequence[float], start: float, end: float, bucket: float) -> float | None:
    """Index of dispersion (variance / mean) of event counts per ``bucket`` in [start, end)."""
    slots = int((end - start) / bucket)
    if slots < 2:
        return None
    counts = histogram(times, start, bucket, slots)
    mean = sum(counts) / slots
    if mean == 0:
        return None
    variance = sum((c - mean) ** 2 for c in counts) / (slots - 1)
    return round(variance / mean, 3)


def histogram(times: Sequence[float], start: float, bucket: float, slots: int) -> list[int]:
    """Events per ``bucket`` seconds from ``start``, over ``slots`` buckets (others dropped)."""
    counts = [0] * slots
    for at in times:
        slot = math.floor((at - start) / bucket)
        if 0 <= slot < slots:
            counts[slot] += 1
    return counts


@dataclass(frozen=True)
class HerdResult:
    """The AWS-style anchor: every client starts one contended write when the outage begins."""

    clients: int
    succeeded: int
    calls: int
    """RPCs sent by the herd (a read and a compare-guarded write per try)."""
    finished_s: float | None
    """From the outage's start until the last herd write succeeded (None: none did)."""
    dispersion: float | None
    """Of the herd's RPC send times, from the outage's start until the op deadline."""
    bucket: float
    timeline: list[int]
    """The herd's RPCs started per ``bucket`` seconds from the outage's start."""


def herd_result(
    done: Sequence[float | None],
    sends: Sequence[float],
    *,
    start: float,
    deadline: float,
    bucket: float,
) -> HerdResult:
    """``done``: when each herd write succeeded (None: it did not); ``sends``: its
    RPCs; ``deadline``: how long after ``start`` the herd may run."""
    finished = [at for at in done if at is not None]
    return HerdResult(
        clients=len(done),
        succeeded=len(finished),
        calls=len(sends),
        finished_s=round(max(finished) - start, 4) if finished else None,
        dispersion=dispersion(sends, start, start + deadline, bucket),
        bucket=bucket,
        timeline=histogram(sends, start, bucket, math.ceil(round(deadline / bucket, 9))),
    )


@dataclass(frozen=True)
class RunResult:
    fault: str
    result: StrategyResult
    """From :func:`summarize`, except ``fault_rpc_rate_ratio``: RPCs per arriving
    operation during the fault over the same before it, so the noise of a short
    fault's Poisson arrivals (the same for every strategy) is divided out."""
    raw_rpc_rate_ratio: float | None
    """:func:`summarize`'s RPC rate during the fault over the rate before it."""
    fault_start: float
    fault_end: float
    bucket: float
    sent: list[int]
    """RPC attempts started per ``bucket`` seconds, from the run's start."""
    dispersion: float | None
    """Variance over mean of the attempts started per dispersion bucket during
    the fault: about 1 for independent (Poisson) sends, well above 1 when
    retries bunch together."""
    herd: HerdResult | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            **dataclasses.asdict(self.result),
            "raw_rpc_rate_ratio": self.raw_rpc_rate_ratio,
            "storm": self.result.storm,
            "herd": None if self.herd is None else dataclasses.asdict(self.herd),
            "fault_start_s": round(self.fault_start, 4),
            "fault_end_s": round(self.fault_end, 4),
            "dispersion": self.dispersion,
            "timeline": {"bucket_s": self.bucket, "attempts": self.sent},
        }


def run_result(
    fault: str,
    result: StrategyResult,
    records: Sequence[OperationRecord],
    sends: Sequence[float],
    *,
    duration: float,
    fault_start: float,
    fault_end: float,
    dispersion_bucket: float,
    herd: HerdResult | None = None,
) -> RunResult:
    """One strategy's run under one fault, from its records and RPC send times."""
    before = sum(1 for r in records if r.start < fault_start) / fault_start
    during = sum(1 for r in records if fault_start <= r.start < fault_end)
    arrivals_during = during / (fault_end - fault_start)
    raw = result.fault_rpc_rate_ratio
    per_op = None
    if raw is not None and arrivals_during > 0:
        per_op = raw / (arrivals_during / before)
    bucket = duration / 60
    return RunResult(
        fault,
        dataclasses.replace(result, fault_rpc_rate_ratio=per_op),
        raw,
        fault_start,
        fault_end,
        bucket,
        histogram([at for at in sends if at < duration], 0.0, bucket, 60),
        dispersion(sends, fault_start, fault_end, dispersion_bucket),
        herd,
    )
