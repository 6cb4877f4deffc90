"""One run's sweep figures, from a synthetic timeline at time scale 0.5."""

from __future__ import annotations

from etcdlab.common.timeline import (
    ErrorClass,
    FaultKind,
    FaultWindow,
    Health,
    LeaderChange,
    Request,
    Timeline,
)
from etcdlab.common.timescale import TimeScale
from etcdlab.sweep.metrics import METRICS, run_metrics, window

SCALE = 0.5
START = 10.0  # run clock: the warm-up took 10 s
DURATION = 60.0  # unscaled: the window is 30 s of run clock


def timeline() -> Timeline:
    t = Timeline("synthetic", seed=0, time_scale=TimeScale(SCALE), duration=45.0)
    t.faults.append(FaultWindow(START, START + 30, FaultKind.LOSS, "etcd-0"))
    # livez: fails twice in the window (and once before it, not counted).
    for at, healthy in [(5, False), (6, True), (12, False), (13, True), (20, False), (22, True)]:
        t.health.append(Health(float(at), "apiserver-0", healthy))
    # readyz: fails once, stays down past the window's end.
    for at, healthy in [(11, True), (30, False), (44, True)]:
        t.health.append(Health(float(at), "apiserver-0/etcd-readiness", healthy))
    t.health.append(Health(15.0, "etcd-0", False))  # a member: not an apiserver check
    # Requests in the window: 99 fast, one slow that failed; one before the window.
    t.requests.append(Request(2.0, "apiserver-0", "get", 9.0))
    for i in range(98):
        t.requests.append(Request(START + 0.1 * i, "apiserver-0", "get", 0.001))
    t.requests.append(Request(20.0, "apiserver-0", "put", 2.0, ErrorClass.CONTEXT))
    t.requests.append(Request(21.0, "apiserver-0", "get", 0.5, source="cache"))
    t.requests.append(Request(21.0, "kcm-0", "get", 0.5))  # not an apiserver's
    t.requests.append(Request(22.0, "apiserver-0", "get", 0.002))
    # kcm: led from 3, lost at 20, a successor from 24 (4 s run clock = 8 s unscaled).
    # scheduler: first leader only at 12 (taken up late: not a loss).
    for at, lease, who, leading in [
        (3, "kcm", "a", True), (20, "kcm", "a", False), (24, "kcm", "b", True),
        (12, "sched", "a", True),
    ]:  # fmt: skip
        t.leaders.append(LeaderChange(float(at), lease, who, leading))
    return t


def test_the_window_is_the_fault_else_the_runs_last_duration() -> None:
    t = timeline()
    assert window(t, DURATION) == (START, START + 30)
    t.faults.clear()
    assert window(t, DURATION) == (15.0, 45.0)


def test_figures_are_over_the_window_per_hour_and_unscaled() -> None:
    figures = run_metrics(timeline(), DURATION)
    assert set(figures) == {m.name for m in METRICS} | {"overlapping_leaders"}
    per_hour = 3600 / DURATION
    assert figures["lease_losses_per_hour"] == 1 * per_hour
    assert figures["livez_failures_per_hour"] == 2 * per_hour
    assert figures["readyz_failures_per_hour"] == 1 * per_hour
    # 100 etcd requests in the window: the 99th slowest took 2 ms, 4 ms unscaled.
    assert figures["p99_seconds"] == 0.004
    assert figures["error_rate"] == 0.01
    # kcm: 4 s without a leader (8 unscaled); sched: none once it had one.
    assert figures["failover_seconds"] == 8.0
    assert figures["leaderless_seconds_per_hour"] == 8.0 / 2 * per_hour
    assert figures["overlapping_leaders"] == 0


def test_nothing_measured_is_none() -> None:
    t = Timeline("empty", seed=0, time_scale=TimeScale(1.0), duration=100.0)
    figures = run_metrics(t, 60)
    assert figures["p99_seconds"] is None and figures["error_rate"] is None
    assert figures["failover_seconds"] is None
    assert figures["lease_losses_per_hour"] == 0
