"""The incidents' verdict logic on synthetic timelines, at both edges of each window."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from etcdlab.common.timeline import (
    ErrorClass,
    EventKind,
    FaultKind,
    FaultWindow,
    Request,
    Timeline,
)
from etcdlab.common.timescale import TimeScale
from etcdlab.report import incidents
from etcdlab.report.claims import CLAIMS, Verdict
from etcdlab.scenario.spec import BUILTINS, INCIDENTS
from tests.synthetic import A, D, N, base, ev, gauge, probe, reqs

Builder = Callable[[], Timeline]
ENDPOINTS = ["127.0.0.1:1000", "127.0.0.1:1001", "127.0.0.1:1002"]
DEAD = ENDPOINTS[0]  # base()'s fault is on etcd-0


def writes(
    timeline: Timeline,
    ok: int,
    failed: int,
    error: ErrorClass = ErrorClass.CONTEXT,
    latency: float = 0.001,
) -> Timeline:
    """``ok`` then ``failed`` updates, one a second from 101 s (inside the fault)."""
    reqs(timeline, 101, 101 + ok, op="update")
    return reqs(timeline, 101 + ok, 101 + ok + failed, latency, error, op="update")


def flapping(period: float = 10.0) -> Timeline:
    timeline = base(FaultKind.FLAPPING)
    timeline.settings["faults"] = [{"period": period}]
    return timeline


def leaders(timeline: Timeline, *changes: tuple[float, int]) -> Timeline:
    """Every member follows ``leader`` (-1: none) from ``t`` on."""
    for t, leader in changes:
        for member in range(3):
            gauge(timeline, f"raft_leader/etcd-{member}", (t, leader))
    return timeline


def alternating(count: int) -> Timeline:
    """etcd-0 leads before the fault; then ``count`` new leaders, 1 and 2 in turn."""
    changes = [(50.0, 0), *((101.0 + 10 * k, 1 + k % 2) for k in range(count))]
    return leaders(flapping(), *changes)


def behind(timeline: Timeline, until: float, since: float = 395.0) -> Timeline:
    """apiserver-0's cache behind etcd from ``since`` up to ``until`` (caught up then)."""
    points = [(t, 3.0) for t in range(int(since), int(until))]
    return gauge(timeline, "watch_cache_behind/apiserver-0", *points, (until, 0.0), (600, 0.0))


def with_endpoints(timeline: Timeline) -> Timeline:
    timeline.settings["member_endpoints"] = ENDPOINTS
    return timeline


def dials(*times: float) -> Timeline:
    timeline = with_endpoints(base(FaultKind.PARTITION_MINORITY))
    for t in times:
        ev(timeline, t, EventKind.TRANSPORT_STATE, detail=f"{DEAD} CONNECTING apiserver-0")
    return timeline


def sent(start: float, latency: float = 0.001, member: str = DEAD) -> Timeline:
    """One request to ``member``, started at ``start`` (unscaled seconds)."""
    timeline = with_endpoints(base(FaultKind.PARTITION_MINORITY))
    timeline.requests.append(
        Request(start + latency, "apiserver-0", "get", latency, None, "etcd", member)
    )
    return timeline


def short_fault() -> Timeline:
    timeline = with_endpoints(Timeline("synthetic", 1, TimeScale(1.0), duration=300))
    timeline.faults.append(FaultWindow(100, 140, FaultKind.PARTITION_MINORITY, "etcd-0"))
    return timeline


