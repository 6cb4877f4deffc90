"""The resume file: what a stopped sweep keeps, and what it refuses to mix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from etcdlab.sweep.grid import Grid
from etcdlab.sweep.results import Results
from etcdlab.sweep.settings import BUILTINS


def record(cell_spec: dict[str, Any], key: str, losses: float = 0.0) -> dict[str, Any]:
    return {"key": key, "spec": cell_spec, "metrics": {"lease_losses_per_hour": losses}}


GRID = Grid(losses=(0, 30), targets=("leader",), settings=(BUILTINS["tight"],), seeds=2,
            duration=20, dead_member=False)  # fmt: skip


def test_finished_runs_are_known_again_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "out" / "resume.jsonl"
    cells = list(GRID.cells())
    first = Results(path)
    assert not any(first.done(c) for c in cells)
    first.add(record(cells[0].spec(), cells[0].key, 12.0))
    first.add(record(cells[2].spec(), cells[2].key))
    again = Results(path)
    again.check(cells)
    assert [again.done(c) for c in cells] == [True, False, True, False]
    assert again.records[cells[0].key]["metrics"]["lease_losses_per_hour"] == 12.0


def test_a_line_cut_short_by_a_crash_is_done_again(tmp_path: Path) -> None:
    path = tmp_path / "resume.jsonl"
    cells = list(GRID.cells())
    Results(path).add(record(cells[0].spec(), cells[0].key))
    with path.open("a") as file:
        file.write('{"key": "loss-30-leader/tight/seed-0", "sp')
    again = Results(path)
    assert [again.done(c) for c in cells] == [True, False, False, False]


def test_a_key_run_with_another_spec_is_refused_not_mixed_in(tmp_path: Path) -> None:
    path = tmp_path / "resume.jsonl"
    cell = next(GRID.cells())
    Results(path).add(record(cell.spec(), cell.key))
    longer = Grid(**{**GRID.__dict__, "duration": 40})
    refused = r"loss-0/tight/seed-0 was run with other settings \(duration 20 then, 40 now\)"
    with pytest.raises(ValueError, match=refused):
        Results(path).check(longer.cells())
    # The same values, written as ints or floats, are the same spec.
    floats = tmp_path / "floats.jsonl"
    Results(floats).add(record({**cell.spec(), "duration": 20.0}, cell.key))
    Results(floats).check([cell])


def test_a_file_that_is_not_a_resume_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resume.jsonl"
    path.write_text('{"other": 1}\n')
    with pytest.raises(ValueError, match=r"resume\.jsonl:1: not a sweep result line"):
        Results(path)
