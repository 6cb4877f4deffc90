"""The report's unscaled figures: the same story at any time scale gives the same numbers."""

from __future__ import annotations

import pytest

from etcdlab.common.timeline import ErrorClass, EventKind, FaultKind, Timeline
from etcdlab.report.figures import figures, healthy_again
from tests.synthetic import base, ev, lead, probe, progress, reqs


def story(scale: float) -> Timeline:
    """A loss fault 100-400 s: errors from 105 s, an apiserver unhealthy 112-150 s,
    a member down until 410 s, one lease lost at 118 s, workloads back at 420 s."""
    timeline = base(FaultKind.LOSS, scale=scale)
    reqs(timeline, 100, 160, latency=0.4)
    reqs(timeline, 105, 115, latency=2.0, error=ErrorClass.CONTEXT)
    reqs(timeline, 120, 125, error=ErrorClass.CLUSTER, op="put")
    reqs(timeline, 400, 500, latency=0.002)
    ev(timeline, 108, EventKind.KEEPALIVE_FAILURE)
    ev(timeline, 130, EventKind.TRANSPORT_STATE, "apiserver-0", "127.0.0.1:1 IDLE leases")
    ev(timeline, 116, EventKind.RENEW_FAILED, "kcm-a", "kcm")
    probe(timeline, (0, True), (112, False), (130, False), (150, True), (500, True))
    probe(timeline, (0, True), (100, False), (405, False), (410, True), who="etcd-0")
    probe(timeline, (0, True), (500, True), who="etcd-1")
    lead(timeline, (0, "a", True), (118, "a", False), (135, "b", True))
    for controller in ("statefulset", "deployment", "daemonset"):
        progress(timeline, controller, 420)
    return timeline


def test_figures_are_unscaled_and_the_same_at_every_scale() -> None:
    real = figures(story(1.0))
    assert real["lease_losses"] == 1 and real["lease_acquisitions"] == 1
    assert real["renew_failures"] == 1 and real["keepalive_failures"] == 1
    assert real["connections_lost"] == 1
    assert real["apiserver_health_failures"] == 1
    assert real["apiserver_unhealthy_seconds"] == pytest.approx(38.0)
    assert real["errors"] == {"context": 10, "cluster": 5, "response": 0, "other": 0}
    assert real["latency"]["before"]["p99"] == pytest.approx(0.001)
    assert real["latency"]["fault"]["max"] == pytest.approx(2.0)
    assert real["latency"]["after"]["requests"] == 100
    assert real["latency"]["event_loop_lag"] == {"p99": None, "max": None}
    assert real["detect_seconds"] == {
        "first": 5.0,
        "error": 5.0,
        "unhealthy": 12.0,
        "connection_lost": 30.0,
        "keepalive_failure": 8.0,
        "renew_failure": 16.0,
        "lease_loss": 18.0,
    }
    assert real["recover_seconds"] == {
        "apiservers_healthy": 0.0,
        "members_healthy": 10.0,
        "workloads_converged": 20.0,
    }
    for scale in (0.5, 0.1):
        scaled = figures(story(scale))
        assert _close(scaled, real), (scale, scaled)


def _close(a: object, b: object) -> bool:
    """Nested equality with floats compared to 1e-6 (pytest.approx does not nest dicts)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, abs=1e-6)
    return a == b


def test_nothing_happened_is_none_not_zero() -> None:
    quiet = base(FaultKind.LOSS)
    result = figures(quiet)
    assert result["lease_losses"] == 0
    assert result["detect_seconds"]["first"] is None
    assert result["recover_seconds"]["members_healthy"] is None  # never sampled


def test_healthy_again_needs_the_last_sample_healthy() -> None:
    timeline = probe(base(FaultKind.LOSS), (400, False), (420, True), (430, False), who="etcd-0")
    assert healthy_again(timeline, "etcd-0", 400) is None
    probe(timeline, (440, True), who="etcd-0")
    assert healthy_again(timeline, "etcd-0", 400) == 40.0
