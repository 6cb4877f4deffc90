"""The loss-fidelity benchmark stopped in the middle of a run: nothing of it is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.waiting import wait_until

# One long run of the model alone, one connection.
ARGUMENTS = ["--proxy-only", "--loss", "0.1", "--clients", "1", "--runs", "1", "--seconds", "60"]


def working_in(directory: Path) -> list[int]:
    """The processes whose working directory is ``directory``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "cwd") == str(directory):
                pids.append(int(proc.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def test_sigterm_stops_the_proxy_and_etcd_of_the_run_under_way(tmp_path: Path) -> None:
    # As `timeout` or a stopped job stops it: its etcd member and proxy (which
    # work in its directory, their data in its TMPDIR) go with it.
    bench = subprocess.Popen(
        [sys.executable, "-m", "etcdlab.bench.loss_fidelity", *ARGUMENTS],
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = lambda: len(working_in(tmp_path)) >= 3 or bench.poll() is not None  # noqa: E731
        wait_until(started, 60, "the run's etcd and proxy")
        assert bench.poll() is None, bench.communicate()[1][-2000:]
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    assert working_in(tmp_path) == []
    assert list(tmp_path.iterdir()) == []
