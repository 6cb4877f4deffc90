"""The scenario-fidelity bench: its scenarios, the target and the side-by-side table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from etcdlab.bench import scenario_fidelity as bench
from etcdlab.scenario.spec import BUILTINS, from_toml


def test_a_loss_level_is_packet_loss_30s_timeline_and_its_file_reads_back() -> None:
    ten = bench.scenario_for(0.1)
    assert ten.name == "packet-loss-10" and "10% packet loss" in ten.description
    base = BUILTINS["packet-loss-30"]
    assert [(s.at, s.duration, s.target, s.links) for s in ten.faults] == [
        (s.at, s.duration, s.target, s.links) for s in base.faults
    ]
    assert [s.probability for s in ten.faults] == [0.1]
    assert from_toml(bench.to_toml(ten), "packet-loss-10.toml") == ten


def _run(network: str, seed: int, p99: float, verdict: str) -> bench.Run:
    cell = bench.Cell(0.3, network, seed)
    figures = {"latency.fault.p99": p99, "lease_losses": 3.0}
    dropped = (1000, 300) if network == "kernel" else None
    return bench.Run(cell, figures, {"a": "agrees", "b": verdict}, dropped, 2.0, seed == 1)


def test_the_table_marks_what_misses_the_target_and_lists_other_verdicts() -> None:
    runs = {
        "kernel": [_run("kernel", s, p, "agrees") for s, p in ((0, 1.0), (1, 1.2), (2, 0.9))],
        "proxy": [_run("proxy", s, p, "differs") for s, p in ((0, 2.0), (1, 2.4), (2, 1.9))],
    }
    lines = list(bench.compare(0.3, runs))
    assert "kernel seed 0: nftables dropped 300 of 1000 packets" in "\n".join(lines)
    assert "proxy: the faulted member led raft when the fault began in seeds [1]" in lines
    p99 = "| latency.fault.p99 | 1000ms [900ms-1200ms] | 2000ms [1900ms-2400ms] | 2.00x ✗ |"
    assert p99 in lines
    assert "| lease_losses | 3 [3-3] | 3 [3-3] | 1.00x |" in lines
    assert "1 of 2 figures outside the target." in lines
    assert "Verdicts: 1 of 2 claims the same." in lines
    assert "- b: kernel agrees, proxy differs" in lines


def test_one_side_alone_is_not_compared() -> None:
    lines = list(bench.compare(0.3, {"proxy": [_run("proxy", 0, 1.0, "agrees")]}))
    assert "only proxy ran: nothing to compare" in lines


def test_only_a_run_that_ran_to_its_end_is_reused(tmp_path: Path) -> None:
    assert bench.finished(tmp_path) is None
    report = {"outcome": {"state": "interrupted", "reason": "stopped by SIGINT"}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert bench.finished(tmp_path) is None
    report["outcome"] = {"state": "completed", "reason": ""}
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert bench.finished(tmp_path) == report


def test_a_run_at_other_timings_is_run_again_and_the_table_names_the_timings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cell = bench.Cell(0.3, "proxy", 0)
    where = cell.directory(tmp_path)
    where.mkdir(parents=True)
    report = {"outcome": {"state": "completed"}, "settings": {}, "faults": [], "claims": []}
    (where / "report.json").write_text(json.dumps({**report, "figures": {}}))
    command = ["python", "-m", "etcdlab", "run", "packet-loss-30", *bench.timing(0.5, None)]
    (where / "bench.json").write_text(json.dumps({"command": command, "loadavg_before": [1.0]}))
    assert bench.made_with(where) == ["--time-scale", "0.5"]
    ran: list[bench.Cell] = []

    def run_cell(cell: bench.Cell, out: Path, scale: float, duration: float | None) -> None:
        ran.append(cell)
        raise KeyboardInterrupt  # enough to know it was run

    monkeypatch.setattr(bench, "run_cell", run_cell)
    argv = ["--networks", "proxy", "--seeds", "0", "--loss", "0.3", "--out", str(tmp_path)]
    assert bench.main([*argv, "--time-scale", "0.5"]) == 0
    assert ran == []
    assert bench.main([*argv, "--duration", "210"]) == 130
    assert ran == [cell]
    runs = {"proxy": [_run("proxy", 0, 1.0, "agrees"), _run("proxy", 1, 1.0, "agrees")]}
    runs["proxy"][0].made = bench.timing(1, 210)
    lines = list(bench.compare(0.3, runs))
    assert "etcdlab run (not recorded) / --time-scale 1 --duration 210 (runs differ!)" in lines


def test_recovery_after_a_heal_is_by_role_not_by_member_name() -> None:
    heal = {"target": "etcd-2", "members": {"etcd-0": 0.0, "etcd-1": 0.4, "etcd-2": 8.3}}
    assert bench.recovery_by_role(heal) == {"faulted": 8.3, "others": 0.4}
    never = {"target": "etcd-0,etcd-1", "members": {"etcd-0": None, "etcd-1": 1.0, "etcd-2": 0.0}}
    assert bench.recovery_by_role(never) == {"faulted": math.inf, "others": 0.0}


def test_peer_disconnects_sum_each_members_last_count(tmp_path: Path) -> None:
    assert bench.peer_disconnects(tmp_path) is None
    gauges = [
        {"t": 1.0, "name": "peer_disconnects/etcd-0", "value": 1.0},
        {"t": 2.0, "name": "peer_disconnects/etcd-0", "value": 3.0},
        {"t": 2.0, "name": "peer_disconnects/etcd-1", "value": 2.0},
        {"t": 2.0, "name": "snapshots_received/etcd-1", "value": 7.0},
    ]
    (tmp_path / "timeline.json").write_text(json.dumps({"gauges": gauges[3:]}))
    assert bench.peer_disconnects(tmp_path) is None  # an older run: no such gauge
    (tmp_path / "timeline.json").write_text(json.dumps({"gauges": gauges}))
    assert bench.peer_disconnects(tmp_path) == 5.0
