"""The retry benchmark: config validation, the CLI, and a tiny end-to-end run
against a real cluster."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from etcdlab.bench.retry_config import BenchConfig
from etcdlab.cli.main import main
from etcdlab.common.timescale import TimeScale


def test_config_names_the_bad_field() -> None:
    with pytest.raises(ValueError, match="attempt_timeout"):
        BenchConfig(attempt_timeout=0)
    with pytest.raises(ValueError, match="unknown strategy 'fastest'"):
        BenchConfig(strategies=("none", "fastest"))
    with pytest.raises(ValueError, match="members must be at least 3"):
        BenchConfig(members=1)
    with pytest.raises(ValueError, match="time_scale must be a positive finite number"):
        BenchConfig(time_scale=float("nan"))  # type: ignore[arg-type]
    assert BenchConfig(time_scale=TimeScale(0.5)).wall(4.0) == 2.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategies", "none,bogus"], "unknown strategy 'bogus'"),
        (["--faults", ""], "no faults given"),
        (["--time-scale", "0"], "must be a positive finite number"),
        (["--time-scale", "nan"], "must be a positive finite number"),
        (["--clients", "0"], "must be at least 1"),
    ],
)
def test_bad_input_is_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    try:
        code = main(["bench", "retries", "--out", str(tmp_path), *args])
    except SystemExit as exit:  # argparse's own errors
        code = int(str(exit.code))
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert message in lines[-1]
    assert lines[-1].startswith("etcdlab bench")
    assert not any("Traceback" in line for line in lines)


def test_tiny_run_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "bench",
            "retries",
            # Not smaller: an outage of a few tenths of a second is shorter than
            # a loaded machine's scheduling hiccups.
            "--time-scale=0.25",
            "--duration=20",
            "--rate=60",
            "--clients=4",
            "--seed=3",
            "--strategies=none,exponential,hedged",
            "--faults=outage",
            f"--out={out}",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "outage    none" in printed and "outage    exponential" in printed
    document = json.loads((out / "bench.json").read_text())
    assert document["config"]["seed"] == 3
    runs = {run["strategy"]: run for run in document["runs"]}
    assert set(runs) == {"none", "exponential", "hedged"}
    for run in runs.values():
        assert run["fault"] == "outage"
        assert run["operations"] > 0
        assert 0 < run["fault_start_s"] < run["fault_end_s"] < 5.0
        assert run["herd"]["clients"] == 4
        assert run["herd"]["calls"] >= 4
    none, exponential, hedged = runs["none"], runs["exponential"], runs["hedged"]
    attempts = {name: sum(run["timeline"]["attempts"]) for name, run in runs.items()}
    # The outage fails calls on ready connections: without retries, one RPC per
    # operation, and the operations that met the outage failed. Counted from the
    # operations (amplification is RPCs per success): the timeline stops at the
    # run's end, and the last operation's RPC can leave just after it.
    assert none["amplification"] * none["succeeded"] == pytest.approx(none["operations"])
    assert attempts["none"] <= none["operations"]
    assert none["succeeded"] < none["operations"]
    assert none["fault_rpc_rate_ratio"] == pytest.approx(1.0, abs=0.2)
    # Retries ride some of it out, at the price of more RPCs in the fault.
    assert exponential["succeeded"] > none["succeeded"]
    assert attempts["exponential"] > exponential["operations"]
    assert exponential["fault_rpc_rate_ratio"] > 1.2
    # A failed read is hedged at once to another member: more RPCs than operations.
    assert attempts["hedged"] > hedged["operations"]
    # The herd starts with the outage: one try each fails; retrying members get through.
    assert none["herd"]["succeeded"] == 0 and none["herd"]["calls"] == 4
    assert exponential["herd"]["succeeded"] >= 1
    ElementTree.fromstring((out / "bench.svg").read_text())