CASES: list[tuple[str, Verdict, Builder]] = [
    # k8s-72796: a write timed out (one is enough), or none did.
    ("k8s-72796.writes-time-out", A, lambda: writes(base(FaultKind.MTU), 10, 1)),
    ("k8s-72796.writes-time-out", D, lambda: writes(base(FaultKind.MTU), 10, 0)),
    # etcd's own request timeout (UNAVAILABLE after seconds) is one too; a quick refusal is not.
    ("k8s-72796.writes-time-out", A,
     lambda: writes(base(FaultKind.MTU), 10, 1, ErrorClass.CLUSTER, latency=1.0)),
    ("k8s-72796.writes-time-out", D,
     lambda: writes(base(FaultKind.MTU), 10, 1, ErrorClass.CLUSTER, latency=0.99)),
    ("k8s-72796.writes-time-out", N, lambda: reqs(base(FaultKind.MTU), 101, 120)),
    ("k8s-72796.writes-time-out", N, lambda: base(kind=None)),
    # Livez failing just outside the fault, or readiness failing inside, does not count.
    ("k8s-72796.health-passes", A,
     lambda: probe(probe(base(FaultKind.MTU), (99, False), (100, True), (399, True), (400, False)),
                   (200, False), who="apiserver-0/etcd-readiness")),
    ("k8s-72796.health-passes", D, lambda: probe(base(FaultKind.MTU), (100, False), (101, True))),
    ("k8s-72796.health-passes", D, lambda: probe(base(FaultKind.MTU), (399, False))),
    ("k8s-72796.health-passes", N, lambda: probe(base(FaultKind.MTU), (50, True))),
    # Half the writes through is carrying on; less is not.
    ("k8s-72796.carried-on", A, lambda: writes(base(FaultKind.MTU), 50, 50)),
    ("k8s-72796.carried-on", D, lambda: writes(base(FaultKind.MTU), 49, 51)),
    ("k8s-72796.carried-on", N, lambda: base(FaultKind.MTU)),
    # etcd-13665: 30 down phases (300 s, period 10 s): 15 new leaders are "each time".
    ("etcd-13665.elections", A, lambda: alternating(15)),
    ("etcd-13665.elections", D, lambda: alternating(14)),
    # A leaderless gap between two terms of one leader elects no one new.
    ("etcd-13665.elections", D,
     lambda: leaders(flapping(), (50, 0), *((101 + 2.0 * k, -(k % 2)) for k in range(40)))),
    ("etcd-13665.elections", N, lambda: flapping()),
    # etcd-0 lost it twice and won it back once: half; lost once for good: not.
    ("etcd-13665.leadership-returns", A,
     lambda: leaders(flapping(), (50, 0), (110, 1), (120, 0), (130, 2))),
    ("etcd-13665.leadership-returns", D, lambda: leaders(flapping(), (50, 0), (110, 1), (130, 2))),
    ("etcd-13665.leadership-returns", N, lambda: leaders(flapping(), (50, 1), (110, 2), (120, 1))),
    # Leaderless for half of the fault (100-250 of 100-400) is blocked; a second less is not.
    ("etcd-13665.blocked", A, lambda: leaders(flapping(), (50, 0), (100, -1), (250, 1))),
    ("etcd-13665.blocked", D, lambda: leaders(flapping(), (50, 0), (100, -1), (249, 1))),
    # Or half of the writes failing, with a leader throughout.
    ("etcd-13665.blocked", A, lambda: leaders(writes(flapping(), 50, 50), (50, 0))),
    ("etcd-13665.blocked", D, lambda: leaders(writes(flapping(), 51, 49), (50, 0))),
    ("etcd-13665.blocked", N, lambda: flapping()),
    # etcd-8411: behind for 10 s after the heal (at 400) is stale; 9 s is not.
    ("etcd-8411.stale-cache", A, lambda: behind(base(FaultKind.PARTITION_MINORITY), 410)),
    ("etcd-8411.stale-cache", D, lambda: behind(base(FaultKind.PARTITION_MINORITY), 409)),
    # Behind for long, but only while the member was still cut off.
    ("etcd-8411.stale-cache", D,
     lambda: behind(base(FaultKind.PARTITION_MINORITY), 399, since=150)),
    # Still behind when the run ended.
    ("etcd-8411.stale-cache", A,
     lambda: gauge(base(FaultKind.PARTITION_MINORITY), "watch_cache_behind/apiserver-0",
                   (300, 0), (399, 2), (420, 2))),
    ("etcd-8411.stale-cache", N, lambda: base(FaultKind.PARTITION_MINORITY)),
    ("etcd-8411.carried-on", A, lambda: writes(base(FaultKind.PARTITION_MINORITY), 50, 50)),
    ("etcd-8411.carried-on", D, lambda: writes(base(FaultKind.PARTITION_MINORITY), 49, 51)),
    # k8s-128812: still dialling in the last quarter of the fault (from 325 s), or not.
    ("k8s-128812.keeps-dialing", A, lambda: dials(110, 200, 325)),
    ("k8s-128812.keeps-dialing", D, lambda: dials(110, 200, 324)),
    ("k8s-128812.keeps-dialing", D, lambda: dials()),
    ("k8s-128812.keeps-dialing", N, lambda: base(FaultKind.PARTITION_MINORITY)),
    ("k8s-128812.keepalive", A,
     lambda: ev(dials(), 140, EventKind.KEEPALIVE_FAILURE, detail=f"{DEAD} apiserver-0")),
    # A keepalive failure on another member's connection, or after the heal, is not it.
    ("k8s-128812.keepalive", D,
     lambda: ev(ev(dials(), 140, EventKind.KEEPALIVE_FAILURE, detail=f"{ENDPOINTS[1]} apiserver-0"),
                400, EventKind.KEEPALIVE_FAILURE, detail=f"{DEAD} apiserver-0")),
    ("k8s-128812.keepalive", N, lambda: base(FaultKind.PARTITION_MINORITY)),
    # A request sent to it 45 s after it went down (at 145 s), or just before that.
    ("k8s-128812.keeps-sending", A, lambda: sent(145)),
    ("k8s-128812.keeps-sending", D, lambda: sent(144.9, latency=1.0)),
    ("k8s-128812.keeps-sending", D, lambda: sent(200, member=ENDPOINTS[1])),
    ("k8s-128812.keeps-sending", N, short_fault),
]  # fmt: skip

