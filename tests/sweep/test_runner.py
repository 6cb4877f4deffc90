"""The sweep's scheduling on a real in-process Dask cluster, with a stand-in for
the cell run: back-off when a run's event loop lagged, a second try for a
failed run, and nothing run twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etcdlab.sweep import runner
from etcdlab.sweep.grid import Cell, Grid
from etcdlab.sweep.results import Results
from etcdlab.sweep.settings import BUILTINS

GRID = Grid(losses=(0, 30), targets=("leader",), settings=(BUILTINS["tight"],), seeds=2,
            duration=20, dead_member=False)  # fmt: skip
LAGGING = "loss-30-leader/tight/seed-0"  # its event loop always lags
FAILING = "loss-0/tight/seed-1"  # always fails


def stand_in(spec: dict[str, Any], stop_event: str | None) -> dict[str, Any]:
    cell = Cell.from_spec(spec)
    if cell.key == FAILING:
        raise RuntimeError("the cluster did not start")
    lagged = cell.key == LAGGING
    return {
        "key": cell.key,
        "spec": spec,
        "metrics": {"lease_losses_per_hour": 0.0},
        "event_loop_lag": {"p99": 0.05 if lagged else 0.001, "exceeded": lagged},
    }


def test_a_lagging_run_lowers_concurrency_and_a_failed_one_is_tried_twice(
    tmp_path: Path,
) -> None:
    results = Results(tmp_path / "resume.jsonl")
    cells = list(GRID.cells())
    failed: list[dict[str, str]] = []
    seen: list[runner.Progress] = []
    with runner.client_for(None, 2) as client:
        runner.sweep(cells, results, client, 2, seen.append, failed, task=stand_in)
    progress = seen[-1]
    assert progress.limit == 1 and progress.done == 3 and progress.running == 0
    # Lagged at 2 at once: run again alone, lagged again, kept and marked.
    assert results.records[LAGGING]["lagged"] is True
    assert not results.records["loss-0/tight/seed-0"]["lagged"]
    assert [n for n in progress.notes if n.startswith(LAGGING)] == [
        f"{LAGGING}: the emulator's event loop lagged (p99 50 ms); 1 at once now; running it again",
        f"{LAGGING}: the emulator's event loop lagged (p99 50 ms); 1 at once now; kept, marked "
        "lagged",
    ]
    assert failed == [{"key": FAILING, "error": "the cluster did not start"}]
    assert [n for n in progress.notes if n.startswith(FAILING)] == [
        f"{FAILING}: failed (the cluster did not start); trying again",
        f"{FAILING}: failed again (the cluster did not start)",
    ]
    assert FAILING not in Results(tmp_path / "resume.jsonl").records


def test_what_the_resume_file_has_is_not_run_again(tmp_path: Path) -> None:
    results = Results(tmp_path / "resume.jsonl")
    cells = [c for c in GRID.cells() if c.key != FAILING]
    done = stand_in(cells[0].spec(), None) | {"lagged": False, "metrics": {"mark": 1.0}}
    results.add(done)
    seen: list[int] = []
    with runner.client_for(None, 1) as client:
        runner.sweep(cells, results, client, 1, lambda p: seen.append(p.done), [], task=stand_in)
    assert seen[0] == 1 and seen[-1] == 3
    assert Results(tmp_path / "resume.jsonl").records[cells[0].key]["metrics"] == {"mark": 1.0}
