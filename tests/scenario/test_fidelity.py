"""What a time scale cannot shrink: the refusal below raft's floor and the report's notes."""

from __future__ import annotations

import pytest

from etcdlab.cli.main import main
from etcdlab.common.timescale import TimeScale
from etcdlab.scenario import fidelity
from etcdlab.scenario.engine import RunOptions


def test_scales_below_the_raft_floor_are_refused_naming_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ValueError, match="raft heartbeat"):
        RunOptions(time_scale=TimeScale(0.05))
    assert main(["run", "packet-loss-30", "--time-scale", "0.05"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "time scale 0.05 is below 0.1" in error


def test_real_timing_has_nothing_to_declare() -> None:
    assert fidelity.notes(1.0) == []
    assert fidelity.notes(0.9) == []  # every fixed timer within the benchmark's 25%


def test_notes_give_each_unscaled_timer_its_unscaled_value() -> None:
    notes = fidelity.notes(0.5)
    assert (
        "request timeout, 5 s + 2 election timeouts (inside etcd): 12 s unscaled instead of 7 s"
        in notes[0]
    )
    assert "peer stream write deadline" in notes[0]
    assert "read up to 2 times longer" in notes[1]
    below = fidelity.notes(fidelity.FAITHFUL_SCALE / 2)
    assert len(below) == 3 and f"below {fidelity.FAITHFUL_SCALE:g}" in below[2]
    assert len(fidelity.notes(fidelity.FAITHFUL_SCALE)) < 3


def test_the_cli_warns_below_the_faithful_scale_naming_the_reason() -> None:
    assert fidelity.warning(fidelity.FAITHFUL_SCALE) is None
    warning = fidelity.warning(fidelity.FAITHFUL_SCALE / 2)
    assert warning is not None
    assert f"below {fidelity.FAITHFUL_SCALE:g}" in warning and "inside etcd" in warning
