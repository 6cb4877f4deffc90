"""Running the grid's cells on Dask distributed, as many at once as the machine holds.

Each run is one task, :func:`run_cell`: it starts the cell as a child process
(:mod:`etcdlab.sweep.child`) in a scratch directory on the worker and returns
its record; nothing else crosses between the sweep and the worker, so a
remote worker needs etcdlab installed and nothing shared. With a scheduler
address the tasks go to its workers; without one, to an in-process
``LocalCluster`` whose threads each wait on one child process. Either way
the records and the resume file are the same.

Concurrency starts at ``concurrency`` runs in flight and backs off by one
(down to one) whenever a run reports that its event loop lagged beyond the
report's limit (an overloaded machine measures itself, not etcd); that run is
done again, once, at the lower concurrency, and kept marked ``lagged`` if it
lags again. A run that fails is tried once more, then listed
as failed (not written to the resume file, so the next sweep tries it again).

Stopping (SIGINT, SIGTERM): nothing new starts, every running child is told
to stop (a Dask ``Event`` the tasks poll) and cleans up its etcd members,
what finished is kept, and :class:`~etcdlab.common.stopping.Stopped` is raised.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from etcdlab.common.stopping import SIGNALS, Stopped
from etcdlab.sweep.child import (
    CELL,
    METRICS,
    POLL,
    STOP_GRACE,
    cell_command,
    run_child,
)
from etcdlab.sweep.grid import Cell
from etcdlab.sweep.results import Results

RETRIES = 1  # a failed or lagging run is tried once more


def run_cell(spec: dict[str, Any], stop_event: str | None = None) -> dict[str, Any]:
    """One run on whichever worker got it: its record for the resume file.
    ``stop_event`` names the Dask Event that stops it."""
    cell = Cell.from_spec(spec)
    should_stop: Callable[[], bool] | None = None
    if stop_event is not None:
        # Imported where used: etcdlab's other commands need not load Dask.
        from distributed import Event

        event = Event(stop_event)
        should_stop = event.is_set
    with tempfile.TemporaryDirectory(prefix="etcdlab-sweep-") as scratch:
        where = Path(scratch)
        (where / CELL).write_text(json.dumps(spec))
        meta = run_child(cell_command(where), where, should_stop)
        result = json.loads((where / METRICS).read_text())
    return {
        "key": cell.key,
        "spec": spec,
        **result,
        "wall_seconds": meta["wall_seconds"],
        "loadavg": meta["loadavg_after"],
    }


@dataclass
class Progress:
    """What the sweep tells its progress display."""

    total: int
    done: int
    running: int = 0
    limit: int = 0
    notes: list[str] = field(default_factory=list)


Report = Callable[[Progress], None]


@contextlib.contextmanager
def client_for(scheduler: str | None, concurrency: int) -> Iterator[Any]:
    """A Dask client: of the scheduler at ``scheduler``, or of an in-process
    LocalCluster with ``concurrency`` threads (each waits on one child run)."""
    # Imported where used: etcdlab's other commands need not load Dask.
    import dask
    from distributed import Client, LocalCluster

    # Dask's own lines would tear the progress bar; a failed task is reported
    # (and retried) by the sweep itself.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    if scheduler is not None:
        with Client(scheduler, timeout="30s") as client:
            yield client
        return
    with (
        # The scheduler's and the worker's scratch space go when the sweep does.
        tempfile.TemporaryDirectory(prefix="etcdlab-sweep-dask-") as scratch,
        dask.config.set({"temporary-directory": scratch}),
        LocalCluster(
            n_workers=1,
            threads_per_worker=concurrency,
            processes=False,
            dashboard_address=None,
            # Its HTTP endpoint (health, metrics) on a port the OS chose.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def worker_threads(client: Any) -> int:
    """How many tasks the cluster's workers run at once."""
    threads: dict[str, int] = client.nthreads()
    return max(1, sum(threads.values()))


