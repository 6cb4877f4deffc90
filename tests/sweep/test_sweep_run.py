"""Real sweeps against real etcd: two small cells, stopped and resumed, and the
same cells on a real Dask scheduler with two workers.

Tiny on purpose (15 s cells at time scale 0.2): what is tested is the
machinery (a cell runs, is recorded once, a stop cleans up, a resume runs
only what is missing, the outputs are written), not the figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

from tests.cli.test_stopping import Launch, start  # noqa: F401 - the fixture
from tests.waiting import wait_until

# A dead member costs tight's 8 s lease and a little: 15 s runs see the successor.
GRID = ["--loss", "0,30", "--target", "leader", "--settings", "tight", "--seeds", "1",
        "--duration", "15", "--time-scale", "0.2"]  # fmt: skip
KEYS = ["loss-0/tight/seed-0", "loss-30-leader/tight/seed-0", "dead-leader/tight/seed-0"]
RUN_WAIT = 300.0  # seconds two tiny cells may take on a loaded machine


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def check_outputs(out: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((out / "sweep.json").read_text())
    assert summary["runs"]["done"] == 3 and summary["runs"]["missing"] == []
    cells = {c["network"]: c for c in summary["cells"]}
    assert list(cells) == ["loss-0", "loss-30-leader", "dead-leader"]
    for network in ("loss-0", "loss-30-leader"):
        assert cells[network]["seeds"] == [0]
        assert cells[network]["metrics"]["p99_seconds"]["mean"] > 0
    # The leader's member killed: it stepped down and another candidate took over
    # once the lease ran out (8 s unscaled after its last renewal).
    dead = cells["dead-leader"]["metrics"]
    assert dead["failover_seconds"]["mean"] > 5 and dead["lease_losses_per_hour"]["mean"] > 0
    assert dead["p99_seconds"] is None
    assert [r["loss_percent"] for r in summary["recommendations"]] == [0, 30]
    assert (out / "sweep.html").read_text().count("<svg") == 7
    assert len((out / "sweep.csv").read_text().splitlines()) == 4
    return summary


# Four real runs one after another, and two sweeps' start-up: minutes on a busy machine.
@pytest.mark.timeout(2 * RUN_WAIT)
def test_a_stopped_sweep_leaves_nothing_and_resumes_where_it_stopped(
    start: Launch,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", *GRID, "--concurrency", "1", "--out", str(out)]
    first = start(args)
    resume = out / "resume.jsonl"
    wait_until(lambda: len(lines(resume)) == 1 or first.process.poll() is not None, RUN_WAIT,
               "the first run to finish")  # fmt: skip
    assert first.stop_twice(signal.SIGTERM) == 128 + signal.SIGTERM
    assert first.leftovers() == []
    kept = lines(resume)
    assert len(kept) == 1 and json.loads(kept[0])["key"] == KEYS[0]
    partial = json.loads((out / "sweep.json").read_text())
    assert partial["runs"]["done"] == 1 and partial["runs"]["missing"] == KEYS[1:]
    assert "Incomplete: 1 of 3 runs done" in (out / "sweep.html").read_text()

    second = start(args)
    assert second.process.wait(timeout=RUN_WAIT) == 0, "".join(second.stderr)[-2000:]
    assert any("1 already done" in line for line in second.stderr)
    # The first run was not run again: its line is as it was, the others follow.
    assert lines(resume)[0] == kept[0]
    assert [json.loads(line)["key"] for line in lines(resume)] == KEYS
    assert second.leftovers() == []
    check_outputs(out)
    assert any(line.startswith("loss 30%: ") for line in second.stdout)


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A real Dask scheduler and two one-thread workers on ports the OS chose."""
    dask = str(Path(sys.executable).parent / "dask")
    where = tmp_path / "dask"
    where.mkdir()
    env = {**os.environ, "TMPDIR": str(where)}
    scheduler_file = where / "scheduler.json"
    logs = (where / "scheduler.log").open("w")
    processes = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file)],
            stdout=logs, stderr=subprocess.STDOUT, cwd=where, env=env,
        )
    ]  # fmt: skip
    try:
        wait_until(scheduler_file.exists, 60, "the scheduler's address")
        address = json.loads(scheduler_file.read_text())["address"]
        for n in range(2):
            processes.append(
                subprocess.Popen(
                    [dask, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                     "--no-dashboard", "--host", "127.0.0.1",
                     "--name", f"worker-{n}"],
                    stdout=logs, stderr=subprocess.STDOUT, cwd=where, env=env,
                )
            )  # fmt: skip
        # Both, before the sweep counts their threads.
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        # The workers first, then the scheduler: a worker whose scheduler went at
        # the same moment hangs on it until its nanny kills it 8 s later.
        for group in (processes[1:], processes[:1]):
            for process in group:
                process.send_signal(signal.SIGTERM)
            for process in group:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        logs.close()


@pytest.mark.timeout(2 * RUN_WAIT)
def test_cells_run_on_dask_workers_give_the_same_results_and_resume_file(
    dask_cluster: str, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    etcdlab = [sys.executable, "-m", "etcdlab", "sweep", *GRID, "--out", str(out)]
    distributed = subprocess.run(
        [*etcdlab, "--scheduler", dask_cluster],
        capture_output=True, text=True, timeout=RUN_WAIT,
    )  # fmt: skip
    assert distributed.returncode == 0, distributed.stderr[-2000:]
    # Two workers of one thread each: two runs at once.
    assert "2 at once" in distributed.stderr
    written = (out / "sweep.json").read_text()
    summary = check_outputs(out)
    assert sorted(json.loads(line)["key"] for line in lines(out / "resume.jsonl")) == sorted(KEYS)
    # The same command without a scheduler finds every run done in the resume
    # file the workers' runs wrote, and writes the same outputs from it.
    local = subprocess.run(etcdlab, capture_output=True, text=True, timeout=RUN_WAIT)
    assert local.returncode == 0, local.stderr[-2000:]
    assert "3 already done" in local.stderr
    assert (out / "sweep.json").read_text() == written
    assert summary["grid"]["time_scale"] == 0.2
