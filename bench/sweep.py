"""What the sweeps of whole scenarios share (:mod:`~etcdlab.bench.scale_invariance`,
:mod:`~etcdlab.bench.scenario_fidelity`): the bounds their reports' figures are
compared within. Their child runs (one ``etcdlab run`` each, stopped cleanly
when the sweep stops) are :func:`etcdlab.sweep.child.run_child`, as the
settings sweep's are.

The bounds: ±25% of the reference, or an absolute slack for small values
(2 for counts, 1 s for times, which are sampled every 0.5 s, 5 ms for
latencies). A figure that never happened is infinite and agrees only with
another that never happened.
"""

from __future__ import annotations

import math
from typing import Any

RELATIVE = 0.25
COUNT_SLACK = 2.0
SECONDS_SLACK = 1.0
LATENCY_SLACK = 0.005
NEVER = math.inf


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
