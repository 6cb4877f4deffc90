"""Run ``etcdlab proxy`` as a separate process for a benchmark, as users run it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from etcdlab.cluster.childproc import first_line


@dataclass(frozen=True)
class RunningProxy:
    listen: str
    control_address: str | None
    pid: int

    @property
    def control(self) -> str:
        if self.control_address is None:
            raise RuntimeError("the proxy was started without --control")
        return self.control_address


@contextmanager
def proxy_process(
    upstream: str, *extra: str, python: str = sys.executable
) -> Iterator[RunningProxy]:
    """Start a proxy in front of ``upstream``; ``extra`` are more CLI flags;
    ``python`` the interpreter (another checkout's, to compare its proxy)."""
    process = subprocess.Popen(
        [
            python,
            "-m",
            "etcdlab",
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstream,
            "--log-level",
            "WARNING",
            *extra,
        ],
        stdout=subprocess.PIPE,
    )
    try:
        if process.stdout is None:
            raise RuntimeError("proxy started without a stdout pipe")
        ready = json.loads(first_line(process.stdout, 30, "etcdlab proxy"))
        yield RunningProxy(ready["listen"], ready.get("control"), process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)
