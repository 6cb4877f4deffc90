"""Reading a child's first line never waits forever."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from etcdlab.cluster.childproc import first_line


@contextmanager
def child(code: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_returns_the_line_the_child_writes() -> None:
    with child("print('ready', flush=True); import time; time.sleep(60)") as process:
        assert process.stdout is not None
        assert first_line(process.stdout, 30, "child") == "ready\n"


def test_a_silent_child_times_out_with_its_name() -> None:
    with child("import time; time.sleep(60)") as process:
        assert process.stdout is not None
        with pytest.raises(TimeoutError, match=r"the silent child wrote nothing within 0\.2 s"):
            first_line(process.stdout, 0.2, "the silent child")


def test_a_child_that_exits_gives_an_empty_line() -> None:
    with child("pass") as process:
        assert process.stdout is not None
        assert first_line(process.stdout, 30, "child") == ""
