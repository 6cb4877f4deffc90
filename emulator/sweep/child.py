"""Runs of whole scenarios as child processes: the sweeps' unit of work.

:func:`run_child` runs one command (an ``etcdlab run``, or this module for a
sweep cell) with its output in a log and stops it cleanly when the sweep
stops. ``python -m etcdlab.sweep.child DIR`` runs the cell described by
``DIR/cell.json`` in its own process (its own event loop, gRPC state and
etcd members): a scenario run for a network condition, the electors of
:mod:`~etcdlab.sweep.failover` for a dead member; it writes
``DIR/metrics.json`` (beside the run's report, for a scenario); a
SIGINT or SIGTERM, or the death of the process that started it (a Dask
worker that was shut down), stops it as ``etcdlab run`` stops: cleaned up,
report marked interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from etcdlab.common import exits, stopping
from etcdlab.common.timeline import load_timeline
from etcdlab.common.timescale import TimeScale
from etcdlab.scenario import engine
from etcdlab.sweep import failover
from etcdlab.sweep.grid import DEAD, Cell
from etcdlab.sweep.metrics import run_metrics

STOP_GRACE = 60.0  # seconds a stopped run gets to tear its cluster down
POLL = 0.5  # seconds between looks at a sweep's stop flag (and at the parent)
CELL = "cell.json"
METRICS = "metrics.json"


class ChildStopped(RuntimeError):
    """The sweep stopped while the child ran; it was stopped cleanly."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM stops a sweep as Ctrl-C does: the running child is stopped cleanly."""
    signal.signal(signal.SIGTERM, _stop)


def run_child(
    command: Sequence[str], where: Path, should_stop: Callable[[], bool] | None = None
) -> dict[str, Any]:
    """Run ``command`` with its output in ``where/run.log``; what ran, how long
    and at what load go to ``where/bench.json``, which is also returned. A
    stopped sweep (Ctrl-C or SIGTERM in this thread, or ``should_stop()``
    turning true, asked every :data:`POLL` seconds) lets the run tear its
    cluster (and namespace) down before it insists, then raises
    :class:`ChildStopped` (or the KeyboardInterrupt). Raises RuntimeError, with
    the log's last lines, if the run failed; a run that completed and found two
    leaders at once (:data:`~etcdlab.common.exits.UNSAFE`) is a measurement,
    returned like any other."""
    where.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = time.monotonic()
    with (where / "run.log").open("w") as log:
        child = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    code = child.wait(POLL if should_stop else None)
                    break
                except subprocess.TimeoutExpired:
                    if should_stop is not None and should_stop():
                        raise ChildStopped(f"stopped: {' '.join(command)}") from None
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
    meta = {
        "command": list(command),
        "exit_code": code,
        "wall_seconds": round(time.monotonic() - started, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    (where / "bench.json").write_text(json.dumps(meta, indent=2) + "\n")
    if code not in (exits.COMPLETED, exits.UNSAFE):
        tail = (where / "run.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(command)} exited with {code}: {' / '.join(tail)}")
    return meta


def cell_command(where: Path) -> list[str]:
    """The command that runs the cell whose spec is in ``where/cell.json``."""
    return [sys.executable, "-m", "etcdlab.sweep.child", str(where)]


async def _orphan_watch(parent: int) -> None:
    """SIGTERM to this process once its parent is gone: a worker that died
    without stopping its runs leaves none behind."""
    # Polled: a parent's death sends this process nothing it could await.
    while os.getppid() == parent:  # noqa: ASYNC110
        await asyncio.sleep(POLL)
    os.kill(os.getpid(), signal.SIGTERM)


async def _run(cell: Cell, where: Path) -> dict[str, Any]:
    options = engine.RunOptions(
        time_scale=TimeScale(cell.time_scale),
        seed=cell.seed,
        out=where,
        plane=cell.settings.plane(),
    )
    watch = asyncio.create_task(_orphan_watch(os.getppid()))
    try:
        report, _ = await engine.run(cell.scenario(), options, progress=print)
    finally:
        watch.cancel()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m etcdlab.sweep.child DIR (DIR/cell.json: the cell)", file=sys.stderr)
        return 2
    where = Path(args[0])
    cell = Cell.from_spec(json.loads((where / CELL).read_text()))
    loop_factory = stopping.fast_loop()
    try:
        if cell.network.kind == DEAD:
            # No control plane here: the electors' event loop carries little.
            result = stopping.run(failover.measure(cell), loop_factory)
            result["event_loop_lag"] = {"p99": None, "exceeded": False}
        else:
            report = stopping.run(_run(cell, where), loop_factory)
            lag = report["event_loop_lag"]
            result = {
                "metrics": run_metrics(load_timeline(where / "timeline.json"), cell.duration),
                "event_loop_lag": {"p99": lag["p99"], "exceeded": lag["exceeded"]},
                "claims": report["verdicts"],
            }
    except stopping.Stopped as stop:
        print(f"etcdlab.sweep.child: {stop}", file=sys.stderr)
        return stop.exit_code
    (where / METRICS).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
