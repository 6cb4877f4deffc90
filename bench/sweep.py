"""What the sweeps of whole scenarios share (:mod:`~etcdlab.bench.scale_invariance`,
:mod:`~etcdlab.bench.scenario_fidelity`): running one ``etcdlab run`` as a
child process that a stopped sweep stops cleanly, and the bounds their
reports' figures are compared within.

The bounds: ±25% of the reference, or an absolute slack for small values
(2 for counts, 1 s for times, which are sampled every 0.5 s, 5 ms for
latencies). A figure that never happened is infinite and agrees only with
another that never happened.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path
from types import FrameType
from typing import Any

RELATIVE = 0.25
COUNT_SLACK = 2.0
SECONDS_SLACK = 1.0
LATENCY_SLACK = 0.005
NEVER = math.inf
STOP_GRACE = 60.0  # seconds a stopped run gets to tear its cluster down


def slack(figure: str) -> float:
    """The absolute difference a figure may show whatever its size."""
    if figure.startswith("latency.") and not figure.endswith(".requests"):
        return LATENCY_SLACK
    if "seconds" in figure:
        return SECONDS_SLACK
    return COUNT_SLACK


def agrees(figure: str, reference: float, value: float) -> bool:
    """Is ``value`` within the bounds around ``reference``? A figure missing on
    either side (NaN: written by an older etcdlab) is not judged."""
    if math.isnan(reference) or math.isnan(value):
        return True
    if math.isinf(reference) or math.isinf(value):
        return reference == value
    return abs(value - reference) <= max(RELATIVE * abs(reference), slack(figure))


def flatten(figures: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"latency": {"fault": {"p99": x}}}`` -> ``{"latency.fault.p99": x}``; None -> inf."""
    flat: dict[str, float] = {}
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = NEVER if value is None else float(value)
    return flat


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM stops a sweep as Ctrl-C does: the running child is stopped cleanly."""
    signal.signal(signal.SIGTERM, _stop)


def run_child(command: list[str], where: Path) -> dict[str, Any]:
    """Run ``command`` (an ``etcdlab run``) with its output in ``where/run.log``;
    what ran, how long and at what load go to ``where/bench.json``, which is
    also returned. A stopped sweep (Ctrl-C, SIGTERM) lets the run tear its
    cluster (and namespace) down before it insists. Raises RuntimeError, with
    the log's last lines, if the run failed."""
    where.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = time.monotonic()
    with (where / "run.log").open("w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            code = child.wait()
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
    meta = {
        "command": command,
        "exit_code": code,
        "wall_seconds": round(time.monotonic() - started, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    (where / "bench.json").write_text(json.dumps(meta, indent=2) + "\n")
    if code != 0:
        tail = (where / "run.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(command)} exited with {code}: {' / '.join(tail)}")
    return meta
