"""Every claim that names a time window, judged at both of its edges.

tests/report/test_claims.py reaches each verdict once, at one point; a window
that lost its upper (or lower) bound would still pass there. Here the claimed
thing happens exactly at each edge (agrees: the windows are closed) and just
outside it (differs), on the synthetic timelines of tests/synthetic.py: a fault
from 100 s to 400 s, so ``x`` seconds after the fault began is ``100 + x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from etcdlab.common.timeline import ErrorClass, EventKind, FaultKind, Timeline
from etcdlab.report.claims import Verdict, evaluate
from tests.synthetic import FAULT, A, D, base, ev, gauge, lead, probe, progress, reqs

START = FAULT[0]
# An apiserver's connection to a member lost: the balancer rotates past it.
LEFT = "127.0.0.1:2379 IDLE apiserver-0"

# x: when, in unscaled seconds after the fault began, the claimed thing happens.
Build = Callable[[float], Timeline]


def _first_error(x: float) -> Timeline:
    return reqs(base(), START + x, START + x + 1, error=ErrorClass.CONTEXT)


def _first_failed_check(x: float) -> Timeline:
    return probe(base(), (START - 1, True), (START + x, False))


def _leader_event(kind: EventKind) -> Build:
    return lambda x: ev(lead(base(), (0, "a", True)), START + x, kind, "a", "kcm")


def _lease_lost(x: float) -> Timeline:
    return lead(base(), (0, "a", True), (START + x, "a", False))


def _stall(x: float) -> Timeline:
    points = ((START, 1.0), (START + x, 0.5), (START + x + 10, 0.5), (START + x + 20, 1.0))
    return gauge(base(), "progress/deployment", *points)


def _new_leader(x: float) -> Timeline:
    """Lost 18 s in, a new leader ``x`` s in."""
    return lead(base(), (0, "a", True), (START + 18, "a", False), (START + x, "b", True))


def _connection_lost(x: float) -> Timeline:
    return ev(base(), START + x, EventKind.TRANSPORT_STATE, detail=LEFT)


def _chaos(x: float) -> Timeline:
    timeline = lead(base(), (0, "a", True))
    for candidate in ("b", "c"):
        ev(timeline, START + x, EventKind.ACQUIRE_FAILED, candidate, "kcm")
    return timeline


def _converged(x: float) -> Timeline:
    return progress(base(), "deployment", START + x)


def _rejoined(x: float) -> Timeline:
    timeline = base(FaultKind.PARTITION_MINORITY)
    return probe(timeline, (START + 50, False), (START + x, True), who="etcd-0")


def _normal_again(x: float) -> Timeline:
    return reqs(reqs(base(), FAULT[1], START + x, latency=0.5), START + x, 1100)


# claim, its window (unscaled seconds after the fault began), how to build a run
# where its thing happens at x, and how far outside an edge "just outside" is.
WINDOWS: list[tuple[str, tuple[float, float], Build, float]] = [
    ("phase.immediate.client-errors", (0, 10), _first_error, 0.5),
    ("phase.immediate.health-degraded", (0, 10), _first_failed_check, 0.5),
    ("phase.immediate.renew-failures", (0, 10), _leader_event(EventKind.RENEW_FAILED), 0.5),
    ("phase.short.leader-transitions", (10, 60), _lease_lost, 0.5),
    ("phase.short.reconcile-pauses", (10, 60), _stall, 0.5),
    ("phase.medium.re-election", (60, 300), _new_leader, 0.5),
    # 120-600 s after the fault ended at 300 s.
    ("phase.medium.reconciliation", (420, 900), _converged, 1),
    ("apiserver.keepalive-detection", (0, 10),
     lambda x: ev(base(), START + x, EventKind.KEEPALIVE_FAILURE), 0.5),
    ("apiserver.health-failures", (10, 20), _first_failed_check, 0.5),
    ("apiserver.endpoint-rotation", (30, math.inf), _connection_lost, 0.5),
    ("election.slow-path", (10, 15), _leader_event(EventKind.SLOW_PATH), 0.5),
    ("election.leadership-loss", (15, 25), _lease_lost, 0.5),
    # Half-open, as every span of records (timeline.between): 30 s itself is out.
    ("election.chaos", (15, 29.5), _chaos, 0.5),
    ("election.stabilization", (30, 45), _new_leader, 0.5),
    # Healthy for good within a minute of the heal at 300 s.
    ("partition.rejoin", (300, 360), _rejoined, 0.5),
    ("recovery.endpoint-rotation", (0, 30), _connection_lost, 0.5),
    # 600 s and more after the fault ended at 300 s, judged in 5 s buckets.
    ("recovery.latency-normalizes", (900, math.inf), _normal_again, 5),
]  # fmt: skip


def _edges() -> list[tuple[str, float, Verdict, Build]]:
    cases = []
    for claim, (low, high), build, outside in WINDOWS:
        cases.append((claim, float(low), A, build))
        if low > 0:
            cases.append((claim, low - outside, D, build))
        if high != math.inf:
            cases.append((claim, float(high), A, build))
            cases.append((claim, high + outside, D, build))
    return cases


EDGES = _edges()


@pytest.mark.parametrize(
    ("claim_id", "x", "expected", "build"),
    EDGES,
    ids=[f"{claim}@{x:g}-{verdict.value}" for claim, x, verdict, _ in EDGES],
)
def test_a_window_holds_at_its_edges(
    claim_id: str, x: float, expected: Verdict, build: Build
) -> None:
    (finding,) = [f for claim, f in evaluate(build(x)) if claim.id == claim_id]
    assert finding.verdict is expected, finding.measured


# Claims judged on everything inside a window (not on a first occurrence): what
# decides the verdict happens from ``x`` for ``width`` seconds, a run of
# once-a-second requests.
Burst = Callable[[float, float], Timeline]


def _slow_burst(x: float, width: float) -> Timeline:
    timeline = reqs(base(), START, START + x)
    reqs(timeline, START + x, START + x + width, latency=0.5)
    return reqs(timeline, START + x + width, FAULT[1])


def _failing_burst(x: float, width: float) -> Timeline:
    """Slower but served requests at 20-30 s, failing ones from ``x``."""
    timeline = reqs(base(), START + 20, START + 30, latency=0.01)
    timeline.requests = [r for r in timeline.requests if not START + x <= r.t < START + x + width]
    return reqs(timeline, START + x, START + x + width, error=ErrorClass.CLUSTER)


# claim, its window, the burst, and the verdict with the burst inside the window
# (outside it, the other one).
SPANS: list[tuple[str, tuple[float, float], Burst, Verdict]] = [
    ("phase.short.latency", (10, 60), _slow_burst, A),
    ("apiserver.latency-continues", (20, 30), _failing_burst, D),
]


def _placements() -> list[tuple[str, float, float, Verdict, Burst]]:
    cases = []
    for claim, (low, high), burst, inside in SPANS:
        outside = D if inside is A else A
        width = high - low
        cases.append((claim, low, width, inside, burst))
        # Ending just before the window opens, and starting just after it closes.
        cases.append((claim, low - width - 0.5, width, outside, burst))
        cases.append((claim, high + 0.5, width, outside, burst))
    return cases


PLACEMENTS = _placements()


@pytest.mark.parametrize(
    ("claim_id", "x", "width", "expected", "burst"),
    PLACEMENTS,
    ids=[f"{claim}@{x:g}-{verdict.value}" for claim, x, _, verdict, _ in PLACEMENTS],
)
def test_a_span_judges_only_what_falls_inside_it(
    claim_id: str, x: float, width: float, expected: Verdict, burst: Burst
) -> None:
    (finding,) = [f for claim, f in evaluate(burst(x, width)) if claim.id == claim_id]
    assert finding.verdict is expected, finding.measured


def test_every_claim_with_a_bounded_window_is_here() -> None:
    """A claim whose finding names a window closed at both ends (other than the
    whole fault, which the fault's own edges bound) is tested at its edges above,
    so a new one cannot go unguarded at either."""
    listed = {claim for claim, *_ in WINDOWS} | {claim for claim, *_ in SPANS}
    runs = [build(12) for *_, build, _ in WINDOWS] + [burst(12, 10) for *_, burst, _ in SPANS]
    whole_fault = (0.0, FAULT[1] - FAULT[0])
    bounded = set()
    for run in runs:
        for claim, finding in evaluate(run):
            window = finding.window
            if window is not None and window[1] != math.inf and window != whole_fault:
                bounded.add(claim.id)
    assert bounded <= listed, sorted(bounded - listed)
