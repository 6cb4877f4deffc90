"""Each claim's window at both edges, and its thresholds on both sides.

test_claims.py shows every claim reaching every verdict at one point each; here
the deciding moment (or ratio, or share) sits exactly on each edge of what the
analysis claims, then just outside it, so a window that lost a bound or an
inclusive edge turned exclusive fails. Synthetic timelines (tests/synthetic.py):
the fault runs from 100 s to 400 s; ``x`` is seconds after it began.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from etcdlab.common.timeline import ErrorClass, EventKind, FaultKind, Timeline
from etcdlab.report.claims import STALL_AFTER, Finding, Verdict, evaluate
from tests.synthetic import FAULT, A, D, base, ev, gauge, lead, probe, reqs

START, END = FAULT
INF = float("inf")
LOST, LEFT = EventKind.TRANSPORT_STATE, "127.0.0.1:2379 IDLE apiserver-0"


def finding(timeline: Timeline, claim_id: str) -> Finding:
    return {claim.id: found for claim, found in evaluate(timeline)}[claim_id]


def leading(timeline: Timeline) -> Timeline:
    return lead(timeline, (0, "a", True))


# claim, its window, and a timeline whose first deciding event is at x.
ONSETS: list[tuple[str, tuple[float, float], Callable[[float], Timeline]]] = [
    ("phase.immediate.client-errors", (0, 10),
     lambda x: reqs(base(), START + x, START + x + 1, error=ErrorClass.CONTEXT)),
    ("phase.immediate.health-degraded", (0, 10),
     lambda x: probe(base(), (START - 1, True), (START + x, False))),
    ("phase.immediate.renew-failures", (0, 10),
     lambda x: ev(leading(base()), START + x, EventKind.RENEW_FAILED, "a", "kcm")),
    ("phase.short.leader-transitions", (10, 60),
     lambda x: lead(base(), (0, "a", True), (START + x, "a", False))),
    ("phase.short.reconcile-pauses", (10, 60),
     lambda x: gauge(base(), "progress/deployment", (50, 1), (START + x, 0.5), (390, 1))),
    ("apiserver.keepalive-detection", (0, 10),
     lambda x: ev(base(), START + x, EventKind.KEEPALIVE_FAILURE)),
    ("apiserver.health-failures", (10, 20),
     lambda x: probe(base(), (START - 1, True), (START + x, False))),
    ("apiserver.endpoint-rotation", (30, INF), lambda x: ev(base(), START + x, LOST, detail=LEFT)),
    ("election.slow-path", (10, 15),
     lambda x: ev(leading(base()), START + x, EventKind.SLOW_PATH, "a", "kcm")),
    ("election.leadership-loss", (15, 25),
     lambda x: lead(base(), (0, "a", True), (START + x, "a", False))),
    ("recovery.endpoint-rotation", (0, 30), lambda x: ev(base(), START + x, LOST, detail=LEFT)),
]  # fmt: skip


def edges(window: tuple[float, float]) -> list[tuple[float, Verdict]]:
    """Both edges (agrees) and just past each (differs); an open end has one edge."""
    low, high = window
    points = [(low, A), (low - 0.5, D)]
    if high != INF:
        points += [(high, A), (high + 0.5, D)]
    else:
        points += [(low + 250, A)]  # still inside: the fault is 300 s long
    return points


ONSET_CASES = [
    (claim_id, window, build, x, verdict)
    for claim_id, window, build in ONSETS
    for x, verdict in edges(window)
]


@pytest.mark.parametrize(
    ("claim_id", "window", "build", "x", "verdict"),
    ONSET_CASES,
    ids=[f"{c}@{x:g}" for c, _, _, x, _ in ONSET_CASES],
)
def test_the_first_event_decides_within_the_window_edges_included(
    claim_id: str,
    window: tuple[float, float],
    build: Callable[[float], Timeline],
    x: float,
    verdict: Verdict,
) -> None:
    found = finding(build(x), claim_id)
    assert found.verdict is verdict, found.measured
    assert found.window == window
    if x >= 0:
        assert found.at == x
        assert f" {x:.1f} s after the fault began" in found.measured
    else:
        # An event before the fault is no sign of it.
        assert found.at is None and found.measured.startswith("no ")


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


@pytest.mark.parametrize(("x", "verdict"), [(60, A), (59.5, D), (300, A), (300.5, D)])
def test_re_election_counts_the_last_acquisition_in_one_to_five_minutes(
    x: float, verdict: Verdict
) -> None:
    timeline = lead(base(), (0, "a", True), (START + 5, "a", False), (START + x, "b", True))
    found = finding(timeline, "phase.medium.re-election")
    assert found.verdict is verdict, found.measured
    assert (found.window, found.at) == ((60, 300), x)


@pytest.mark.parametrize(("x", "verdict"), [(30, A), (29.5, D), (45, A), (45.5, D)])
def test_stabilization_wants_every_lost_lease_led_again_in_30_to_45_s(
    x: float, verdict: Verdict
) -> None:
    timeline = lead(base(), (0, "a", True), (START + 18, "a", False), (START + x, "b", True))
    found = finding(timeline, "election.stabilization")
    assert found.verdict is verdict, found.measured
    assert (found.window, found.at) == ((30, 45), x)


def test_stabilization_differs_while_a_lost_lease_has_no_leader() -> None:
    timeline = lead(base(), (0, "a", True), (START + 18, "a", False), (START + 35, "b", True))
    lead(timeline, (0, "c", True), (START + 20, "c", False), lease="scheduler")
    found = finding(timeline, "election.stabilization")
    assert found == Finding(D, "1 of 2 lost leases got no leader", (30, 45))


@pytest.mark.parametrize(("after_heal", "verdict"), [(120, A), (119.5, D), (600, A), (600.5, D)])
def test_full_reconciliation_takes_two_to_ten_minutes_after_the_heal(
    after_heal: float, verdict: Verdict
) -> None:
    timeline = gauge(
        base(), "progress/deployment",
        (50, 1), (150, 0.5), (END + after_heal - 0.25, 0.5), (END + after_heal, 1), (1100, 1),
    )  # fmt: skip
    found = finding(timeline, "phase.medium.reconciliation")
    assert found.verdict is verdict, found.measured
    healed = END - START
    assert found.window == (healed + 120, healed + 600)
    assert found.at == healed + after_heal


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


@pytest.mark.parametrize(("x", "verdict"), [(15, A), (14.5, D), (29.5, A), (30, D)])
def test_election_chaos_counts_contenders_at_15_to_30_s(x: float, verdict: Verdict) -> None:
    timeline = leading(base())
    ev(timeline, START + x, EventKind.ACQUIRE_FAILED, "b", "kcm")
    ev(timeline, START + x, EventKind.ACQUIRE_FAILED, "c", "kcm")
    found = finding(timeline, "election.chaos")
    assert found.verdict is verdict, found.measured
    assert found.window == (15.0, 30.0)


@pytest.mark.parametrize(("back", "verdict"), [(60, A), (60.5, D)])
def test_rejoin_within_a_minute_of_the_heal(back: float, verdict: Verdict) -> None:
    timeline = probe(
        base(FaultKind.PARTITION_MINORITY), (150, False), (END + back, True), who="etcd-0"
    )
    found = finding(timeline, "partition.rejoin")
    assert found.verdict is verdict, found.measured
    healed = END - START
    assert found.window == (healed, healed + 60)
    assert found.at == healed + back


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
