"""The run's figures in unscaled seconds: what a time-scaled run must reproduce.

``report.json`` carries them under ``"figures"`` so that runs at different time
scales (and the scale-invariance benchmark, ``bench/scale_invariance.py``) can
be compared number by number. Every time is real seconds: a scaled run's
durations go through the one helper, :meth:`~etcdlab.common.timescale.TimeScale.unscaled`.
``detect`` counts from the start of the first fault, ``recover`` from the end
of the last one; a figure that did not happen (no error, never healthy again)
is ``None``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any

from etcdlab.common.timeline import ErrorClass, EventKind, Request, Timeline, between, quantile
from etcdlab.common.timescale import TimeScale
from etcdlab.report.claims import (
    APISERVER,
    CONTROLLERS,
    api_requests,
    connections_left,
    converge_time,
    leadership_losses,
)

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _first(times: Iterable[float], since: float, scale: TimeScale) -> float | None:
    """Unscaled seconds from ``since`` to the first of ``times`` at or after it."""
    later = [t for t in times if t >= since]
    return _round(scale.unscaled(min(later) - since)) if later else None


def latency(requests: list[Request], scale: TimeScale) -> dict[str, Any]:
    """Count, quantiles and maximum of the requests' latencies, unscaled."""
    values = [scale.unscaled(r.latency) for r in requests]
    summary: dict[str, Any] = {"requests": len(values)}
    for name, q in QUANTILES.items():
        summary[name] = _round(quantile(values, q))
    summary["max"] = _round(max(values, default=None))
    return summary


def unhealthy(
    timeline: Timeline, component: str, since: float, until: float = math.inf
) -> tuple[int, float]:
    """Failures (healthy -> unhealthy, or unhealthy first) and unhealthy seconds
    of ``component``'s health samples from ``since`` on, before ``until`` (run clock)."""
    samples = sorted(
        (h for h in timeline.health if h.component == component and since <= h.t < until),
        key=lambda h: h.t,
    )
    failures = sum(
        not sample.healthy and (i == 0 or samples[i - 1].healthy)
        for i, sample in enumerate(samples)
    )
    seconds = sum(b.t - a.t for a, b in itertools.pairwise(samples) if not a.healthy)
    return failures, seconds


def healthy_again(timeline: Timeline, component: str, since: float) -> float | None:
    """Unscaled seconds after ``since`` until ``component``'s health samples were
    healthy for good (0 if none failed after it); None if the last one is not."""
    samples = sorted(
        (h for h in timeline.health if h.component == component and h.t >= since),
        key=lambda h: h.t,
    )
    if not samples or not samples[-1].healthy:
        return None
    down = [h.t for h in samples if not h.healthy]
    if not down:
        return 0.0
    back = min(h.t for h in samples if h.t > down[-1])
    return timeline.unscaled(back - since)


def _recover(timeline: Timeline, prefix: str, end: float) -> float | None:
    """Unscaled seconds after ``end`` until every ``prefix*`` component was healthy
    for good; None if one never was (or none was sampled)."""
    components = sorted({h.component for h in timeline.health if h.component.startswith(prefix)})
    back = [healthy_again(timeline, component, end) for component in components]
    if not back or any(b is None for b in back):
        return None
    return _round(max(b or 0.0 for b in back))


def figures(timeline: Timeline) -> dict[str, Any]:
    """Every figure the scale-invariance benchmark compares, in unscaled units."""
    scale = timeline.time_scale
    start = timeline.fault_start or 0.0
    end = timeline.fault_end
    requests = [r for r in api_requests(timeline) if r.source == "etcd"]
    apiservers = sorted({h.component for h in timeline.health if h.component.startswith(APISERVER)})
    unhealthy_by_apiserver = [unhealthy(timeline, name, start) for name in apiservers]
    events = [e for e in timeline.events if e.t >= start]

    def count(kind: EventKind) -> int:
        return sum(e.kind is kind for e in events)

    def times(kind: EventKind) -> list[float]:
        return [e.t for e in events if e.kind is kind]

    errors = [r for r in requests if r.error is not None and r.t >= start]
    first = {
        "error": _first((r.t for r in errors), start, scale),
        "unhealthy": _first(
            (h.t for h in timeline.health if h.component in apiservers and not h.healthy),
            start,
            scale,
        ),
        "connection_lost": _first(connections_left(timeline, APISERVER), start, scale),
        "keepalive_failure": _first(times(EventKind.KEEPALIVE_FAILURE), start, scale),
        "renew_failure": _first(times(EventKind.RENEW_FAILED), start, scale),
        "lease_loss": _first(leadership_losses(timeline), start, scale),
    }
    signs = [first[k] for k in ("error", "unhealthy", "connection_lost", "keepalive_failure")]
    ran = [c for c in CONTROLLERS if timeline.gauge_series(f"progress/{c}")]
    lags = [scale.unscaled(g.value) for g in timeline.gauge_series("event_loop_lag")]
    converged = [converge_time(timeline, c) for c in ran]
    return {
        "lease_losses": sum(t >= start for t in leadership_losses(timeline)),
        "lease_acquisitions": sum(c.leading and c.t > start for c in timeline.leaders),
        "renew_failures": count(EventKind.RENEW_FAILED),
        "slow_path_renewals": count(EventKind.SLOW_PATH),
        "keepalive_failures": count(EventKind.KEEPALIVE_FAILURE),
        "connections_lost": sum(t >= start for t in connections_left(timeline, APISERVER)),
        "apiserver_health_failures": sum(f for f, _ in unhealthy_by_apiserver),
        "apiserver_unhealthy_seconds": _round(
            scale.unscaled(sum(s for _, s in unhealthy_by_apiserver))
        ),
        "errors": {c.value: sum(r.error is c for r in errors) for c in ErrorClass},
        "latency": {
            "before": latency([r for r in requests if r.t < start], scale),
            "fault": latency(list(between(requests, start, end or start)), scale),
            "after": latency([r for r in requests if end is not None and r.t >= end], scale),
            # How late the emulator's own event loop ran: real time no scale shrinks.
            "event_loop_lag": {
                "p99": _round(quantile(lags, 0.99)),
                "max": _round(max(lags, default=None)),
            },
        },
        "detect_seconds": {
            "first": min((s for s in signs if s is not None), default=None),
            **first,
        },
        "recover_seconds": {
            "apiservers_healthy": None if end is None else _recover(timeline, APISERVER, end),
            "members_healthy": None if end is None else _recover(timeline, "etcd-", end),
            "workloads_converged": None
            if end is None or not ran or any(t is None for t in converged)
            else _round(max(t or 0.0 for t in converged)),
        },
    }
