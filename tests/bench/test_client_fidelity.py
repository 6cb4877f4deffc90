"""The fidelity bench's figures, read from hand-made timelines, and its verdicts."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from etcdlab.bench import client_fidelity as fidelity
from etcdlab.common.timeline import (
    ErrorClass,
    Event,
    EventKind,
    FaultKind,
    FaultWindow,
    Health,
    LeaderChange,
    Request,
    Timeline,
)
from etcdlab.common.timescale import UNSCALED

E0, E1, E2 = "127.0.0.1:1000", "127.0.0.1:1001", "127.0.0.1:1002"


def run() -> Timeline:
    """Member 0 blackholed from 10 s to 70 s of a 100 s run."""
    timeline = Timeline("t", 0, UNSCALED, duration=100.0)
    timeline.settings["client_endpoints"] = [E0, E1, E2]
    timeline.faults.append(FaultWindow(10.0, 70.0, FaultKind.PARTITION_MINORITY, "etcd-0"))
    return timeline


def test_requests_are_counted_for_their_apiserver_inside_the_fault() -> None:
    timeline = run()
    add = timeline.requests.append
    add(Request(5.0, "apiserver-0", "create", 0.001, member=E0))  # before the fault
    add(Request(20.0, "apiserver-0", "create", 0.002, member=E1))
    add(Request(21.0, "apiserver-0", "update", 0.004, member=E2))
    add(Request(22.0, "apiserver-0", "delete", 9.0, ErrorClass.CONTEXT, member=E0))
    # A lease candidate <lease>-1 writes through apiserver-1 in the emulated plane.
    add(Request(23.0, "kube-scheduler-1", "txn", 0.003, member=E1))
    add(Request(24.0, "apiserver-1", "get", 0.0, source="cache"))
    result = fidelity.figures(timeline)
    api0, api1 = result["apiservers"]["apiserver-0"], result["apiservers"]["apiserver-1"]
    assert api0["requests"] == 3
    assert api0["latency"] == {"p50": 0.004, "p90": 9.0, "p99": 9.0}
    assert api0["errors"]["context"] == pytest.approx(1 / 3) and api0["errors"]["cluster"] == 0
    # Successes only, by the member's role in the fault.
    assert api0["served"] == {"other-1": 0.5, "other-2": 0.5}
    assert api1["requests"] == 1 and api1["served"] == {"other-1": 1.0}


def test_checks_first_failure_and_failed_records() -> None:
    timeline = run()
    for t, healthy in ((9.0, True), (12.0, True), (14.0, False), (15.0, False), (18.0, True)):
        timeline.health.append(Health(t, "apiserver-0", healthy))
    timeline.health.append(Health(69.0, "apiserver-0/etcd-readiness", False))
    api0 = fidelity.figures(timeline)["apiservers"]["apiserver-0"]
    assert api0["livez"] == {"first_failed": 4.0, "failed": 2.0}
    assert api0["readyz"] == {"first_failed": 59.0, "failed": 1.0}


def test_a_dead_members_connection_closes_on_keepalive_or_leaving_ready() -> None:
    timeline = run()
    add = timeline.events.append
    add(Event(12.0, "apiserver-0", EventKind.TRANSPORT_STATE, f"{E1} IDLE pods"))  # not dead
    add(Event(30.0, "apiserver-0", EventKind.TRANSPORT_STATE, f"{E0} CONNECTING pods"))
    add(Event(50.0, "apiserver-0", EventKind.TRANSPORT_STATE, f"{E0} IDLE pods"))
    add(Event(50.0, "apiserver-0", EventKind.KEEPALIVE_FAILURE, f"{E0} pods"))
    add(Event(41.0, "apiserver-1", EventKind.KEEPALIVE_FAILURE))  # no detail: counts
    msg = f"{E0} TRANSIENT_FAILURE: connection refused kube-scheduler-0"
    add(Event(45.0, "kube-scheduler-0", EventKind.TRANSPORT_STATE, msg))
    result = fidelity.figures(timeline)["apiservers"]
    assert (result["apiserver-0"]["dead_closed"], result["apiserver-0"]["dead_closes"]) == (35, 3)
    assert result["apiserver-1"]["dead_closed"] == 31.0


def test_leader_transitions_and_the_longest_failover() -> None:
    timeline = run()
    for t, who, leading in ((1.0, "kcm-0", True), (30.0, "kcm-0", False), (47.0, "kcm-1", True),
                            (2.0, "sched-0", True), (90.0, "sched-0", False)):  # fmt: skip
        timeline.leaders.append(LeaderChange(t, who.split("-")[0], who, leading))
    leaders = fidelity.figures(timeline)["leaders"]
    # kcm changed hands once (17 s without a leader); sched has none for the last 10 s.
    assert leaders == {"transitions": 1.0, "failover_max": 17.0}


def test_verdicts_allow_25_percent_or_2_for_counts_or_5_points_for_shares() -> None:
    assert fidelity.agrees("apiserver-0.latency.p99", 1.2, 1.0)
    assert not fidelity.agrees("apiserver-0.latency.p99", 1.3, 1.0)
    assert fidelity.agrees("apiserver-0.livez.failed", 3.0, 1.0)  # within 2
    assert not fidelity.agrees("apiserver-0.livez.failed", 4.0, 1.0)
    assert fidelity.agrees("apiserver-0.served.faulted", 0.08, 0.04)  # 5 points
    assert not fidelity.agrees("apiserver-0.errors.context", 0.20, 0.10)
    assert fidelity.agrees("apiserver-0.requests", 10.0, 1000.0) is None  # load, not judged
    assert fidelity.agrees("apiserver-0.dead_closed", None, None) is None
    assert fidelity.agrees("apiserver-0.dead_closed", None, 40.0) is False


def test_the_table_shows_means_spreads_and_verdicts(tmp_path: Path) -> None:
    for side, latencies in (("python", (0.010, 0.030)), ("go", (0.020, 0.020))):
        for n, latency in enumerate(latencies):
            timeline = run()
            timeline.requests.append(Request(20.0, "apiserver-0", "create", latency, member=E1))
            (tmp_path / f"blackhole-{side}-{n}").mkdir()
            data = json.dumps(asdict(timeline))
            (tmp_path / f"blackhole-{side}-{n}" / "timeline.json").write_text(data)
    rows = fidelity.compare(fidelity.collect(tmp_path))
    (p50,) = [r for r in rows if r["figure"] == "apiserver-0.latency.p50"]
    assert p50["python"] == pytest.approx((0.02, 0.01, 0.03)) and p50["agrees"]
    text = fidelity.table(rows)
    assert "| blackhole | apiserver-0.latency.p50 | 20 ms [10 ms to 30 ms] | 20 ms | yes |" in text
    compact = fidelity.compact(rows)
    assert "| blackhole | apiserver-0 | 20 ms [10 ms to 30 ms] / 20 ms |" in compact
    assert "python: other-1 100%; go: other-1 100% |" in compact


def test_the_command_line_rejects_unknown_cases(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        fidelity.main(["--cases", "loss99"])
    assert exit_info.value.code == 2
    assert "--cases: unknown loss99" in capsys.readouterr().err.splitlines()[-1]
