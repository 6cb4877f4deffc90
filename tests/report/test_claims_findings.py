"""What each claim's finding says: the measured text, the window and the moment
that decided it, pinned for the timelines of test_claims.py and for the
branches those do not reach.

The report shows these words and numbers to the reader (report.html, the
claims table), so a wrong count, unit, window or wording is a wrong report.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from etcdlab.common.timeline import (
    ErrorClass,
    EventKind,
    FaultKind,
    FaultWindow,
    Reconcile,
    Timeline,
)
from etcdlab.common.timescale import TimeScale
from etcdlab.report.claims import (
    STALL_AFTER,
    Claim,
    Finding,
    Verdict,
    connections_left,
    evaluate,
    rotation,
    single_leader,
    stall_intervals,
)
from tests.report.test_claims import CASES, LEFT, LOST
from tests.synthetic import A, D, N, base, ev, gauge, lead, probe, progress, reconciles, reqs

INF = float("inf")
Expected = tuple[str, tuple[float, float] | None, float | None]

# (claim, verdict) of a case in test_claims.CASES -> (measured, window, at).
PINNED: dict[tuple[str, Verdict], Expected] = {
    ("phase.immediate.client-errors", A): (
        "first etcd client error 5.0 s after the fault began (claimed: 0-10 s); 1 in all",
        (0.0, 10.0),
        5.0,
    ),
    ("phase.immediate.client-errors", D): (
        "first etcd client error 50.0 s after the fault began (claimed: 0-10 s); 1 in all",
        (0.0, 10.0),
        50.0,
    ),
    ("phase.immediate.client-errors", N): (
        "the scenario injected no fault",
        None,
        None,
    ),
    ("phase.immediate.health-degraded", A): (
        "first failed health check 5.0 s after the fault began (claimed: 0-10 s); 1 in all",
        (0.0, 10.0),
        5.0,
    ),
    ("phase.immediate.health-degraded", D): (
        "first failed health check 30.0 s after the fault began (claimed: 0-10 s); 1 in all",
        (0.0, 10.0),
        30.0,
    ),
    ("phase.immediate.health-degraded", N): (
        "nothing in this run could show failed health check",
        None,
        None,
    ),
    ("phase.immediate.renew-failures", A): (
        "first failed renew 3.0 s after the fault began (claimed: 0-10 s); 1 in all",
        (0.0, 10.0),
        3.0,
    ),
    ("phase.immediate.renew-failures", D): (
        "no failed renew in 300.0 s of fault (claimed: 0-10 s)",
        (0.0, 10.0),
        None,
    ),
    ("phase.immediate.renew-failures", N): (
        "nothing in this run could show failed renew",
        None,
        None,
    ),
    ("phase.short.leader-transitions", A): (
        "first leadership loss 20.0 s after the fault began (claimed: 10-60 s); 1 in all",
        (10.0, 60.0),
        20.0,
    ),
    ("phase.short.leader-transitions", D): (
        "first leadership loss 1.0 s after the fault began (claimed: 10-60 s); 1 in all",
        (10.0, 60.0),
        1.0,
    ),
    ("phase.short.leader-transitions", N): (
        "nothing in this run could show leadership loss",
        None,
        None,
    ),
    ("phase.short.latency", A): (
        (
            "apiserver p99 1.0 ms before the fault, 500.0 ms at 10-60 s (500.0x; 'dramatic' taken"
            " as >= 10x)"
        ),
        (10.0, 60.0),
        None,
    ),
    ("phase.short.latency", D): (
        (
            "apiserver p99 1.0 ms before the fault, 2.0 ms at 10-60 s (2.0x; 'dramatic' taken as "
            ">= 10x)"
        ),
        (10.0, 60.0),
        None,
    ),
    ("phase.short.latency", N): (
        "the scenario injected no fault",
        None,
        None,
    ),
    ("phase.short.reconcile-pauses", A): (
        "first reconcile stall 20.0 s after the fault began (claimed: 10-60 s); 1 in all",
        (10.0, 60.0),
        20.0,
    ),
    ("phase.short.reconcile-pauses", D): (
        "first reconcile stall 2.0 s after the fault began (claimed: 10-60 s); 1 in all",
        (10.0, 60.0),
        2.0,
    ),
    ("phase.short.reconcile-pauses", N): (
        "nothing in this run could show reconcile stall",
        None,
        None,
    ),
    ("phase.medium.re-election", A): (
        "1 acquisitions after the fault began, the last 100.0 s in (claimed: 60-300 s)",
        (60.0, 300.0),
        100.0,
    ),
    ("phase.medium.re-election", D): (
        "1 acquisitions after the fault began, the last 50.0 s in (claimed: 60-300 s)",
        (60.0, 300.0),
        50.0,
    ),
    ("phase.medium.re-election", N): (
        "no leader-elected components ran",
        None,
        None,
    ),
    ("phase.medium.reconciliation", A): (
        "converged after the fault ended: deployment 200.0 s (claimed: 120-600 s)",
        (420.0, 900.0),
        500.0,
    ),
    ("phase.medium.reconciliation", D): (
        "converged after the fault ended: deployment 10.0 s (claimed: 120-600 s)",
        (420.0, 900.0),
        310.0,
    ),
    ("phase.medium.reconciliation", N): (
        "no workload controllers ran",
        None,
        None,
    ),
    ("apiserver.keepalive-detection", A): (
        "first keepalive failure 5.0 s after the fault began (claimed: 0-10 s); 1 in all",
        (0.0, 10.0),
        5.0,
    ),
    ("apiserver.keepalive-detection", D): (
        "no keepalive failure in 300.0 s of fault (claimed: 0-10 s)",
        (0.0, 10.0),
        None,
    ),
    ("apiserver.keepalive-detection", N): (
        "the scenario injected no fault",
        None,
        None,
    ),
    ("apiserver.health-failures", A): (
        "first failed health check 12.0 s after the fault began (claimed: 10-20 s); 1 in all",
        (10.0, 20.0),
        12.0,
    ),
    ("apiserver.health-failures", D): (
        "first failed health check 5.0 s after the fault began (claimed: 10-20 s); 1 in all",
        (10.0, 20.0),
        5.0,
    ),
    ("apiserver.health-failures", N): (
        "nothing in this run could show failed health check",
        None,
        None,
    ),
    ("apiserver.latency-continues", A): (
        (
            "at 20-30 s 100% of 10 requests succeeded, p99 10.0 ms vs 1.0 ms before the fault "
            "(10.0x)"
        ),
        (20.0, 30.0),
        None,
    ),
    ("apiserver.latency-continues", D): (
        ("at 20-30 s 0% of 10 requests succeeded, p99 10.0 ms vs 1.0 ms before the fault (10.0x)"),
        (20.0, 30.0),
        None,
    ),
    ("apiserver.latency-continues", N): (
        "no apiserver requests before the fault or at 20-30 s",
        None,
        None,
    ),
    ("apiserver.endpoint-rotation", A): (
        "first lost connection 35.0 s after the fault began (claimed: 30 s+); 1 in all",
        (30.0, INF),
        35.0,
    ),
    ("apiserver.endpoint-rotation", D): (
        "first lost connection 1.0 s after the fault began (claimed: 30 s+); 1 in all",
        (30.0, INF),
        1.0,
    ),
    ("apiserver.endpoint-rotation", N): (
        "the scenario injected no fault",
        None,
        None,
    ),
    ("apiserver.health-nonblocking", A): (
        "10 of 10 requests succeeded during 10.0 s of failing health checks",
        None,
        None,
    ),
    ("apiserver.health-nonblocking", D): (
        "0 of 10 requests succeeded during 10.0 s of failing health checks",
        None,
        None,
    ),
    ("apiserver.health-nonblocking", N): (
        "the health check never failed",
        None,
        None,
    ),
    ("apiserver.cache-serves-reads", A): (
        "100% of 300 reads during the fault came from the cache",
        (0.0, 300.0),
        None,
    ),
    ("apiserver.cache-serves-reads", D): (
        "0% of 300 reads during the fault came from the cache",
        (0.0, 300.0),
        None,
    ),
    ("apiserver.cache-serves-reads", N): (
        "the scenario injected no fault",
        None,
        None,
    ),
    ("apiserver.error-classes", A): (
        "5 errors: context 5",
        None,
        None,
    ),
    ("apiserver.error-classes", D): (
        "5 errors: other 5",
        None,
        None,
    ),
    ("apiserver.error-classes", N): (
        "no request failed",
        None,
        None,
    ),
    ("election.slow-path", A): (
        "first slow-path renew 12.0 s after the fault began (claimed: 10-15 s); 1 in all",
        (10.0, 15.0),
        12.0,
    ),
    ("election.slow-path", D): (
        "first slow-path renew 1.0 s after the fault began (claimed: 10-15 s); 1 in all",
        (10.0, 15.0),
        1.0,
    ),
    ("election.slow-path", N): (
        "nothing in this run could show slow-path renew",
        None,
        None,
    ),
    ("election.leadership-loss", A): (
        "first leadership loss 18.0 s after the fault began (claimed: 15-25 s); 1 in all",
        (15.0, 25.0),
        18.0,
    ),
    ("election.leadership-loss", D): (
        "first leadership loss 5.0 s after the fault began (claimed: 15-25 s); 1 in all",
        (15.0, 25.0),
        5.0,
    ),
    ("election.leadership-loss", N): (
        "nothing in this run could show leadership loss",
        None,
        None,
    ),
    ("election.chaos", A): (
        "1 leases had several candidates trying at 15-30 s (up to 2)",
        (15.0, 30.0),
        None,
    ),
    ("election.chaos", D): (
        (
            "no lease had two or more candidates failing to acquire it at 15-30 s (1 failed "
            "attempts in all)"
        ),
        (15.0, 30.0),
        None,
    ),
    ("election.chaos", N): (
        "no leader-elected components ran",
        None,
        None,
    ),
    ("election.stabilization", A): (
        "every lost lease (1) had a leader again by 35.0 s (claimed: 30-45 s)",
        (30.0, 45.0),
        35.0,
    ),
    ("election.stabilization", D): (
        "every lost lease (1) had a leader again by 100.0 s (claimed: 30-45 s)",
        (30.0, 45.0),
        100.0,
    ),
    ("election.stabilization", N): (
        "no leader-elected components ran",
        None,
        None,
    ),
    ("election.single-leader", A): (
        "1 leases, never two leaders of one lease at once",
        None,
        None,
    ),
    ("election.single-leader", D): (
        "1 overlaps of two leaders of one lease, the longest 8.0 s",
        None,
        None,
    ),
    ("election.single-leader", N): (
        "no leader-elected components ran",
        None,
        None,
    ),
    ("workload.ranking", A): (
        (
            "stalled + time to converge: statefulset 270.0 s, deployment 290.0 s, daemonset 310.0"
            " s (claimed: statefulset < deployment < daemonset)"
        ),
        None,
        None,
    ),
    ("workload.ranking", D): (
        (
            "stalled + time to converge: statefulset 310.0 s, deployment 290.0 s, daemonset 270.0"
            " s (claimed: statefulset < deployment < daemonset)"
        ),
        None,
        None,
    ),
    ("workload.ranking", N): (
        "not all three workload controllers ran",
        None,
        None,
    ),
    ("workload.daemonset-ops", A): (
        "etcd writes per reconcile that changed something: deployment 2.0, daemonset 5.0",
        None,
        None,
    ),
    ("workload.daemonset-ops", D): (
        "etcd writes per reconcile that changed something: deployment 2.0, daemonset 1.0",
        None,
        None,
    ),
    ("workload.daemonset-ops", N): (
        "the daemonset and another controller must write",
        None,
        None,
    ),
    ("partition.majority-continues", A): (
        (
            "100% of 300 requests succeeded during the partition, longest time without a success "
            "1.0 s"
        ),
        (0.0, 300.0),
        None,
    ),
    ("partition.majority-continues", D): (
        (
            "83% of 300 requests succeeded during the partition, longest time without a success "
            "51.0 s"
        ),
        (0.0, 300.0),
        None,
    ),
    ("partition.majority-continues", N): (
        "no minority partition in this scenario",
        None,
        None,
    ),
    ("partition.quorum-loss", A): (
        (
            "0 of 300 writes succeeded without quorum; 0 reads were still served from the watch "
            "cache"
        ),
        (0.0, 300.0),
        None,
    ),
    ("partition.quorum-loss", D): (
        (
            "0 of 300 writes succeeded without quorum; 300 reads were still served from the watch"
            " cache"
        ),
        (0.0, 300.0),
        None,
    ),
    ("partition.quorum-loss", N): (
        "no quorum loss in this scenario",
        None,
        None,
    ),
    ("partition.rejoin", A): (
        "all members healthy 10.0 s after the partition healed",
        (300.0, 360.0),
        310.0,
    ),
    ("partition.rejoin", D): (
        "all members healthy 100.0 s after the partition healed",
        (300.0, 360.0),
        400.0,
    ),
    ("partition.rejoin", N): (
        "no partition in this scenario",
        None,
        None,
    ),
    ("node-failure.detection", A): (
        "leadership lost 15.0 s after the failure, after failed renewals; no connection lost",
        (0.0, 300.0),
        15.0,
    ),
    ("node-failure.detection", D): (
        (
            "no leader lost its lease to renew timeouts; first lost connection 1.0 s after the "
            "failure"
        ),
        (0.0, 300.0),
        None,
    ),
    ("node-failure.detection", N): (
        "no member was killed or paused",
        None,
        None,
    ),
    ("recovery.endpoint-rotation", A): (
        "first lost connection 10.0 s after the fault began (claimed: 0-30 s); 1 in all",
        (0.0, 30.0),
        10.0,
    ),
    ("recovery.endpoint-rotation", D): (
        "first lost connection 35.0 s after the fault began (claimed: 0-30 s); 1 in all",
        (0.0, 30.0),
        35.0,
    ),
    ("recovery.endpoint-rotation", N): (
        "the scenario injected no fault",
        None,
        None,
    ),
    ("recovery.informer-cache", A): (
        "1 informer caches never emptied during the fault; 0 relists",
        (0.0, 300.0),
        None,
    ),
    ("recovery.informer-cache", D): (
        "caches emptied during the fault: pods",
        (0.0, 300.0),
        None,
    ),
    ("recovery.informer-cache", N): (
        "no informer ran",
        None,
        None,
    ),
    ("recovery.workqueue-buffers", A): (
        "queue depth peaked at 5 during the fault, 0 left at the end",
        (0.0, 300.0),
        None,
    ),
    ("recovery.workqueue-buffers", D): (
        "queue depth peaked at 5 during the fault, 5 left at the end",
        (0.0, 300.0),
        None,
    ),
    ("recovery.workqueue-buffers", N): (
        "no workqueue ran",
        None,
        None,
    ),
    ("recovery.latency-normalizes", A): (
        (
            "p99 back within 2x of the baseline 1.0 ms 600.0 s after the fault ended (claimed: "
            "600 s+)"
        ),
        (900.0, INF),
        900.0,
    ),
    ("recovery.latency-normalizes", D): (
        (
            "p99 back within 2x of the baseline 1.0 ms 10.0 s after the fault ended (claimed: 600"
            " s+)"
        ),
        (900.0, INF),
        310.0,
    ),
    ("recovery.latency-normalizes", N): (
        "no fault or no baseline latency",
        None,
        None,
    ),
}


def finding(timeline: Timeline, claim_id: str) -> Finding:
    return {claim.id: found for claim, found in evaluate(timeline)}[claim_id]


def case(claim_id: str, verdict: Verdict) -> Callable[[], Timeline]:
    found = [build for c, v, build in CASES if (c, v) == (claim_id, verdict)]
    assert found, f"test_claims.CASES has no {claim_id} case that {verdict.value}"
    return found[0]


@pytest.mark.parametrize(
    ("claim_id", "verdict"), list(PINNED), ids=[f"{c}-{v.value}" for c, v in PINNED]
)
def test_the_finding_of_each_verdict_case(claim_id: str, verdict: Verdict) -> None:
    measured, window, at = PINNED[claim_id, verdict]
    assert finding(case(claim_id, verdict)(), claim_id) == Finding(verdict, measured, window, at)


def test_every_verdict_case_is_pinned() -> None:
    assert {(c, v) for c, v, _ in CASES} <= set(PINNED)


def at_zero() -> Timeline:
    """A fault that begins as the run does (run time 0: falsy, and still a start)."""
    timeline = Timeline("synthetic", seed=1, time_scale=TimeScale(1.0), duration=1200)
    timeline.faults.append(FaultWindow(0.0, 300.0, FaultKind.LOSS, "etcd-0"))
    return timeline


def quiet(kind: FaultKind = FaultKind.LOSS) -> Timeline:
    """base() without its baseline requests."""
    timeline = base(kind)
    timeline.requests = []
    return timeline


# Branches and edges no verdict case reaches: claim, timeline, the whole finding.
BRANCHES: list[tuple[str, Callable[[], Timeline], Finding]] = [
    ("phase.medium.re-election", lambda: lead(base(), (0, "a", True)),
     Finding(D, "no leader lost its lease, so nothing was re-elected")),
    ("phase.medium.re-election", lambda: lead(base(), (0, "a", True), (120, "a", False)),
     Finding(D, "leases were lost and no new leader was elected", (60.0, 300.0))),
    ("phase.medium.reconciliation",
     lambda: gauge(base(), "progress/deployment", (50, 1), (150, 0.5)),
     Finding(D, "not converged by the end of the run: deployment", (420.0, 900.0))),
    ("election.stabilization", lambda: lead(base(), (0, "a", True)),
     Finding(D, "no lease changed hands, nothing had to stabilise")),
    ("recovery.latency-normalizes", lambda: reqs(base(), 400, 1100, latency=0.5),
     Finding(D, "latency had not returned to baseline by the end", (900.0, INF))),
    ("recovery.latency-normalizes", base,
     Finding(N, "no apiserver requests after the fault")),
    ("partition.rejoin",
     lambda: probe(base(FaultKind.PARTITION_MINORITY), (410, True), (420, False), who="etcd-0"),
     Finding(D, "etcd-0 was not healthy for good after the heal", (300.0, 360.0))),
    ("partition.rejoin", lambda: base(FaultKind.PARTITION_MINORITY),
     Finding(N, "member health was not sampled")),
    ("partition.majority-continues", lambda: base(FaultKind.PARTITION_MINORITY),
     Finding(N, "no apiserver requests during the partition")),
    ("partition.quorum-loss", lambda: reqs(base(FaultKind.PARTITION_MAJORITY), 100, 400),
     Finding(N, "no apiserver writes during the quorum loss")),
    ("workload.ranking",
     lambda: gauge(progress(progress(base(), "statefulset", 410), "deployment", 420),
                   "progress/daemonset", (50, 1), (150, 0.5)),
     Finding(A, "stalled + time to converge: statefulset 270.0 s, deployment 290.0 s, "
                "daemonset never converged (claimed: statefulset < deployment < daemonset)")),
    ("phase.short.latency", base,
     Finding(N, "no apiserver requests before the fault or at 10-60 s")),
    ("apiserver.health-nonblocking",
     lambda: probe(base(), (110, False), (120, True), who="etcd-0"),
     Finding(N, "the health check never failed")),
    ("recovery.informer-cache",
     lambda: ev(ev(gauge(base(), "informer_cache/pods", (50, 10), (200, 10)),
                   50, EventKind.RELIST), 150, EventKind.RELIST),
     Finding(A, "1 informer caches never emptied during the fault; 1 relists", (0.0, 300.0))),
    ("recovery.workqueue-buffers",
     lambda: gauge(base(), "workqueue/deployment", (50, 0), (200, 0)),
     Finding(D, "work queues stayed empty during the fault", (0.0, 300.0))),
    ("apiserver.cache-serves-reads", base,
     Finding(N, "no successful apiserver reads during the fault")),
    ("node-failure.detection",
     lambda: ev(ev(lead(base(FaultKind.KILL), (0, "a", True), (115, "a", False)),
                   105, EventKind.RENEW_FAILED, "a", "kcm"), 102, LOST, detail=LEFT),
     Finding(A, "leadership lost 15.0 s after the failure, after failed renewals; "
                "first lost connection 2.0 s after the failure", (0.0, 300.0), 15.0)),
    ("apiserver.error-classes",
     lambda: reqs(reqs(base(), 105, 107, error=ErrorClass.CONTEXT),
                  110, 111, error=ErrorClass.CLUSTER),
     Finding(A, "3 errors: context 2, cluster 1")),
    ("workload.daemonset-ops",
     lambda: reconciles(reconciles(base(), "daemonset", 5), "deployment", 0),
     Finding(N, "the daemonset and another controller must write")),
    # A fault at run time 0.
    ("phase.immediate.client-errors",
     lambda: reqs(at_zero(), 0.5, 1.5, error=ErrorClass.CONTEXT),
     Finding(A, "first etcd client error 0.5 s after the fault began (claimed: 0-10 s); "
                "1 in all", (0, 10), 0.5)),
    ("phase.short.latency", lambda: reqs(reqs(at_zero(), 0.5, 1.5), 10, 60, latency=0.5),
     Finding(N, "no apiserver requests before the fault or at 10-60 s")),
    ("phase.medium.re-election",
     lambda: lead(at_zero(), (0.5, "a", True), (20, "a", False), (100, "b", True)),
     Finding(A, "2 acquisitions after the fault began, the last 100.0 s in (claimed: 60-300 s)",
             (60.0, 300.0), 100.0)),
    ("election.stabilization",
     lambda: lead(at_zero(), (0, "a", True), (0.5, "a", False), (40, "b", True)),
     Finding(A, "every lost lease (1) had a leader again by 40.0 s (claimed: 30-45 s)",
             (30.0, 45.0), 40.0)),
    ("recovery.informer-cache",
     lambda: gauge(at_zero(), "informer_cache/pods", (0, 10), (0.5, 0), (200, 10)),
     Finding(D, "caches emptied during the fault: pods", (0.0, 300.0))),
    # What happened before the fault is no sign of it.
    ("phase.medium.re-election",
     lambda: lead(base(), (0, "a", True), (50, "a", False), (60, "b", True)),
     Finding(D, "no leader lost its lease, so nothing was re-elected")),
    ("phase.immediate.client-errors", lambda: ev(base(), 105, EventKind.KEEPALIVE_FAILURE),
     Finding(A, "first etcd client error 5.0 s after the fault began (claimed: 0-10 s); "
                "1 in all", (0, 10), 5.0)),
    # A baseline of instant answers: any latency is infinitely more; and the
    # baseline ends where the fault begins.
    ("phase.short.latency",
     lambda: reqs(reqs(quiet(), 0, 100, latency=0.0), 110, 160, latency=0.5),
     Finding(A, "apiserver p99 0.0 ms before the fault, 500.0 ms at 10-60 s "
                "(infx; 'dramatic' taken as >= 10x)", (10.0, 60.0))),
    ("apiserver.latency-continues",
     lambda: reqs(reqs(quiet(), 0, 100, latency=0.0), 120, 130, latency=0.01),
     Finding(A, "at 20-30 s 100% of 10 requests succeeded, p99 10.0 ms vs 0.0 ms "
                "before the fault (infx)", (20.0, 30.0))),
    ("apiserver.latency-continues",
     lambda: reqs(reqs(base(), 0, 100, latency=0.0), 120, 130, latency=0.0),
     Finding(D, "at 20-30 s 100% of 10 requests succeeded, p99 0.0 ms vs 1.0 ms "
                "before the fault (0.0x)", (20.0, 30.0))),
    ("phase.short.latency",
     lambda: reqs(reqs(reqs(quiet(), 95, 100), 100, 101, latency=1.0), 110, 160, latency=0.5),
     Finding(A, "apiserver p99 1.0 ms before the fault, 500.0 ms at 10-60 s "
                "(500.0x; 'dramatic' taken as >= 10x)", (10.0, 60.0))),
    # Ties are no ranking.
    ("workload.ranking",
     lambda: progress(progress(progress(base(), "statefulset", 420), "deployment", 420),
                      "daemonset", 430),
     Finding(D, "stalled + time to converge: statefulset 290.0 s, deployment 290.0 s, "
                "daemonset 310.0 s (claimed: statefulset < deployment < daemonset)")),
    ("workload.ranking",
     lambda: progress(progress(progress(base(), "statefulset", 410), "deployment", 420),
                      "daemonset", 420),
     Finding(D, "stalled + time to converge: statefulset 270.0 s, deployment 290.0 s, "
                "daemonset 290.0 s (claimed: statefulset < deployment < daemonset)")),
    ("phase.medium.reconciliation",
     lambda: gauge(gauge(base(), "progress/deployment", (50, 1), (150, 0.5)),
                   "progress/daemonset", (50, 1), (150, 0.5)),
     Finding(D, "not converged by the end of the run: deployment, daemonset", (420.0, 900.0))),
    # Done before the fault ended, or never undone: 0 s to converge.
    ("phase.medium.reconciliation",
     lambda: gauge(progress(base(), "deployment", 600), "progress/statefulset",
                   (50, 1), (150, 0.5), (300, 1), (1100, 1)),
     Finding(A, "converged after the fault ended: statefulset 0.0 s, deployment 200.0 s "
                "(claimed: 120-600 s)", (420.0, 900.0), 500.0)),
    ("phase.medium.reconciliation",
     lambda: gauge(base(), "progress/deployment", (50, 1), (1100, 1)),
     Finding(D, "converged after the fault ended: deployment 0.0 s (claimed: 120-600 s)",
             (420.0, 900.0), 300.0)),
    # At the fault's first moment: a loss counts, an acquisition is not a re-election.
    ("phase.medium.re-election",
     lambda: lead(base(), (0, "a", True), (100, "a", False), (100, "b", True)),
     Finding(D, "leases were lost and no new leader was elected", (60.0, 300.0))),
    ("election.stabilization",
     lambda: lead(base(), (0, "a", True), (100, "a", False), (100, "b", True)),
     Finding(D, "every lost lease (1) had a leader again by 0.0 s (claimed: 30-45 s)",
             (30.0, 45.0), 0.0)),
    # A lease first led after the fault was never lost, and does not date the others.
    ("election.stabilization",
     lambda: lead(lead(base(), (0, "a", True), (118, "a", False), (135, "b", True)),
                  (150, "c", True), lease="scheduler"),
     Finding(A, "every lost lease (1) had a leader again by 35.0 s (claimed: 30-45 s)",
             (30.0, 45.0), 35.0)),
    ("election.chaos",
     lambda: ev(ev(lead(base(), (0, "a", True)), 120, EventKind.ACQUIRE_FAILED, "b", "kcm"),
                121, EventKind.ACQUIRE_FAILED, "c", "scheduler"),
     Finding(D, "no lease had two or more candidates failing to acquire it at 15-30 s "
                "(2 failed attempts in all)", (15.0, 30.0))),
    # Each apiserver's failing spans, up to (not at) the probe that passed; other
    # components' probes are not the apiserver's check.
    ("apiserver.health-nonblocking",
     lambda: reqs(probe(probe(base(), (110, False), (120, True)),
                        (200, False), (210, True), who="apiserver-1"),
                  110, 121, error=ErrorClass.CLUSTER),
     Finding(D, "0 of 10 requests succeeded during 20.0 s of failing health checks")),
    ("apiserver.health-nonblocking",
     lambda: reqs(probe(probe(base(), (110, False), (120, True)), (105, True), who="aggregator"),
                  110, 120),
     Finding(A, "10 of 10 requests succeeded during 10.0 s of failing health checks")),
    # A partition's window ends before its end, and the wait for the first success counts.
    ("partition.majority-continues",
     lambda: reqs(reqs(base(FaultKind.PARTITION_MINORITY), 106, 400), 400, 420,
                  error=ErrorClass.CLUSTER),
     Finding(D, "100% of 294 requests succeeded during the partition, longest time without "
                "a success 6.0 s", (0.0, 300.0))),
    ("partition.quorum-loss",
     lambda: reqs(reqs(reqs(base(FaultKind.PARTITION_MAJORITY), 100, 400, op="put",
                            error=ErrorClass.CLUSTER), 400, 401, op="put"), 150, 160),
     Finding(A, "0 of 300 writes succeeded without quorum; 0 reads were still served from "
                "the watch cache", (0.0, 300.0))),
    ("partition.rejoin",
     lambda: probe(base(FaultKind.PARTITION_MINORITY), (50, True), (150, False), (400, True),
                   who="etcd-0"),
     Finding(A, "all members healthy 0.0 s after the partition healed", (300.0, 360.0), 300.0)),
    # A lost lease with no failed renewal before it is not detection by renew timeouts.
    ("node-failure.detection",
     lambda: lead(base(FaultKind.KILL), (0, "a", True), (115, "a", False)),
     Finding(D, "no leader lost its lease to renew timeouts; no connection lost", (0.0, 300.0))),
    ("node-failure.detection",
     lambda: ev(ev(lead(base(FaultKind.KILL), (0, "a", True), (100, "a", False)),
                   100, EventKind.RENEW_FAILED, "a", "kcm"), 100, LOST, detail=LEFT),
     Finding(A, "leadership lost 0.0 s after the failure, after failed renewals; "
                "first lost connection 0.0 s after the failure", (0.0, 300.0), 0.0)),
    ("recovery.informer-cache",
     lambda: gauge(gauge(base(), "informer_cache/pods", (50, 10), (200, 0)),
                   "informer_cache/nodes", (50, 3), (250, 0)),
     Finding(D, "caches emptied during the fault: nodes, pods", (0.0, 300.0))),
    ("recovery.workqueue-buffers",
     lambda: gauge(base(), "workqueue/deployment", (50, 3), (500, 0)),
     Finding(D, "work queues stayed empty during the fault", (0.0, 300.0))),
    ("recovery.latency-normalizes", lambda: reqs(quiet(), 400, 1100),
     Finding(N, "no fault or no baseline latency")),
    ("recovery.latency-normalizes", lambda: reqs(base(), 400, 401),
     Finding(D, "latency had not returned to baseline by the end", (900.0, INF))),
    # Normal at exactly 2x; a spike restarts the count, a quiet stretch does not.
    ("recovery.latency-normalizes",
     lambda: reqs(reqs(reqs(reqs(base(), 400, 700, latency=0.002), 700, 705, latency=0.5),
                       705, 800, latency=0.002), 900, 1100),
     Finding(D, "p99 back within 2x of the baseline 1.0 ms 305.0 s after the fault ended "
                "(claimed: 600 s+)", (900.0, INF), 605.0)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("claim_id", "build", "expected"),
    BRANCHES,
    ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(BRANCHES)],
)
def test_the_finding_of_each_other_branch(
    claim_id: str, build: Callable[[], Timeline], expected: Finding
) -> None:
    assert finding(build(), claim_id) == expected


def test_a_claim_names_a_plot_of_the_report() -> None:
    with pytest.raises(ValueError, match=r"claim x: plot must be one of latency, requests, .*"):
        Claim("x", "s", "text", single_leader, "pie chart")


@pytest.mark.parametrize(("window", "x", "verdict"), [((5, 8), 6, A), ((5, 8), 9, D)])
def test_rotation_evaluates_lost_connections_in_its_window(
    window: tuple[float, float], x: float, verdict: Verdict
) -> None:
    # The claims table holds rotation's evaluations made at import; this one is made here.
    found = rotation(window)(ev(base(), 100 + x, LOST, detail=LEFT))
    assert found == Finding(
        verdict,
        f"first lost connection {x:.1f} s after the fault began "
        f"(claimed: {window[0]}-{window[1]} s); 1 in all",
        window,
        x,
    )
    assert rotation(window)(base()).measured == "no lost connection in 300.0 s of fault " + (
        f"(claimed: {window[0]}-{window[1]} s)"
    )
    assert rotation(window)(base(kind=None)).verdict is N
    # Only the apiserver's connections rotate.
    other = ev(base(), 100 + x, LOST, "kcm", "m0:2379 IDLE kcm")
    assert rotation(window)(other).measured.startswith("no lost connection")


def test_connections_left_are_an_apiserver_transport_leaving_ready() -> None:
    timeline = base()
    for t, who, kind, detail in [
        (110, "apiserver-0", LOST, "m0:2379 IDLE apiserver-0"),
        (111, "apiserver-1", LOST, "m1:2379 TRANSIENT_FAILURE apiserver-1"),
        (112, "apiserver-0", LOST, "m0:2379 READY apiserver-0"),
        (113, "apiserver-0", LOST, "m0:2379 CONNECTING apiserver-0"),
        (114, "kcm", LOST, "m0:2379 IDLE kcm"),
        (115, "apiserver-0", EventKind.RELIST, "m0:2379 IDLE apiserver-0"),
    ]:
        ev(timeline, t, kind, who, detail)
    assert connections_left(timeline, "apiserver") == [110, 111]
    assert connections_left(timeline) == [110, 111, 114]


def test_a_stall_is_pending_work_with_no_recent_success_of_that_controller() -> None:
    limit = STALL_AFTER
    timeline = gauge(
        base(), "progress/deployment",
        (100, 1), (110, 0.5), (120, 0.5), (130, 1), (140, 0.5), (150, 0.5), (160, 1),
    )  # fmt: skip
    # No success at all: each unfinished sample starts or extends a stall.
    assert stall_intervals(timeline, "deployment") == [(110, 130), (140, 160)]
    # Successes of another controller, or failed ones, change nothing.
    timeline.reconciles += [
        Reconcile(109, "daemonset", "k", 0.01, 1, True),
        Reconcile(109, "deployment", "k", 0.01, 1, False),
    ]
    assert stall_intervals(timeline, "deployment") == [(110, 130), (140, 160)]
    # A success less than STALL_AFTER before a sample (or at it) is progress there;
    # one exactly STALL_AFTER before is not.
    timeline.reconciles += [
        Reconcile(110 - limit + 0.5, "deployment", "k", 0.01, 1, True),
        Reconcile(140, "deployment", "k", 0.01, 1, True),
        Reconcile(150 - limit, "deployment", "k", 0.01, 1, True),
    ]
    assert stall_intervals(timeline, "deployment") == [(120, 130), (150, 160)]