BY_ID = {claim.id: claim for incident in incidents.INCIDENTS.values() for claim in incident.claims}


@pytest.mark.parametrize(("claim_id", "verdict", "build"), CASES)
def test_incident_verdicts(claim_id: str, verdict: Verdict, build: Builder) -> None:
    finding = BY_ID[claim_id].evaluate(build())
    assert finding.verdict is verdict, finding.measured
    assert finding.measured


def test_every_incident_claim_reaches_each_verdict_it_can() -> None:
    reached = {(claim_id, verdict) for claim_id, verdict, _ in CASES}
    for claim_id in BY_ID:
        assert {(claim_id, A), (claim_id, D)} <= reached, claim_id


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_windows_are_unscaled(scale: float) -> None:
    timeline = base(FaultKind.PARTITION_MINORITY, scale=scale)
    points = [(float(t), 3.0) for t in range(395, 411)]
    gauge(timeline, "watch_cache_behind/apiserver-0", *points, (411, 0.0))
    finding = BY_ID["etcd-8411.stale-cache"].evaluate(timeline)
    assert finding.verdict is A and "11.0 s" in finding.measured


def test_incident_scenarios_are_judged_on_both_sets_of_claims() -> None:
    assert {s.name for s in INCIDENTS} == set(incidents.INCIDENTS)
    assert all(name in BUILTINS for name in incidents.INCIDENTS)
    for name, incident in incidents.INCIDENTS.items():
        assert incidents.claims_for(name) == CLAIMS + incident.claims
    assert incidents.claims_for("packet-loss-30") == CLAIMS
    timeline = base(FaultKind.MTU)
    timeline.scenario = "k8s-72796"
    ids = [claim.id for claim, _ in incidents.evaluate(timeline)]
    assert ids[-3:] == [c.id for c in incidents.INCIDENTS["k8s-72796"].claims]


def test_agreed_leaders_need_a_majority() -> None:
    timeline = base(FaultKind.FLAPPING)
    gauge(timeline, "raft_leader/etcd-0", (10, 0), (30, 0))
    gauge(timeline, "raft_leader/etcd-1", (11, 0), (31, 2))
    gauge(timeline, "raft_leader/etcd-2", (12, 0), (32, 2))
    # One of three following etcd-0 is no majority; two are, until the second moves.
    assert incidents.agreed_leaders(timeline) == [(10, None), (11, 0), (32, 2)]
    assert incidents.leaderless_share(timeline, 10, 32) == pytest.approx(1 / 22)
    assert incidents.leaderless_share(timeline, 11, 32) == 0


def cut_off_while(revisions: int, snapshots: int | None) -> Timeline:
    """etcd-0 cut off (100-400 s) while etcd's revision went up by ``revisions``; the
    snapshots it received, as the run sampled them at its end (None: not sampled)."""
    timeline = behind(base(FaultKind.PARTITION_MINORITY), 405)
    gauge(timeline, "etcd_revision", (100, 1000), (400, 1000 + revisions))
    if snapshots is not None:
        gauge(timeline, "snapshots_received/etcd-0", (590, snapshots))
        gauge(timeline, "snapshots_received/etcd-1", (590, 7))  # not the member cut off
    return timeline


@pytest.mark.parametrize(
    ("revisions", "snapshots", "said"),
    [
        (6200, 1, "it missed 6200 revisions while cut off, and the leader sent it 1 snapshot"),
        # Many revisions are not a snapshot: the leader's log may still hold them.
        (6200, 0, "it missed 6200 revisions while cut off, and no snapshot was sent: it "
                  "caught up from the leader's log"),
        # Without the counters, the revisions say what they can.
        (224, None, "it missed 224 revisions while cut off, fewer than the 5000 raft entries"),
        (6200, None, "it missed 6200 revisions while cut off (whether the leader sent it a "
                     "snapshot was not sampled)"),
    ],
)  # fmt: skip
def test_the_stale_cache_claim_says_how_the_member_caught_up(
    revisions: int, snapshots: int | None, said: str
) -> None:
    finding = BY_ID["etcd-8411.stale-cache"].evaluate(cut_off_while(revisions, snapshots))
    assert finding.verdict is D and said in finding.measured, finding.measured
