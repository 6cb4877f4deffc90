"""One run as a child process: logged, recorded, and stopped cleanly when asked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from etcdlab.common import exits
from etcdlab.sweep.child import ChildStopped, run_child


def test_a_child_run_is_logged_and_recorded(tmp_path: Path) -> None:
    where = tmp_path / "cell"
    meta = run_child([sys.executable, "-c", "print('ran')"], where)
    assert (where / "run.log").read_text() == "ran\n"
    assert json.loads((where / "bench.json").read_text()) == meta
    assert meta["exit_code"] == 0 and len(meta["loadavg_before"]) == 3


def test_a_failed_child_run_raises_with_the_end_of_its_log(tmp_path: Path) -> None:
    where = tmp_path / "cell"
    failing = [sys.executable, "-c", "print('first'); print('why it failed'); raise SystemExit(1)"]
    with pytest.raises(RuntimeError, match="exited with 1: first / why it failed"):
        run_child(failing, where)
    assert json.loads((where / "bench.json").read_text())["exit_code"] == 1


def test_a_run_that_found_two_leaders_is_a_result_not_a_failure(tmp_path: Path) -> None:
    meta = run_child([sys.executable, "-c", f"raise SystemExit({exits.UNSAFE})"], tmp_path)
    assert meta["exit_code"] == exits.UNSAFE


def test_a_child_asked_to_stop_gets_sigint_and_time_to_clean_up(tmp_path: Path) -> None:
    where = tmp_path / "cell"
    ready = tmp_path / "ready"
    # Cleans up on SIGINT (KeyboardInterrupt) and says so; never ends by itself.
    script = (
        "import pathlib, time\n"
        f"try:\n    pathlib.Path({str(ready)!r}).touch()\n    time.sleep(600)\n"
        "except KeyboardInterrupt:\n    print('cleaned up', flush=True)\n"
    )
    with pytest.raises(ChildStopped):
        run_child([sys.executable, "-c", script], where, should_stop=ready.exists)
    assert (where / "run.log").read_text() == "cleaned up\n"
