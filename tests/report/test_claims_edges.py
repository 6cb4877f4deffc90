"""Each claim's window at both edges, and its thresholds on both sides.

test_claims.py shows every claim reaching every verdict at one point each; here
the deciding moment (or ratio, or share) sits exactly on each edge of what the
analysis claims, then just outside it, so a window that lost a bound or an
inclusive edge turned exclusive fails; a guard lists any bounded window added
to the claims without a row here. Synthetic timelines (tests/synthetic.py): the
fault runs from 100 s to 400 s; ``x`` is seconds after it began.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from etcdlab.common.timeline import ErrorClass, EventKind, FaultKind, Timeline
from etcdlab.report.claims import STALL_AFTER, Finding, Verdict, evaluate
from tests.synthetic import FAULT, A, D, base, ev, gauge, lead, probe, progress, reqs

START, END = FAULT
HEALED = END - START
INF = float("inf")
LOST, LEFT = EventKind.TRANSPORT_STATE, "127.0.0.1:2379 IDLE apiserver-0"

# A timeline where the claimed thing happens x s after the fault began.
Build = Callable[[float], Timeline]


def finding(timeline: Timeline, claim_id: str) -> Finding:
    return {claim.id: found for claim, found in evaluate(timeline)}[claim_id]


def leading(timeline: Timeline) -> Timeline:
    return lead(timeline, (0, "a", True))


def _new_leader(x: float) -> Timeline:
    """Lost 18 s in, a new leader ``x`` s in."""
    return lead(base(), (0, "a", True), (START + 18, "a", False), (START + x, "b", True))


def _chaos(x: float) -> Timeline:
    timeline = leading(base())
    for candidate in ("b", "c"):
        ev(timeline, START + x, EventKind.ACQUIRE_FAILED, candidate, "kcm")
    return timeline


def _normal_again(x: float) -> Timeline:
    """Slow from the heal until ``x``, fast again from then to the end of the run."""
    return reqs(reqs(base(), END, START + x, latency=0.5), START + x, 1200)


@dataclass(frozen=True)
class Window:
    claim: str
    window: tuple[float, float]
    """As the finding states it, in seconds after the fault began."""
    build: Build
    step: float = 0.5
    """How far outside an edge "just outside" is (the claim's resolution)."""
    onset: bool = False
    """Decided by a first event: the finding says when it came, or "no ..." if none did."""
    dated: bool = True
    """The finding's ``at`` is when the deciding thing happened."""
    half_open: bool = False
    """The upper edge is out, as in every span of records (timeline.between)."""
    beyond: float = 250.0
    """An open window: this far past its lower edge still agrees (inside the run)."""
    early: bool = True
    """The claimed thing can come before the lower edge (not so where the window
    opens when the claim starts looking)."""

    def edges(self) -> list[tuple[float, Verdict]]:
        """Both edges (agrees) and just past each (differs); an open end has one edge."""
        low, high = self.window
        points = [(low, A)] + ([(low - self.step, D)] if self.early else [])
        if high == INF:
            points.append((low + self.beyond, A))
        elif self.half_open:
            points += [(high - self.step, A), (high, D)]
        else:
            points += [(high, A), (high + self.step, D)]
        return points


WINDOWS = [
    Window("phase.immediate.client-errors", (0, 10), onset=True,
           build=lambda x: reqs(base(), START + x, START + x + 1, error=ErrorClass.CONTEXT)),
    Window("phase.immediate.health-degraded", (0, 10), onset=True,
           build=lambda x: probe(base(), (START - 1, True), (START + x, False))),
    Window("phase.immediate.renew-failures", (0, 10), onset=True,
           build=lambda x: ev(leading(base()), START + x, EventKind.RENEW_FAILED, "a", "kcm")),
    Window("phase.short.leader-transitions", (10, 60), onset=True,
           build=lambda x: lead(base(), (0, "a", True), (START + x, "a", False))),
    Window("phase.short.reconcile-pauses", (10, 60), onset=True,
           build=lambda x: gauge(base(), "progress/deployment",
                                 (50, 1), (START + x, 0.5), (390, 1))),
    # The last acquisition counts: lost 5 s in, led again x s in.
    Window("phase.medium.re-election", (60, 300),
           build=lambda x: lead(base(), (0, "a", True), (START + 5, "a", False),
                                (START + x, "b", True))),
    # 120-600 s after the heal: converged again x s after the fault began.
    Window("phase.medium.reconciliation", (HEALED + 120, HEALED + 600), step=1,
           build=lambda x: progress(base(), "deployment", START + x)),
    Window("apiserver.keepalive-detection", (0, 10), onset=True,
           build=lambda x: ev(base(), START + x, EventKind.KEEPALIVE_FAILURE)),
    Window("apiserver.health-failures", (10, 20), onset=True,
           build=lambda x: probe(base(), (START - 1, True), (START + x, False))),
    Window("apiserver.endpoint-rotation", (30, INF), onset=True,
           build=lambda x: ev(base(), START + x, LOST, detail=LEFT)),
    Window("election.slow-path", (10, 15), onset=True,
           build=lambda x: ev(leading(base()), START + x, EventKind.SLOW_PATH, "a", "kcm")),
    Window("election.leadership-loss", (15, 25), onset=True,
           build=lambda x: lead(base(), (0, "a", True), (START + x, "a", False))),
    # Contenders counted over the span, not dated.
    Window("election.chaos", (15, 30), _chaos, dated=False, half_open=True),
    Window("election.stabilization", (30, 45), _new_leader),
    # Healthy for good within a minute of the heal.
    Window("partition.rejoin", (HEALED, HEALED + 60),
           build=lambda x: probe(base(FaultKind.PARTITION_MINORITY), (START + 50, False),
                                 (START + x, True), who="etcd-0"),
           early=False),
    Window("recovery.endpoint-rotation", (0, 30), onset=True,
           build=lambda x: ev(base(), START + x, LOST, detail=LEFT)),
    # 600 s and more after the heal, judged in 5 s buckets.
    Window("recovery.latency-normalizes", (HEALED + 600, INF), _normal_again, step=5,
           beyond=150),
]  # fmt: skip

EDGES = [(row, x, verdict) for row in WINDOWS for x, verdict in row.edges()]


@pytest.mark.parametrize(
    ("row", "x", "verdict"), EDGES, ids=[f"{row.claim}@{x:g}" for row, x, _ in EDGES]
)
def test_each_window_decides_at_its_edges_and_not_past_them(
    row: Window, x: float, verdict: Verdict
) -> None:
    found = finding(row.build(x), row.claim)
    assert found.verdict is verdict, found.measured
    assert found.window == row.window
    # An event before the fault is no sign of it.
    assert found.at == (x if row.dated and x >= 0 else None)
    if row.onset and x >= 0:
        assert f" {x:.1f} s after the fault began" in found.measured
    elif row.onset:
        assert found.measured.startswith("no ")


# Claims judged on everything inside a window (not on a first occurrence): what
# decides the verdict happens from ``x`` for ``width`` seconds, a run of
# once-a-second requests.
Burst = Callable[[float, float], Timeline]


def _slow_burst(x: float, width: float) -> Timeline:
    timeline = reqs(base(), START, START + x)
    reqs(timeline, START + x, START + x + width, latency=0.5)
    return reqs(timeline, START + x + width, END)


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
    found = finding(burst(x, width), claim_id)
    assert found.verdict is expected, found.measured


def test_every_claim_with_a_bounded_window_is_here() -> None:
    """A claim whose finding names a window closed at both ends (other than the
    whole fault, which the fault's own edges bound) is tested at its edges above,
    so a new one cannot go unguarded at either."""
    listed = {row.claim for row in WINDOWS} | {claim for claim, *_ in SPANS}
    runs = [row.build(12) for row in WINDOWS] + [burst(12, 10) for *_, burst, _ in SPANS]
    bounded = set()
    for run in runs:
        for claim, found in evaluate(run):
            window = found.window
            if window is not None and window[1] != INF and window != (0.0, HEALED):
                bounded.add(claim.id)
    assert bounded <= listed, sorted(bounded - listed)


def test_an_onset_finding_says_when_what_was_claimed_and_how_many() -> None:
    timeline = probe(base(), (START - 1, True), (START + 12, False), (START + 13, False))
    assert finding(timeline, "apiserver.health-failures") == Finding(
        A,
        "first failed health check 12.0 s after the fault began (claimed: 10-20 s); 2 in all",
        (10, 20),
        12.0,
    )
    rotated = finding(ev(base(), START + 45, LOST, detail=LEFT), "apiserver.endpoint-rotation")
    assert rotated.measured == (
        "first lost connection 45.0 s after the fault began (claimed: 30 s+); 1 in all"
    )


def test_no_onset_during_the_fault_names_how_long_it_lasted() -> None:
    found = finding(probe(base(), (START - 1, True)), "apiserver.health-failures")
    assert found == Finding(
        D, "no failed health check in 300.0 s of fault (claimed: 10-20 s)", (10, 20)
    )


def test_stabilization_differs_while_a_lost_lease_has_no_leader() -> None:
    timeline = lead(base(), (0, "a", True), (START + 18, "a", False), (START + 35, "b", True))
    lead(timeline, (0, "c", True), (START + 20, "c", False), lease="scheduler")
    found = finding(timeline, "election.stabilization")
    assert found == Finding(D, "1 of 2 lost leases got no leader", (30, 45))


@pytest.mark.parametrize(("during", "verdict"), [(0.010, A), (0.0099, D)])
def test_dramatic_latency_is_ten_times_the_baseline_p99(during: float, verdict: Verdict) -> None:
    # Slow requests just outside 10-60 s must not count.
    timeline = reqs(base(), START, START + 10, latency=1.0)
    reqs(timeline, START + 10, START + 60, latency=during)
    reqs(timeline, START + 60, START + 70, latency=1.0)
    found = finding(timeline, "phase.short.latency")
    assert found.verdict is verdict, found.measured
    assert found.window == (10.0, 60.0)


@pytest.mark.parametrize(("during", "verdict"), [(0.002, A), (0.0019, D)])
def test_latency_continues_wants_twice_the_baseline_at_20_to_30_s(
    during: float, verdict: Verdict
) -> None:
    timeline = reqs(base(), START + 10, START + 20, latency=1.0)
    reqs(timeline, START + 20, START + 30, latency=during)
    reqs(timeline, START + 30, START + 40, latency=1.0)
    found = finding(timeline, "apiserver.latency-continues")
    assert found.verdict is verdict, found.measured
    assert found.window == (20.0, 30.0)
    assert found.measured.startswith("at 20-30 s 100% of 10 requests succeeded")


@pytest.mark.parametrize(("cached", "verdict"), [(6, A), (5, D)])
def test_the_cache_must_serve_more_than_half_the_reads(cached: int, verdict: Verdict) -> None:
    timeline = reqs(base(), START, START + cached, source="cache")
    reqs(timeline, START + cached, START + 10)
    found = finding(timeline, "apiserver.cache-serves-reads")
    assert found.verdict is verdict, found.measured
    assert found.measured == f"{cached / 10:.0%} of 10 reads during the fault came from the cache"
    assert found.window == (0.0, END - START)


@pytest.mark.parametrize(
    ("failing", "removed", "verdict"),
    [
        ({*range(0, 300, 10)}, 0, A),  # 90% succeed
        ({*range(0, 300, 10), 1}, 0, D),
        (set(), STALL_AFTER - 1, A),  # a gap of STALL_AFTER between successes
        (set(), STALL_AFTER, D),
    ],
)
def test_a_majority_partition_keeps_nine_in_ten_requests_and_no_long_gap(
    failing: set[int], removed: float, verdict: Verdict
) -> None:
    timeline = base(FaultKind.PARTITION_MINORITY)
    for i in range(300):
        if not 50 <= i < 50 + removed:
            error = ErrorClass.CLUSTER if i in failing else None
            reqs(timeline, START + i, START + i + 1, error=error)
    found = finding(timeline, "partition.majority-continues")
    assert found.verdict is verdict, found.measured
    assert found.window == (0.0, END - START)
