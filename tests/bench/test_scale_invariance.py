"""The scale-invariance benchmark's bounds, comparison and table, on written reports
(the runs themselves are the CLI's; tests/scenario/test_scale_invariance.py runs two)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from etcdlab.bench.scale_invariance import (
    Cell,
    compare,
    main,
    markdown,
    read_run,
)


def write_run(out: Path, scale: float, seed: int, losses: int, verdict: str) -> None:
    where = Cell("demo", scale, seed).directory(out)
    where.mkdir(parents=True)
    report: dict[str, Any] = {
        "figures": {"lease_losses": losses, "detect_seconds": {"first": None}},
        "claims": [{"id": "election.leadership-loss", "verdict": verdict}],
    }
    (where / "report.json").write_text(json.dumps(report))
    (where / "bench.json").write_text(
        json.dumps({"loadavg_before": [1.0, 0, 0], "loadavg_after": [3.0, 0, 0]})
    )


def test_medians_spreads_and_majority_verdicts_against_scale_1(tmp_path: Path) -> None:
    for seed, (real, scaled) in enumerate([(0, 6), (1, 6), (0, 5)]):
        write_run(tmp_path, 1.0, seed, real, "differs")
        write_run(tmp_path, 0.5, seed, scaled, "agrees" if seed < 2 else "differs")
    groups = {
        f"scale {s:g}": [r for k in range(3) if (r := read_run(Cell("demo", s, k), tmp_path))]
        for s in (1.0, 0.5)
    }
    comparison = compare("demo", groups)
    assert comparison.medians[("lease_losses", "scale 1")] == 0
    assert comparison.medians[("lease_losses", "scale 0.5")] == 6
    assert comparison.spreads[("lease_losses", "scale 0.5")] == (5, 6)
    assert comparison.failing("scale 0.5") == ["lease_losses"]
    assert comparison.distorted("scale 0.5") == ["lease_losses"]
    assert comparison.verdicts_differing("scale 0.5") == ["election.leadership-loss"]
    table = markdown(comparison)
    assert "| lease_losses | 0 [0-1] | 6 [5-6] ✗ |" in table
    assert "| detect_seconds.first | never | never |" in table
    assert "| **figures within bounds** | 2/2 | 1/2 |" in table
    assert "| **outside bounds and scale 1's range (✗)** | 0 | 1 |" in table
    assert "| figure (unscaled) | scale 1 | scale 0.5 |" in table
    assert "| load average (1 min) | 1.0-3.0 | 1.0-3.0 |" in table
    assert (
        "at scale 0.5 that differ from scale 1: election.leadership-loss (differs -> agrees)"
        in table
    )


def test_a_control_column_is_scale_1_judged_against_itself(tmp_path: Path) -> None:
    for seed, losses in enumerate([0, 1, 0, 4, 5, 6]):
        write_run(tmp_path, 1.0, seed, losses, "differs")
    argv = ["--compare-only", "--out", str(tmp_path), "--scenarios", "packet-loss-30"]
    (tmp_path / "packet-loss-30").symlink_to(tmp_path / "demo")
    table = tmp_path / "table.md"
    code = main([*argv, "--scales", "1", "--seeds", "0,1,2", "--control-seeds", "3,4,5",
                 "--markdown", str(table)])  # fmt: skip
    assert code == 0
    assert "| lease_losses | 0 [0-1] | 5 [4-6] ✗ |" in table.read_text()


def test_compare_only_reads_what_is_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run(tmp_path, 1.0, 0, 0, "differs")
    write_run(tmp_path, 0.5, 0, 1, "differs")
    table = tmp_path / "table.md"
    argv = ["--compare-only", "--out", str(tmp_path), "--scenarios", "packet-loss-30"]
    assert main([*argv, "--seeds", "0", "--markdown", str(table)]) == 0
    assert "no finished run at time scale 1" in capsys.readouterr().err
    (tmp_path / "packet-loss-30").symlink_to(tmp_path / "demo")
    assert main([*argv, "--seeds", "0", "--markdown", str(table)]) == 0
    assert "### packet-loss-30 (seeds 0)" in table.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scales", "1,0"], "argument --scales: time scale must be a positive finite number"),
        (["--scenarios", "nope"], "unknown scenario 'nope'"),
        (["--seeds", ""], "give at least one value"),
        (["--tail", "-1"], "--tail must be a positive number of seconds"),
    ],
)
def test_bad_input_is_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--compare-only", *args])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error
