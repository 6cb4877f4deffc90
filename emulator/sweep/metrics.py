"""One run's figures for the sweep, over its measured window, in unscaled units.

The window is the cell's whole fault (it starts after the warm-up and lasts
the cell's duration); the baseline, which has no fault, is measured over the
same length at the end of its run. Counts are per hour of that window so that
cells of different lengths compare.
"""

from __future__ import annotations

from dataclasses import dataclass

from etcdlab.common.timeline import Interval, Timeline, quantile
from etcdlab.report.claims import APISERVER, api_requests, leadership_losses
from etcdlab.report.figures import unhealthy

READYZ = "/etcd-readiness"  # suffix of an apiserver's readyz component


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str


METRICS = (
    Metric("lease_losses_per_hour", "lease losses", "per hour"),
    Metric("livez_failures_per_hour", "livez failures", "per hour"),
    Metric("readyz_failures_per_hour", "readyz failures", "per hour"),
    Metric("p99_seconds", "apiserver p99 (etcd requests)", "s"),
    Metric("error_rate", "apiserver error rate", "share of etcd requests"),
    Metric("leaderless_seconds_per_hour", "time without a leader (per lease)", "s per hour"),
    # In a dead-member cell: from the kill until the successor led.
    Metric("failover_seconds", "failover, or longest time without a leader", "s"),
)
# The figure a dead member's cell gives the recommendation.
FAILOVER = "failover_seconds"


def window(timeline: Timeline, duration: float) -> tuple[float, float]:
    """The measured window on the run's clock: the fault's start (the end of the
    warm-up), else the last ``duration`` unscaled seconds of the run."""
    length = timeline.scaled(duration)
    start = timeline.fault_start
    if start is None:
        start = max(0.0, timeline.duration - length)
    return start, start + length


def _leaderless(intervals: list[Interval], start: float, end: float) -> list[float]:
    """The gaps in ``[start, end)`` that no interval covers (run clock), from the
    lease's first leader on: a lease still being taken up after the warm-up has
    not lost anything."""
    gaps = []
    cursor = max(start, min((i.start for i in intervals), default=end))
    for interval in sorted(intervals, key=lambda i: i.start):
        if interval.end <= cursor or interval.start >= end:
            continue
        if interval.start > cursor:
            gaps.append(interval.start - cursor)
        cursor = max(cursor, interval.end)
    if cursor < end:
        gaps.append(end - cursor)
    return gaps


def run_metrics(timeline: Timeline, duration: float) -> dict[str, float | None]:
    """Every figure of :data:`METRICS` (plus ``overlapping_leaders``) for one run
    measured over ``duration`` unscaled seconds; None where nothing was measured."""
    start, end = window(timeline, duration)
    hours = duration / 3600
    unscaled = timeline.unscaled
    components = {h.component for h in timeline.health if h.component.startswith(APISERVER)}
    livez = sorted(c for c in components if "/" not in c)
    readyz = sorted(c for c in components if c.endswith(READYZ))
    requests = [r for r in api_requests(timeline) if r.source == "etcd" and start <= r.t < end]
    gaps = [
        _leaderless([i for spans in by_candidate.values() for i in spans], start, end)
        for by_candidate in timeline.leadership().values()
    ]
    leaderless = [sum(g) for g in gaps]
    p99 = quantile((r.latency for r in requests), 0.99)
    return {
        "lease_losses_per_hour": sum(start <= t < end for t in leadership_losses(timeline)) / hours,
        "livez_failures_per_hour": sum(unhealthy(timeline, c, start, end)[0] for c in livez)
        / hours,
        "readyz_failures_per_hour": sum(unhealthy(timeline, c, start, end)[0] for c in readyz)
        / hours,
        "p99_seconds": None if p99 is None else unscaled(p99),
        "error_rate": sum(not r.ok for r in requests) / len(requests) if requests else None,
        "leaderless_seconds_per_hour": unscaled(sum(leaderless) / len(leaderless)) / hours
        if leaderless
        else None,
        "failover_seconds": unscaled(max((max(g, default=0.0) for g in gaps), default=0.0))
        if gaps
        else None,
        "overlapping_leaders": float(len(timeline.overlapping_leaders())),
    }
