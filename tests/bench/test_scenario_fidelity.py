"""The scenario-fidelity bench: its scenarios, the target and the side-by-side table."""

from __future__ import annotations

import json
import math
from pathlib import Path

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


def test_the_target_is_a_quarter_or_the_slack_for_small_values() -> None:
    assert bench.agrees("lease_losses", 8, 10) and not bench.agrees("lease_losses", 8, 11)
    assert bench.agrees("lease_losses", 0, 2) and not bench.agrees("lease_losses", 0, 3)
    assert bench.agrees("latency.fault.p99", 0.002, 0.006)
    assert not bench.agrees("latency.fault.p99", 1.0, 1.3)
    assert bench.agrees("recover_seconds.members_healthy", 0.5, 1.4)
    assert not bench.agrees("recover_seconds.members_healthy", 1.0, math.inf)
    assert bench.agrees("detect_seconds.keepalive_failure", math.inf, math.inf)


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
