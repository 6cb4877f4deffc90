"""Synthetic timelines for the verdict and report tests (unscaled seconds, scaled on entry)."""

from __future__ import annotations

from etcdlab.common.timeline import (
    ErrorClass,
    Event,
    EventKind,
    FaultKind,
    FaultWindow,
    Gauge,
    Health,
    LeaderChange,
    Reconcile,
    Request,
    Timeline,
)
from etcdlab.common.timescale import TimeScale
from etcdlab.report.claims import Verdict

A, D, N = Verdict.AGREES, Verdict.DIFFERS, Verdict.NOT_OBSERVED
FAULT = (100.0, 400.0)


def base(kind: FaultKind | None = FaultKind.LOSS, scale: float = 1.0) -> Timeline:
    """A fault from 100 s to 400 s (unscaled seconds) and a quiet, fast baseline before it."""
    timeline = Timeline("synthetic", seed=1, time_scale=TimeScale(scale), duration=1200 * scale)
    if kind is not None:
        timeline.faults.append(FaultWindow(FAULT[0] * scale, FAULT[1] * scale, kind, "etcd-0"))
    reqs(timeline, 0, 100, latency=0.001)
    return timeline


def reqs(
    timeline: Timeline,
    start: float,
    end: float,
    latency: float = 0.001,
    error: ErrorClass | None = None,
    op: str = "get",
    source: str = "etcd",
) -> Timeline:
    scale = timeline.time_scale
    t = start
    while t < end:
        timeline.requests.append(
            Request(t * scale, "apiserver-0", op, latency * scale, error, source)
        )
        t += 1
    return timeline


def ev(
    timeline: Timeline, t: float, kind: EventKind, who: str = "apiserver-0", detail: str = ""
) -> Timeline:
    timeline.events.append(Event(t * timeline.time_scale, who, kind, detail))
    return timeline


def lead(timeline: Timeline, *changes: tuple[float, str, bool], lease: str = "kcm") -> Timeline:
    for t, candidate, leading in changes:
        timeline.leaders.append(LeaderChange(t * timeline.time_scale, lease, candidate, leading))
    return timeline


def probe(timeline: Timeline, *samples: tuple[float, bool], who: str = "apiserver-0") -> Timeline:
    for t, healthy in samples:
        timeline.health.append(Health(t * timeline.time_scale, who, healthy))
    return timeline


def gauge(timeline: Timeline, name: str, *points: tuple[float, float]) -> Timeline:
    for t, value in points:
        timeline.gauges.append(Gauge(t * timeline.time_scale, name, value))
    return timeline


def progress(timeline: Timeline, controller: str, back_at: float) -> Timeline:
    """Done before the fault, half done during it, done again at ``back_at``."""
    return gauge(
        timeline,
        f"progress/{controller}",
        (50, 1.0),
        (150, 0.5),
        (300, 0.5),
        (back_at - 1, 0.5),
        (back_at, 1.0),
        (1100, 1.0),
    )


def reconciles(timeline: Timeline, controller: str, ops: int, n: int = 3) -> Timeline:
    for i in range(n):
        timeline.reconciles.append(Reconcile(float(10 + i), controller, f"k{i}", 0.01, ops, True))
    return timeline


def partition_requests(kind: FaultKind, error_from: float | None = None) -> Timeline:
    timeline = reqs(base(kind), 100, 400)
    if error_from is not None:
        timeline.requests = [
            r
            if not (error_from <= r.t < error_from + 50)
            else Request(r.t, r.component, r.op, r.latency, ErrorClass.CLUSTER)
            for r in timeline.requests
        ]
    return timeline
