"""What each claim's finding says: the measured text, the window and the moment
that decided it, pinned for the timelines of test_claims.py and for the
branches those do not reach.

The report shows these words and numbers to the reader (report.html, the
claims table), so a wrong count, unit, window or wording is a wrong report.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from etcdlab.common.timeline import ErrorClass, EventKind, FaultKind, Timeline
from etcdlab.report.claims import Finding, Verdict, evaluate
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


# Branches no verdict case reaches: claim, timeline, the whole finding.
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
