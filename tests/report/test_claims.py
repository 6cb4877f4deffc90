"""The verdict logic on synthetic timelines: every claim reaches every verdict."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from etcdlab.common.timeline import ErrorClass, EventKind, FaultKind, Timeline
from etcdlab.report.claims import CLAIMS, Verdict, evaluate
from tests.synthetic import (
    A,
    D,
    N,
    base,
    ev,
    gauge,
    lead,
    partition_requests,
    probe,
    progress,
    reconciles,
    reqs,
)

Builder = Callable[[], Timeline]
# An apiserver's connection to a member lost: the balancer rotates past it.
LOST, LEFT = EventKind.TRANSPORT_STATE, "127.0.0.1:2379 IDLE apiserver-0"
CASES: list[tuple[str, Verdict, Builder]] = [
    ("phase.immediate.client-errors", A, lambda: reqs(base(), 105, 106, error=ErrorClass.CONTEXT)),
    ("phase.immediate.client-errors", D, lambda: reqs(base(), 150, 151, error=ErrorClass.CONTEXT)),
    ("phase.immediate.client-errors", N, lambda: base(kind=None)),
    ("phase.immediate.health-degraded", A, lambda: probe(base(), (99, True), (105, False))),
    ("phase.immediate.health-degraded", D, lambda: probe(base(), (99, True), (130, False))),
    ("phase.immediate.health-degraded", N, lambda: base()),
    ("phase.immediate.renew-failures", A,
     lambda: ev(lead(base(), (0, "a", True)), 103, EventKind.RENEW_FAILED, "a", "kcm")),
    ("phase.immediate.renew-failures", D,
     lambda: ev(lead(base(), (0, "a", True)), 50, EventKind.RENEW_FAILED, "a", "kcm")),
    ("phase.immediate.renew-failures", N, lambda: base()),
    ("phase.short.leader-transitions", A, lambda: lead(base(), (0, "a", True), (120, "a", False))),
    ("phase.short.leader-transitions", D, lambda: lead(base(), (0, "a", True), (101, "a", False))),
    ("phase.short.leader-transitions", N, lambda: base()),
    ("phase.short.latency", A, lambda: reqs(base(), 110, 160, latency=0.5)),
    ("phase.short.latency", D, lambda: reqs(base(), 110, 160, latency=0.002)),
    ("phase.short.latency", N, lambda: base(kind=None)),
    ("phase.short.reconcile-pauses", A,
     lambda: gauge(base(), "progress/deployment", (100, 1), (120, 0.5), (130, 0.5), (140, 1))),
    ("phase.short.reconcile-pauses", D,
     lambda: gauge(base(), "progress/deployment", (100, 1), (102, 0.5), (130, 0.5), (140, 1))),
    ("phase.short.reconcile-pauses", N, lambda: base()),
    ("phase.medium.re-election", A,
     lambda: lead(base(), (0, "a", True), (120, "a", False), (200, "b", True))),
    ("phase.medium.re-election", D,
     lambda: lead(base(), (0, "a", True), (120, "a", False), (150, "b", True))),
    ("phase.medium.re-election", N, lambda: base()),
    ("phase.medium.reconciliation", A, lambda: progress(base(), "deployment", 600)),
    ("phase.medium.reconciliation", D, lambda: progress(base(), "deployment", 410)),
    ("phase.medium.reconciliation", N, lambda: base()),
    ("apiserver.keepalive-detection", A, lambda: ev(base(), 105, EventKind.KEEPALIVE_FAILURE)),
    ("apiserver.keepalive-detection", D, lambda: base()),
    ("apiserver.keepalive-detection", N, lambda: base(kind=None)),
    ("apiserver.health-failures", A, lambda: probe(base(), (99, True), (112, False))),
    ("apiserver.health-failures", D, lambda: probe(base(), (99, True), (105, False))),
    ("apiserver.health-failures", N, lambda: base()),
    ("apiserver.latency-continues", A, lambda: reqs(base(), 120, 130, latency=0.01)),
    ("apiserver.latency-continues", D,
     lambda: reqs(base(), 120, 130, latency=0.01, error=ErrorClass.CLUSTER)),
    ("apiserver.latency-continues", N, lambda: base()),
    ("apiserver.endpoint-rotation", A, lambda: ev(base(), 135, LOST, detail=LEFT)),
    ("apiserver.endpoint-rotation", D, lambda: ev(base(), 101, LOST, detail=LEFT)),
    ("apiserver.endpoint-rotation", N, lambda: base(kind=None)),
    ("apiserver.health-nonblocking", A,
     lambda: reqs(probe(base(), (110, False), (120, True)), 110, 120)),
    ("apiserver.health-nonblocking", D,
     lambda: reqs(probe(base(), (110, False), (120, True)), 110, 120, error=ErrorClass.CLUSTER)),
    ("apiserver.health-nonblocking", N, lambda: probe(base(), (110, True), (120, True))),
    ("apiserver.cache-serves-reads", A, lambda: reqs(base(), 100, 400, source="cache")),
    ("apiserver.cache-serves-reads", D, lambda: reqs(base(), 100, 400)),
    ("apiserver.cache-serves-reads", N, lambda: base(kind=None)),
    ("apiserver.error-classes", A, lambda: reqs(base(), 105, 110, error=ErrorClass.CONTEXT)),
    ("apiserver.error-classes", D, lambda: reqs(base(), 105, 110, error=ErrorClass.OTHER)),
    ("apiserver.error-classes", N, lambda: base()),
    ("election.slow-path", A,
     lambda: ev(lead(base(), (0, "a", True)), 112, EventKind.SLOW_PATH, "a", "kcm")),
    ("election.slow-path", D,
     lambda: ev(lead(base(), (0, "a", True)), 101, EventKind.SLOW_PATH, "a", "kcm")),
    ("election.slow-path", N, lambda: base()),
    ("election.leadership-loss", A, lambda: lead(base(), (0, "a", True), (118, "a", False))),
    ("election.leadership-loss", D, lambda: lead(base(), (0, "a", True), (105, "a", False))),
    ("election.leadership-loss", N, lambda: base()),
    ("election.chaos", A,
     lambda: ev(ev(lead(base(), (0, "a", True)), 120, EventKind.ACQUIRE_FAILED, "b", "kcm"),
                121, EventKind.ACQUIRE_FAILED, "c", "kcm")),
    ("election.chaos", D,
     lambda: ev(lead(base(), (0, "a", True)), 120, EventKind.ACQUIRE_FAILED, "b", "kcm")),
    ("election.chaos", N, lambda: base()),
    ("election.stabilization", A,
     lambda: lead(base(), (0, "a", True), (118, "a", False), (135, "b", True))),
    ("election.stabilization", D,
     lambda: lead(base(), (0, "a", True), (118, "a", False), (200, "b", True))),
    ("election.stabilization", N, lambda: base()),
    ("election.single-leader", A,
     lambda: lead(base(), (0, "a", True), (118, "a", False), (135, "b", True))),
    ("election.single-leader", D,
     lambda: lead(base(), (0, "a", True), (118, "a", False), (110, "b", True))),
    ("election.single-leader", N, lambda: base()),
    ("workload.ranking", A,
     lambda: progress(progress(progress(base(), "statefulset", 410), "deployment", 420),
                      "daemonset", 430)),
    ("workload.ranking", D,
     lambda: progress(progress(progress(base(), "statefulset", 430), "deployment", 420),
                      "daemonset", 410)),
    ("workload.ranking", N,
     lambda: progress(progress(base(), "statefulset", 410), "daemonset", 430)),
    ("workload.daemonset-ops", A,
     lambda: reconciles(reconciles(base(), "daemonset", 5), "deployment", 2)),
    ("workload.daemonset-ops", D,
     lambda: reconciles(reconciles(base(), "daemonset", 1), "deployment", 2)),
    ("workload.daemonset-ops", N, lambda: reconciles(base(), "daemonset", 5)),
    ("partition.majority-continues", A, lambda: partition_requests(FaultKind.PARTITION_MINORITY)),
    ("partition.majority-continues", D,
     lambda: partition_requests(FaultKind.PARTITION_MINORITY, error_from=150)),
    ("partition.majority-continues", N, lambda: partition_requests(FaultKind.LOSS)),
    ("partition.quorum-loss", A,
     lambda: reqs(base(FaultKind.PARTITION_MAJORITY), 100, 400, op="put",
                  error=ErrorClass.CLUSTER)),
    ("partition.quorum-loss", D,
     lambda: reqs(reqs(base(FaultKind.PARTITION_MAJORITY), 100, 400, op="put",
                       error=ErrorClass.CLUSTER), 100, 400, source="cache")),
    ("partition.quorum-loss", N, lambda: reqs(base(), 100, 400, op="put")),
    ("partition.rejoin", A,
     lambda: probe(base(FaultKind.PARTITION_MINORITY), (150, False), (410, True), who="etcd-0")),
    ("partition.rejoin", D,
     lambda: probe(base(FaultKind.PARTITION_MINORITY), (150, False), (500, True), who="etcd-0")),
    ("partition.rejoin", N, lambda: probe(base(), (150, False), (410, True), who="etcd-0")),
    ("node-failure.detection", A,
     lambda: ev(lead(base(FaultKind.KILL), (0, "a", True), (115, "a", False)),
                105, EventKind.RENEW_FAILED, "a", "kcm")),
    ("node-failure.detection", D, lambda: ev(base(FaultKind.KILL), 101, LOST, detail=LEFT)),
    ("node-failure.detection", N, lambda: base()),
    ("recovery.endpoint-rotation", A, lambda: ev(base(), 110, LOST, detail=LEFT)),
    ("recovery.endpoint-rotation", D, lambda: ev(base(), 135, LOST, detail=LEFT)),
    ("recovery.endpoint-rotation", N, lambda: base(kind=None)),
    ("recovery.informer-cache", A,
     lambda: gauge(base(), "informer_cache/pods", (50, 10), (200, 10))),
    ("recovery.informer-cache", D,
     lambda: gauge(base(), "informer_cache/pods", (50, 10), (200, 0))),
    ("recovery.informer-cache", N, lambda: base()),
    ("recovery.workqueue-buffers", A,
     lambda: gauge(base(), "workqueue/deployment", (50, 0), (200, 5), (500, 0))),
    ("recovery.workqueue-buffers", D,
     lambda: gauge(base(), "workqueue/deployment", (50, 0), (200, 5), (500, 5))),
    ("recovery.workqueue-buffers", N, lambda: base()),
    ("recovery.latency-normalizes", A,
     lambda: reqs(reqs(base(), 400, 1000, latency=0.5), 1000, 1100)),
    ("recovery.latency-normalizes", D,
     lambda: reqs(reqs(base(), 400, 410, latency=0.5), 410, 1100)),
    ("recovery.latency-normalizes", N, lambda: base(kind=None)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("claim_id", "expected", "build"), CASES, ids=[f"{c}-{v.value}" for c, v, _ in CASES]
)
def test_verdict(claim_id: str, expected: Verdict, build: Builder) -> None:
    findings = {claim.id: finding for claim, finding in evaluate(build())}
    finding = findings[claim_id]
    assert finding.verdict is expected, finding.measured
    assert finding.measured


def test_every_claim_reaches_every_verdict() -> None:
    covered = {(claim_id, verdict) for claim_id, verdict, _ in CASES}
    missing = [(c.id, v.value) for c in CLAIMS for v in Verdict if (c.id, v) not in covered]
    assert not missing
    assert len({c.id for c in CLAIMS}) == len(CLAIMS), "claim ids must be unique"


@pytest.mark.parametrize("scale", [1.0, 0.1, 0.01])
def test_windows_are_in_unscaled_seconds_whatever_the_time_scale(scale: float) -> None:
    timeline = probe(base(scale=scale), (99, True), (112, False))
    findings = {claim.id: finding for claim, finding in evaluate(timeline)}
    assert findings["apiserver.health-failures"].verdict is A
    assert "12.0 s after the fault began" in findings["apiserver.health-failures"].measured
    assert findings["phase.immediate.health-degraded"].verdict is D


def test_measured_text_carries_the_numbers() -> None:
    findings = {c.id: f for c, f in evaluate(reqs(base(), 110, 160, latency=0.5))}
    assert findings["phase.short.latency"].measured.startswith("apiserver p99 1.0 ms")
    assert "500.0 ms" in findings["phase.short.latency"].measured


def test_overlapping_leaders_are_counted_per_lease() -> None:
    timeline = lead(base(), (0, "a", True), (118, "a", False), (110, "b", True))
    lead(timeline, (0, "c", True), lease="other")
    overlaps = timeline.overlapping_leaders()
    assert [(o[0], o[1], o[2], o[3].start, o[3].end) for o in overlaps] == [
        ("kcm", "a", "b", 110.0, 118.0)
    ]
