"""What broke, when and for how long: the few lines at the top of the report.

Each line is a sentence in unscaled seconds since the fault began (the report's
one clock): the faults as injected, the first and last failed request, the
leases lost and each etcd member and apiserver health check that went unhealthy
since the fault began, when it recovered after the heal, and how long the
workloads took to converge.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from etcdlab.common.timeline import Health, Timeline
from etcdlab.report.claims import CONTROLLERS, converge_time

# Past this many, a list of lease losses says how many more there were.
LISTED = 4


def _s(seconds: float) -> str:
    return f"{seconds:.1f} s"


def unhealthy_spans(samples: Sequence[Health], end: float) -> list[tuple[float, float]]:
    """Run-clock spans from an unhealthy sample to the next healthy one (or ``end``)."""
    spans: list[tuple[float, float]] = []
    since: float | None = None
    for sample in sorted(samples, key=lambda h: h.t):
        if not sample.healthy and since is None:
            since = sample.t
        elif sample.healthy and since is not None:
            spans.append((since, sample.t))
            since = None
    if since is not None:
        spans.append((since, end))
    return spans


def _faults(timeline: Timeline) -> list[str]:
    at = timeline.unscaled_since_fault
    return [
        f"Fault: {w.kind.value} on {w.target}{f' ({w.detail})' if w.detail else ''} from "
        f"{_s(at(w.start))} to {_s(at(w.end))} ({_s(timeline.unscaled(w.end - w.start))})."
        for w in timeline.faults
    ]


def _errors(timeline: Timeline) -> str:
    failed = sorted((r for r in timeline.requests if not r.ok), key=lambda r: r.t)
    if not failed:
        return f"No request failed ({len(timeline.requests)} in all)."
    at = timeline.unscaled_since_fault
    classes = Counter(r.error.value for r in failed if r.error is not None)
    words = ", ".join(f"{name} {n}" for name, n in classes.most_common())
    return (
        f"{len(failed)} of {len(timeline.requests)} requests failed ({words}): the first at "
        f"{_s(at(failed[0].t))}, the last at {_s(at(failed[-1].t))}."
    )


def _leases(timeline: Timeline) -> str:
    start = timeline.fault_start or 0.0
    lost = sorted(
        (c for c in timeline.leaders if not c.leading and c.t >= start), key=lambda c: c.t
    )
    if not timeline.leaders:
        return "No leader-elected component ran."
    if not lost:
        return "No leader lost its lease."
    at = timeline.unscaled_since_fault
    listed = ", ".join(f"{c.lease} by {c.candidate} at {_s(at(c.t))}" for c in lost[:LISTED])
    more = f" and {len(lost) - LISTED} more" if len(lost) > LISTED else ""
    losses = "1 lease loss" if len(lost) == 1 else f"{len(lost)} lease losses"
    return f"{losses}: {listed}{more}."


def _health(timeline: Timeline) -> list[str]:
    lines = []
    at = timeline.unscaled_since_fault
    heal = timeline.fault_end
    # As for the leases: what broke since the fault began. Before it, apiservers
    # start unhealthy until their first probes pass; that is start-up, not news.
    start = timeline.fault_start or 0.0
    for name in sorted({h.component for h in timeline.health}):
        samples = [h for h in timeline.health if h.component == name]
        spans = [s for s in unhealthy_spans(samples, timeline.duration) if s[1] > start]
        if not spans:
            continue
        first, back = spans[0][0], spans[-1][1]
        if len(spans) == 1:
            line = f"{name} unhealthy from {_s(at(first))}"
        else:
            total = timeline.unscaled(sum(b - a for a, b in spans))
            line = f"{name} unhealthy {len(spans)} times ({_s(total)} in all) from {_s(at(first))}"
        if back >= timeline.duration:
            line += " to the end of the run"
            if heal is not None:
                line += f", {_s(timeline.unscaled(timeline.duration - heal))} after the heal"
        else:
            line += f" to {_s(at(back))}"
            if heal is not None and back >= heal:
                line += f": healthy again {_s(timeline.unscaled(back - heal))} after the heal"
        lines.append(line + ".")
    return lines


def _workloads(timeline: Timeline) -> str | None:
    present = [c for c in CONTROLLERS if timeline.gauge_series(f"progress/{c}")]
    if not present or timeline.fault_end is None:
        return None
    times = {c: converge_time(timeline, c) for c in present}
    words = ", ".join(f"{c} {'not by the end' if t is None else _s(t)}" for c, t in times.items())
    return f"Workloads converged after the heal: {words}."


def what_happened(timeline: Timeline) -> list[str]:
    """The report's summary lines, most telling first."""
    if timeline.fault_start is None:
        lines = ["The scenario injected no fault."]
    else:
        lines = _faults(timeline)
    lines += [_errors(timeline), _leases(timeline), *_health(timeline)]
    workloads = _workloads(timeline)
    return [*lines, workloads] if workloads else lines
