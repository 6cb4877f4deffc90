"""``etcdlab sweep``'s bad input: one line naming what is wrong, exit 2, nothing started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etcdlab.cli.main import main
from etcdlab.sweep.grid import QUICK


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loss", "5,120"], "--loss: 120 is not a percentage in [0, 100)"),
        (["--target", "leader,leeder"], "--target: unknown 'leeder'; one of leader, follower"),
        (["--settings", "client-go,mine"], "--settings: unknown 'mine'; one of client-go, "),
        (["--time-scale", "0.05", "--quick"], "time scale 0.05 is below 0.1"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sweep", *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_bad_settings_file_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = tmp_path / "sets.toml"
    sets.write_text("[settings.mine]\nlease_duration = 10\nrenew_deadline = 12\n")
    assert main(["sweep", "--settings-file", str(sets), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"etcdlab sweep: error: {sets}: settings.mine.renew_deadline: must be below "
        "lease_duration (10 s), not 12\n"
    )


def test_a_resume_file_of_another_grid_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cell = next(QUICK.cells())
    (out / "resume.jsonl").write_text(json.dumps({"key": cell.key, "spec": cell.spec()}) + "\n")
    assert main(["sweep", "--quick", "--duration", "45", "--out", str(out)]) == 2
    assert "was run with other settings (duration 30.0 then, 45.0 now)" in capsys.readouterr().err