class _Signals:
    """The first SIGINT or SIGTERM stops the sweep; later ones are noted and ignored."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.stop = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            print(f"etcdlab sweep: {name}: stopping and cleaning up", file=sys.stderr)
            self.received = signum
            self.stop.set()
        else:
            print(f"etcdlab sweep: {name} again: still cleaning up, ignored", file=sys.stderr)


def sweep(
    cells: list[Cell],
    results: Results,
    client: Any,
    concurrency: int,
    report: Report,
    failed: list[dict[str, str]],
    task: Callable[[dict[str, Any], str | None], dict[str, Any]] = run_cell,
) -> None:
    """Run every cell ``results`` has not, on ``client``, appending each record
    to ``results``; failures go to ``failed``. Raises Stopped on a signal.
    ``task`` runs one cell (a test's stands in for :func:`run_cell`)."""
    todo = deque((cell, 0) for cell in cells if not results.done(cell))
    progress = Progress(total=len(cells), done=len(cells) - len(todo), limit=concurrency)
    sweep_id = uuid.uuid4().hex  # a scheduler that outlives a sweep must not mix two
    stop_name = f"etcdlab-sweep-stop-{sweep_id}"
    running: dict[Any, tuple[Cell, int]] = {}
    with _Signals() as signals:
        while (todo or running) and not signals.stop.is_set():
            while todo and len(running) < progress.limit:
                cell, attempt = todo.popleft()
                future = client.submit(
                    task,
                    cell.spec(),
                    stop_name,
                    key=f"{cell.key}#{attempt}-{sweep_id}",
                    pure=False,
                )
                running[future] = (cell, attempt)
            progress.running = len(running)
            report(progress)
            if signals.stop.wait(POLL):
                break  # the children were stopped too: their failures are not failures
            for future in [f for f in running if f.done()]:
                cell, attempt = running.pop(future)
                _finish(future, cell, attempt, results, todo, progress, failed)
        if signals.received is not None:
            _stop(client, stop_name, running)
            progress.running = 0
            report(progress)
            raise Stopped(signals.received)
    progress.running = 0
    report(progress)


def _finish(
    future: Any,
    cell: Cell,
    attempt: int,
    results: Results,
    todo: deque[tuple[Cell, int]],
    progress: Progress,
    failed: list[dict[str, str]],
) -> None:
    try:
        record = future.result()
    except Exception as error:
        if attempt < RETRIES:
            todo.append((cell, attempt + 1))
            progress.notes.append(f"{cell.key}: failed ({error}); trying again")
        else:
            failed.append({"key": cell.key, "error": str(error)})
            progress.notes.append(f"{cell.key}: failed again ({error})")
        return
    lagged = bool(record["event_loop_lag"]["exceeded"])
    if lagged:
        progress.limit = max(1, progress.limit - 1)
        again = attempt < RETRIES
        progress.notes.append(
            f"{cell.key}: the emulator's event loop lagged (p99 "
            f"{record['event_loop_lag']['p99'] * 1000:.0f} ms); {progress.limit} at once now; "
            + ("running it again" if again else "kept, marked lagged")
        )
        if again:
            todo.appendleft((cell, attempt + 1))
            return
    record["lagged"] = lagged
    results.add(record)
    progress.done += 1


def _stop(client: Any, stop_name: str, running: dict[Any, tuple[Cell, int]]) -> None:
    """Tell the running tasks to stop their children and wait for them to clean up."""
    from distributed import Event

    Event(stop_name, client=client).set()
    deadline = time.monotonic() + STOP_GRACE + 2 * POLL
    while running and time.monotonic() < deadline:
        for future in [f for f in running if f.done()]:
            running.pop(future)
            with contextlib.suppress(Exception):  # ChildStopped: stopped as asked
                future.result()
        time.sleep(POLL)
    for future in running:
        future.cancel()
