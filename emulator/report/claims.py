"""The failure analysis's claims as data, each with the measurement that checks it.

Every claim quotes the analysis (``seed/000_bd9b93acf091881a.txt``) and evaluates a
:class:`~etcdlab.common.timeline.Timeline` to a :class:`Finding`: a verdict and the
measured numbers in words. Verdicts:

* ``agrees``: the run showed what the analysis says, in the window it names;
* ``differs``: the run exercised the situation and showed something else (the
  measured text says what, with numbers);
* ``not observed``: the run did not exercise it (no fault of that kind, no
  component of that kind, nothing to measure).

Windows are unscaled seconds after the fault began; a scaled run's times go
through :meth:`Timeline.unscaled` (the one conversion) first.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from etcdlab.common.timeline import (
    NODE_FAILURES,
    PARTITIONS,
    WRITE_OPS,
    ErrorClass,
    EventKind,
    FaultKind,
    Request,
    Timeline,
    between,
    quantile,
    value_at,
)

APISERVER = "apiserver"
CONTROLLERS = ("statefulset", "deployment", "daemonset")
# Latency "increases dramatically": an order of magnitude over the baseline p99.
DRAMATIC = 10.0
# "Increased latency": at least twice the baseline p99.
INCREASED = 2.0
# A controller with work pending and no successful reconcile for this long (unscaled
# seconds) is stalled.
STALL_AFTER = 5.0
# Partitioned members "rejoin seamlessly" if healthy again this soon after the heal.
REJOIN_WITHIN = 60.0


class Verdict(StrEnum):
    AGREES = "agrees"
    DIFFERS = "differs"
    NOT_OBSERVED = "not observed"


# Unscaled seconds since the fault began: the report's one clock. ``inf`` is open-ended.
Span = tuple[float, float]


@dataclass(frozen=True)
class Finding:
    verdict: Verdict
    measured: str
    window: Span | None = None  # where the evaluation looked (the claim's window)
    at: float | None = None  # the moment that decided it (the first event, say)


# The plots (and tables) of the report a claim can be decided on.
PLOTS = ("latency", "requests", "health", "events", "leaders", "progress", "workqueue",
         "informers", "controllers")  # fmt: skip


@dataclass(frozen=True)
class Claim:
    id: str
    section: str
    claim: str
    evaluate: Callable[[Timeline], Finding]
    plot: str  # the one of PLOTS that shows what decided it

    def __post_init__(self) -> None:
        if self.plot not in PLOTS:
            raise ValueError(f"claim {self.id}: plot must be one of {', '.join(PLOTS)}")


def _s(seconds: float) -> str:
    return f"{seconds:.1f} s"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _no_fault(timeline: Timeline) -> Finding | None:
    if timeline.fault_start is None:
        return Finding(Verdict.NOT_OBSERVED, "the scenario injected no fault")
    return None


def _onset(
    timeline: Timeline,
    what: str,
    times: Iterable[float],
    window: tuple[float, float],
    present: bool,
) -> Finding:
    """Did the first ``what`` after the fault began fall inside ``window``?"""
    if (missing := _no_fault(timeline)) is not None:
        return missing
    if not present:
        return Finding(Verdict.NOT_OBSERVED, f"nothing in this run could show {what}")
    start = timeline.fault_start or 0.0
    after = sorted(t for t in times if t >= start)
    low, high = window
    claimed = f"claimed: {low:g}-{high:g} s" if high != float("inf") else f"claimed: {low:g} s+"
    if not after:
        fault_length = timeline.unscaled_since_fault(timeline.fault_end or start)
        return Finding(
            Verdict.DIFFERS, f"no {what} in {_s(fault_length)} of fault ({claimed})", window
        )
    first = timeline.unscaled_since_fault(after[0])
    verdict = Verdict.AGREES if low <= first <= high else Verdict.DIFFERS
    return Finding(
        verdict,
        f"first {what} {_s(first)} after the fault began ({claimed}); {len(after)} in all",
        window,
        first,
    )


def api_requests(timeline: Timeline) -> list[Request]:
    return [r for r in timeline.requests if r.component.startswith(APISERVER)]


def _window(timeline: Timeline, window: Span) -> tuple[float, float]:
    """``window`` (unscaled seconds since the fault began) on the run's clock."""
    return timeline.run_time_at(window[0]), timeline.run_time_at(window[1])


def _fault_span(timeline: Timeline) -> Span:
    """While the faults were on, in unscaled seconds since the first began."""
    return 0.0, timeline.unscaled_since_fault(timeline.fault_end or 0.0)


def _after_heal(timeline: Timeline, low: float, high: float) -> Span:
    """``low``-``high`` unscaled seconds after the last fault ended."""
    healed = timeline.unscaled_since_fault(timeline.fault_end or 0.0)
    return healed + low, healed + high


def _baseline_p99(timeline: Timeline) -> float | None:
    start = timeline.fault_start or 0.0
    return quantile((r.latency for r in api_requests(timeline) if r.t < start and r.ok), 0.99)


def _event_times(timeline: Timeline, kind: EventKind) -> list[float]:
    return [e.t for e in timeline.events if e.kind is kind]


def leadership_losses(timeline: Timeline) -> list[float]:
    return [c.t for c in timeline.leaders if not c.leading]


# Timeline phases.


def client_failures(timeline: Timeline) -> Finding:
    requests = api_requests(timeline)
    return _onset(
        timeline,
        "etcd client error",
        [r.t for r in requests if not r.ok] + _event_times(timeline, EventKind.KEEPALIVE_FAILURE),
        (0, 10),
        bool(requests),
    )


def health_degraded(timeline: Timeline) -> Finding:
    probes = [h for h in timeline.health if h.component.startswith(APISERVER)]
    return _onset(
        timeline,
        "failed health check",
        [h.t for h in probes if not h.healthy],
        (0, 10),
        bool(probes),
    )


def renew_failures_early(timeline: Timeline) -> Finding:
    return _onset(
        timeline,
        "failed renew",
        _event_times(timeline, EventKind.RENEW_FAILED),
        (0, 10),
        bool(timeline.leaders),
    )


def leadership_transitions(timeline: Timeline) -> Finding:
    return _onset(
        timeline,
        "leadership loss",
        leadership_losses(timeline),
        (10, 60),
        bool(timeline.leaders),
    )


def latency_dramatic(timeline: Timeline) -> Finding:
    if (missing := _no_fault(timeline)) is not None:
        return missing
    baseline = _baseline_p99(timeline)
    window = (10.0, 60.0)
    low, high = _window(timeline, window)
    during = quantile((r.latency for r in between(api_requests(timeline), low, high)), 0.99)
    if baseline is None or during is None:
        return Finding(Verdict.NOT_OBSERVED, "no apiserver requests before the fault or at 10-60 s")
    ratio = during / baseline if baseline > 0 else float("inf")
    verdict = Verdict.AGREES if ratio >= DRAMATIC else Verdict.DIFFERS
    return Finding(
        verdict,
        f"apiserver p99 {_ms(baseline)} before the fault, {_ms(during)} at 10-60 s "
        f"({ratio:.1f}x; 'dramatic' taken as >= {DRAMATIC:g}x)",
        window,
    )


def stall_intervals(timeline: Timeline, controller: str) -> list[tuple[float, float]]:
    """Periods the controller had unfinished work and no successful reconcile for
    :data:`STALL_AFTER` unscaled seconds (sampled at its progress gauge)."""
    progress = timeline.gauge_series(f"progress/{controller}")
    successes = sorted(r.t for r in timeline.reconciles if r.controller == controller and r.ok)
    limit = timeline.scaled(STALL_AFTER)
    stalls: list[tuple[float, float]] = []
    for sample, following in itertools.pairwise(progress):
        if sample.value >= 1.0:
            continue
        last_ok = max((t for t in successes if t <= sample.t), default=None)
        if last_ok is not None and sample.t - last_ok < limit:
            continue
        if stalls and stalls[-1][1] == sample.t:
            stalls[-1] = (stalls[-1][0], following.t)
        else:
            stalls.append((sample.t, following.t))
    return stalls


def reconcile_pauses(timeline: Timeline) -> Finding:
    present = any(timeline.gauge_series(f"progress/{c}") for c in CONTROLLERS)
    starts = [s for c in CONTROLLERS for s, _ in stall_intervals(timeline, c)]
    return _onset(timeline, "reconcile stall", starts, (10, 60), present)


def converge_time(timeline: Timeline, controller: str) -> float | None:
    """Unscaled seconds after the last fault ended until the controller was done for good."""
    progress = timeline.gauge_series(f"progress/{controller}")
    end = timeline.fault_end
    if end is None or not progress or progress[-1].value < 1.0:
        return None
    last_incomplete = max((g.t for g in progress if g.value < 1.0), default=None)
    if last_incomplete is None:
        return 0.0
    done_at = min(g.t for g in progress if g.t > last_incomplete and g.value >= 1.0)
    return timeline.unscaled(max(0.0, done_at - end))


def re_election(timeline: Timeline) -> Finding:
    if (missing := _no_fault(timeline)) is not None:
        return missing
    losses = leadership_losses(timeline)
    start = timeline.fault_start or 0.0
    gains = sorted(c.t for c in timeline.leaders if c.leading and c.t > start)
    if not [t for t in losses if t >= start]:
        if not timeline.leaders:
            return Finding(Verdict.NOT_OBSERVED, "no leader-elected components ran")
        return Finding(Verdict.DIFFERS, "no leader lost its lease, so nothing was re-elected")
    window = (60.0, 300.0)
    if not gains:
        return Finding(Verdict.DIFFERS, "leases were lost and no new leader was elected", window)
    last = timeline.unscaled_since_fault(gains[-1])
    verdict = Verdict.AGREES if window[0] <= last <= window[1] else Verdict.DIFFERS
    return Finding(
        verdict,
        f"{len(gains)} acquisitions after the fault began, the last {_s(last)} in "
        "(claimed: 60-300 s)",
        window,
        last,
    )


def full_reconciliation(timeline: Timeline) -> Finding:
    if (missing := _no_fault(timeline)) is not None:
        return missing
    times = {c: converge_time(timeline, c) for c in CONTROLLERS}
    present = [c for c in CONTROLLERS if timeline.gauge_series(f"progress/{c}")]
    if not present:
        return Finding(Verdict.NOT_OBSERVED, "no workload controllers ran")
    window = _after_heal(timeline, 120, 600)
    unconverged = [c for c in present if times[c] is None]
    if unconverged:
        return Finding(
            Verdict.DIFFERS,
            f"not converged by the end of the run: {', '.join(unconverged)}",
            window,
        )
    slowest = max(times[c] or 0.0 for c in present)
    words = ", ".join(f"{c} {_s(times[c] or 0.0)}" for c in present)
    verdict = Verdict.AGREES if 120 <= slowest <= 600 else Verdict.DIFFERS
    return Finding(
        verdict,
        f"converged after the fault ended: {words} (claimed: 120-600 s)",
        window,
        _after_heal(timeline, slowest, slowest)[0],
    )


# API server failure sequence.


def keepalive_detection(timeline: Timeline) -> Finding:
    return _onset(
        timeline,
        "keepalive failure",
        _event_times(timeline, EventKind.KEEPALIVE_FAILURE),
        (0, 10),
        bool(api_requests(timeline)),
    )


def healthcheck_failures(timeline: Timeline) -> Finding:
    probes = [h for h in timeline.health if h.component.startswith(APISERVER)]
    return _onset(
        timeline,
        "failed health check",
        [h.t for h in probes if not h.healthy],
        (10, 20),
        bool(probes),
    )


def latency_but_processing(timeline: Timeline) -> Finding:
    if (missing := _no_fault(timeline)) is not None:
        return missing
    window = (20.0, 30.0)
    low, high = _window(timeline, window)
    served = list(between(api_requests(timeline), low, high))
    baseline = _baseline_p99(timeline)
    if not served or baseline is None:
        return Finding(Verdict.NOT_OBSERVED, "no apiserver requests before the fault or at 20-30 s")
    ok = [r for r in served if r.ok]
    p99 = quantile((r.latency for r in served), 0.99) or 0.0
    ratio = p99 / baseline if baseline > 0 else float("inf")
    success = len(ok) / len(served)
    verdict = Verdict.AGREES if ok and ratio >= INCREASED else Verdict.DIFFERS
    return Finding(
        verdict,
        f"at 20-30 s {success:.0%} of {len(served)} requests succeeded, p99 {_ms(p99)} "
        f"vs {_ms(baseline)} before the fault ({ratio:.1f}x)",
        window,
    )


def connections_left(timeline: Timeline, component: str = "") -> list[float]:
    """When a client's connection to a member stopped taking calls (it left READY,
    or an attempt to connect failed): the balancer rotates past that member."""
    return [
        e.t
        for e in timeline.events
        if e.kind is EventKind.TRANSPORT_STATE
        and e.component.startswith(component)
        and e.detail.split()[1:2] in (["IDLE"], ["TRANSIENT_FAILURE"])
    ]


def rotation(window: tuple[float, float]) -> Callable[[Timeline], Finding]:
    def evaluate(timeline: Timeline) -> Finding:
        return _onset(
            timeline,
            "lost connection",
            connections_left(timeline, APISERVER),
            window,
            bool(api_requests(timeline)),
        )

    return evaluate


def health_nonblocking(timeline: Timeline) -> Finding:
    unhealthy: list[tuple[float, float]] = []
    for component in sorted({h.component for h in timeline.health}):
        if not component.startswith(APISERVER):
            continue
        probes = sorted((h for h in timeline.health if h.component == component), key=lambda h: h.t)
        unhealthy += [(a.t, b.t) for a, b in itertools.pairwise(probes) if not a.healthy]
    if not unhealthy:
        return Finding(Verdict.NOT_OBSERVED, "the health check never failed")
    served = [r for r in api_requests(timeline) if any(lo <= r.t < hi for lo, hi in unhealthy)]
    ok = sum(r.ok for r in served)
    unhealthy_time = timeline.unscaled(sum(hi - lo for lo, hi in unhealthy))
    verdict = Verdict.AGREES if ok else Verdict.DIFFERS
    return Finding(
        verdict,
        f"{ok} of {len(served)} requests succeeded during {_s(unhealthy_time)} of failing "
        "health checks",
    )


def cache_serves_reads(timeline: Timeline) -> Finding:
    if (missing := _no_fault(timeline)) is not None:
        return missing
    reads = [
        r
        for r in api_requests(timeline)
        if r.op not in WRITE_OPS and timeline.in_fault(r.t) and r.ok
    ]
    if not reads:
        return Finding(Verdict.NOT_OBSERVED, "no successful apiserver reads during the fault")
    cached = sum(r.source == "cache" for r in reads)
    share = cached / len(reads)
    verdict = Verdict.AGREES if share > 0.5 else Verdict.DIFFERS
    return Finding(
        verdict,
        f"{share:.0%} of {len(reads)} reads during the fault came from the cache",
        _fault_span(timeline),
    )


def error_classes(timeline: Timeline) -> Finding:
    errors = [r.error for r in timeline.requests if r.error is not None]
    if not errors:
        return Finding(Verdict.NOT_OBSERVED, "no request failed")
    counts = {c: errors.count(c) for c in ErrorClass}
    words = ", ".join(f"{c.value} {n}" for c, n in counts.items() if n)
    verdict = Verdict.AGREES if counts[ErrorClass.OTHER] == 0 else Verdict.DIFFERS
    return Finding(verdict, f"{len(errors)} errors: {words}")


# Leader election steps.


def slow_path(timeline: Timeline) -> Finding:
    return _onset(
        timeline,
        "slow-path renew",
        _event_times(timeline, EventKind.SLOW_PATH),
        (10, 15),
        bool(timeline.leaders),
    )


def leadership_loss(timeline: Timeline) -> Finding:
    return _onset(
        timeline, "leadership loss", leadership_losses(timeline), (15, 25), bool(timeline.leaders)
    )


def election_chaos(timeline: Timeline) -> Finding:
    if (missing := _no_fault(timeline)) is not None:
        return missing
    if not timeline.leaders:
        return Finding(Verdict.NOT_OBSERVED, "no leader-elected components ran")
    window = (15.0, 30.0)
    low, high = _window(timeline, window)
    contenders: dict[str, set[str]] = {}
    for event in between(timeline.events, low, high):
        if event.kind is EventKind.ACQUIRE_FAILED:
            contenders.setdefault(event.detail, set()).add(event.component)
    contested = {lease: names for lease, names in contenders.items() if len(names) > 1}
    if contested:
        most = max(len(names) for names in contested.values())
        return Finding(
            Verdict.AGREES,
            f"{len(contested)} leases had several candidates trying at 15-30 s (up to {most})",
            window,
        )
    return Finding(
        Verdict.DIFFERS,
        f"no lease had two or more candidates failing to acquire it at 15-30 s "
        f"({sum(len(n) for n in contenders.values())} failed attempts in all)",
        window,
    )


def stabilization(timeline: Timeline) -> Finding:
    if (missing := _no_fault(timeline)) is not None:
        return missing
    start = timeline.fault_start or 0.0
    lost = {c.lease for c in timeline.leaders if not c.leading and c.t >= start}
    if not lost:
        if not timeline.leaders:
            return Finding(Verdict.NOT_OBSERVED, "no leader-elected components ran")
        return Finding(Verdict.DIFFERS, "no lease changed hands, nothing had to stabilise")
    regained = {
        lease: max(c.t for c in timeline.leaders if c.lease == lease and c.leading)
        for lease in lost
        if any(c.lease == lease and c.leading and c.t >= start for c in timeline.leaders)
    }
    window = (30.0, 45.0)
    if len(regained) < len(lost):
        return Finding(
            Verdict.DIFFERS,
            f"{len(lost) - len(regained)} of {len(lost)} lost leases got no leader",
            window,
        )
    last = timeline.unscaled_since_fault(max(regained.values()))
    verdict = Verdict.AGREES if window[0] <= last <= window[1] else Verdict.DIFFERS
    return Finding(
        verdict,
        f"every lost lease ({len(lost)}) had a leader again by {_s(last)} (claimed: 30-45 s)",
        window,
        last,
    )


def single_leader(timeline: Timeline) -> Finding:
    if not timeline.leaders:
        return Finding(Verdict.NOT_OBSERVED, "no leader-elected components ran")
    overlaps = timeline.overlapping_leaders()
    if not overlaps:
        return Finding(
            Verdict.AGREES,
            f"{len(timeline.leadership())} leases, never two leaders of one lease at once",
        )
    worst = timeline.unscaled(max(o[3].length for o in overlaps))
    return Finding(
        Verdict.DIFFERS,
        f"{len(overlaps)} overlaps of two leaders of one lease, the longest {_s(worst)}",
    )


# Workloads.


def impact(timeline: Timeline, controller: str) -> float | None:
    """Unscaled seconds stalled plus unscaled seconds to converge after the fault."""
    converge = converge_time(timeline, controller)
    if converge is None:
        return None
    stalled = sum(b - a for a, b in stall_intervals(timeline, controller))
    return timeline.unscaled(stalled) + converge


def workload_ranking(timeline: Timeline) -> Finding:
    if (missing := _no_fault(timeline)) is not None:
        return missing
    if not all(timeline.gauge_series(f"progress/{c}") for c in CONTROLLERS):
        return Finding(Verdict.NOT_OBSERVED, "not all three workload controllers ran")
    impacts = {c: impact(timeline, c) for c in CONTROLLERS}
    words = ", ".join(
        f"{c} {'never converged' if v is None else _s(v)}" for c, v in impacts.items()
    )
    scored = [float("inf") if v is None else v for v in impacts.values()]
    ranked = scored[0] < scored[1] < scored[2]
    return Finding(
        Verdict.AGREES if ranked else Verdict.DIFFERS,
        f"stalled + time to converge: {words} (claimed: statefulset < deployment < daemonset)",
    )


def daemonset_ops(timeline: Timeline) -> Finding:
    # Reconciles that found nothing to do (most of them) say nothing about the cost
    # of managing a workload: count the ones that wrote.
    per: dict[str, float] = {}
    for controller in CONTROLLERS:
        ops = [r.ops for r in timeline.reconciles if r.controller == controller and r.ops]
        if ops:
            per[controller] = sum(ops) / len(ops)
    if "daemonset" not in per or len(per) < 2:
        return Finding(Verdict.NOT_OBSERVED, "the daemonset and another controller must write")
    words = ", ".join(f"{c} {v:.1f}" for c, v in per.items())
    verdict = Verdict.AGREES if per["daemonset"] == max(per.values()) else Verdict.DIFFERS
    return Finding(verdict, f"etcd writes per reconcile that changed something: {words}")


# Partition versus node failure.


def _windows(timeline: Timeline, kinds: Iterable[FaultKind]) -> list[tuple[float, float]]:
    wanted = set(kinds)
    return [(w.start, w.end) for w in timeline.faults if w.kind in wanted]


def _span(timeline: Timeline, windows: list[tuple[float, float]]) -> Span:
    """From the first window's start to the last one's end, since the fault began."""
    return (
        timeline.unscaled_since_fault(windows[0][0]),
        timeline.unscaled_since_fault(windows[-1][1]),
    )


def majority_continues(timeline: Timeline) -> Finding:
    windows = _windows(timeline, [FaultKind.PARTITION_MINORITY])
    if not windows:
        return Finding(Verdict.NOT_OBSERVED, "no minority partition in this scenario")
    requests = [r for r in api_requests(timeline) if any(a <= r.t < b for a, b in windows)]
    if not requests:
        return Finding(Verdict.NOT_OBSERVED, "no apiserver requests during the partition")
    ok = sorted(r.t for r in requests if r.ok)
    edges = [windows[0][0], *ok, windows[-1][1]]
    gap = timeline.unscaled(max(b - a for a, b in itertools.pairwise(edges)))
    share = len(ok) / len(requests)
    verdict = Verdict.AGREES if share >= 0.9 and gap <= STALL_AFTER else Verdict.DIFFERS
    return Finding(
        verdict,
        f"{share:.0%} of {len(requests)} requests succeeded during the partition, "
        f"longest time without a success {_s(gap)}",
        _span(timeline, windows),
    )


def quorum_loss(timeline: Timeline) -> Finding:
    windows = _windows(timeline, [FaultKind.PARTITION_MAJORITY])
    if not windows:
        return Finding(Verdict.NOT_OBSERVED, "no quorum loss in this scenario")
    during = [r for r in api_requests(timeline) if any(a <= r.t < b for a, b in windows)]
    writes = [r for r in during if r.op in WRITE_OPS]
    if not writes:
        return Finding(Verdict.NOT_OBSERVED, "no apiserver writes during the quorum loss")
    ok_writes = sum(r.ok for r in writes)
    cached = sum(r.ok and r.source == "cache" for r in during)
    verdict = Verdict.AGREES if ok_writes == 0 and cached == 0 else Verdict.DIFFERS
    return Finding(
        verdict,
        f"{ok_writes} of {len(writes)} writes succeeded without quorum; "
        f"{cached} reads were still served from the watch cache",
        _span(timeline, windows),
    )


def rejoin(timeline: Timeline) -> Finding:
    windows = _windows(timeline, PARTITIONS)
    if not windows:
        return Finding(Verdict.NOT_OBSERVED, "no partition in this scenario")
    members = sorted({h.component for h in timeline.health if h.component.startswith("etcd-")})
    if not members:
        return Finding(Verdict.NOT_OBSERVED, "member health was not sampled")
    heal = windows[-1][1]
    healed = timeline.unscaled_since_fault(heal)
    window = (healed, healed + REJOIN_WITHIN)
    slowest = 0.0
    for member in members:
        samples = sorted((h for h in timeline.health if h.component == member), key=lambda h: h.t)
        back = [h.t for h in samples if h.t >= heal and h.healthy]
        later_down = [h.t for h in samples if back and h.t > back[0] and not h.healthy]
        if not back or later_down:
            return Finding(
                Verdict.DIFFERS, f"{member} was not healthy for good after the heal", window
            )
        slowest = max(slowest, timeline.unscaled(back[0] - heal))
    verdict = Verdict.AGREES if slowest <= REJOIN_WITHIN else Verdict.DIFFERS
    return Finding(
        verdict,
        f"all members healthy {_s(slowest)} after the partition healed",
        window,
        healed + slowest,
    )


def node_failure_detection(timeline: Timeline) -> Finding:
    windows = _windows(timeline, NODE_FAILURES)
    if not windows:
        return Finding(Verdict.NOT_OBSERVED, "no member was killed or paused")
    start = windows[0][0]
    losses = [t for t in leadership_losses(timeline) if start <= t]
    renew_failed = _event_times(timeline, EventKind.RENEW_FAILED)
    switches = [t for t in connections_left(timeline) if t >= start]
    switch_words = (
        f"first lost connection {_s(timeline.unscaled(switches[0] - start))} after the failure"
        if switches
        else "no connection lost"
    )
    window = _span(timeline, windows)
    if losses and any(t <= losses[0] for t in renew_failed if t >= start):
        return Finding(
            Verdict.AGREES,
            f"leadership lost {_s(timeline.unscaled(losses[0] - start))} after the failure, "
            f"after failed renewals; {switch_words}",
            window,
            timeline.unscaled_since_fault(losses[0]),
        )
    return Finding(
        Verdict.DIFFERS, f"no leader lost its lease to renew timeouts; {switch_words}", window
    )


# Recovery.


def informer_cache_kept(timeline: Timeline) -> Finding:
    if (missing := _no_fault(timeline)) is not None:
        return missing
    names = timeline.gauge_names("informer_cache/")
    if not names:
        return Finding(Verdict.NOT_OBSERVED, "no informer ran")
    start = timeline.fault_start or 0.0
    relists = len([e for e in timeline.events if e.kind is EventKind.RELIST and e.t >= start])
    emptied = []
    for name in names:
        series = timeline.gauge_series(name)
        before = value_at(series, start)
        during = [g.value for g in series if timeline.in_fault(g.t)]
        if before and during and min(during) == 0:
            emptied.append(name.removeprefix("informer_cache/"))
    window = _fault_span(timeline)
    if emptied:
        return Finding(
            Verdict.DIFFERS, f"caches emptied during the fault: {', '.join(emptied)}", window
        )
    return Finding(
        Verdict.AGREES,
        f"{len(names)} informer caches never emptied during the fault; {relists} relists",
        window,
    )


def workqueue_buffers(timeline: Timeline) -> Finding:
    if (missing := _no_fault(timeline)) is not None:
        return missing
    names = timeline.gauge_names("workqueue/")
    if not names:
        return Finding(Verdict.NOT_OBSERVED, "no workqueue ran")
    peak = max(
        (g.value for n in names for g in timeline.gauge_series(n) if timeline.in_fault(g.t)),
        default=0.0,
    )
    final = sum(timeline.gauge_series(n)[-1].value for n in names)
    window = _fault_span(timeline)
    if peak == 0:
        return Finding(Verdict.DIFFERS, "work queues stayed empty during the fault", window)
    verdict = Verdict.AGREES if final == 0 else Verdict.DIFFERS
    return Finding(
        verdict,
        f"queue depth peaked at {peak:g} during the fault, {final:g} left at the end",
        window,
    )


def latency_normalizes(timeline: Timeline) -> Finding:
    end = timeline.fault_end
    baseline = _baseline_p99(timeline)
    if end is None or baseline is None:
        return Finding(Verdict.NOT_OBSERVED, "no fault or no baseline latency")
    bucket = timeline.scaled(5.0)
    after = sorted((r for r in api_requests(timeline) if r.t >= end), key=lambda r: r.t)
    if not after:
        return Finding(Verdict.NOT_OBSERVED, "no apiserver requests after the fault")
    normal_since: float | None = None
    t = end
    while t < after[-1].t:
        p99 = quantile((r.latency for r in between(after, t, t + bucket)), 0.99)
        if p99 is not None and p99 <= INCREASED * baseline:
            normal_since = t if normal_since is None else normal_since
        elif p99 is not None:
            normal_since = None
        t += bucket
    window = _after_heal(timeline, 600, float("inf"))
    if normal_since is None:
        return Finding(Verdict.DIFFERS, "latency had not returned to baseline by the end", window)
    seconds = timeline.unscaled(normal_since - end)
    verdict = Verdict.AGREES if seconds >= 600 else Verdict.DIFFERS
    return Finding(
        verdict,
        f"p99 back within {INCREASED:g}x of the baseline {_ms(baseline)} "
        f"{_s(seconds)} after the fault ended (claimed: 600 s+)",
        window,
        timeline.unscaled_since_fault(normal_since),
    )


CLAIMS: tuple[Claim, ...] = (
    Claim("phase.immediate.client-errors", "Timeline phases",
          "Immediate (0-10 s): etcd client connections experience intermittent failures",
          client_failures, "requests"),
    Claim("phase.immediate.health-degraded", "Timeline phases",
          "Immediate (0-10 s): API server health checks begin reporting degraded status",
          health_degraded, "health"),
    Claim("phase.immediate.renew-failures", "Timeline phases",
          "Immediate (0-10 s): leader election renewal attempts start failing sporadically",
          renew_failures_early, "events"),
    Claim("phase.short.leader-transitions", "Timeline phases",
          "Short-term (10-60 s): controller leadership transitions triggered",
          leadership_transitions, "leaders"),
    Claim("phase.short.latency", "Timeline phases",
          "Short-term (10-60 s): API server request latency increases dramatically",
          latency_dramatic, "latency"),
    Claim("phase.short.reconcile-pauses", "Timeline phases",
          "Short-term (10-60 s): some workload reconciliation pauses",
          reconcile_pauses, "progress"),
    Claim("phase.medium.re-election", "Timeline phases",
          "Medium-term (1-5 min): failed controllers restart and re-elect leaders",
          re_election, "leaders"),
    Claim("phase.medium.reconciliation", "Timeline phases",
          "Medium-term (2-10 min): full workload state reconciliation",
          full_reconciliation, "progress"),
    Claim("apiserver.keepalive-detection", "API server failure sequence",
          "Connection degradation (0-10 s): the etcd client detects packet loss through "
          "keepalive failures", keepalive_detection, "events"),
    Claim("apiserver.health-failures", "API server failure sequence",
          "Health check failures (10-20 s): background health monitoring reports "
          "connectivity issues (--etcd-healthcheck-timeout 2 s)", healthcheck_failures, "health"),
    Claim("apiserver.latency-continues", "API server failure sequence",
          "Request processing impact (20-30 s): requests see increased latency but "
          "continue processing", latency_but_processing, "latency"),
    Claim("apiserver.endpoint-rotation", "API server failure sequence",
          "Endpoint rotation (30 s+): the etcd client rotates between available endpoints",
          rotation((30, float("inf"))), "events"),
    Claim("apiserver.health-nonblocking", "API server failure sequence",
          "Health checks run independently and do not block API requests",
          health_nonblocking, "health"),
    Claim("apiserver.cache-serves-reads", "API server failure sequence",
          "The API server cache serves most reads independently of etcd",
          cache_serves_reads, "requests"),
    Claim("apiserver.error-classes", "API server failure sequence",
          "Errors are context errors, cluster errors (all endpoints failed) or response "
          "errors", error_classes, "requests"),
    Claim("election.slow-path", "Leader election steps",
          "Slow path fallback (10-15 s): failed optimistic renewals trigger full etcd reads",
          slow_path, "events"),
    Claim("election.leadership-loss", "Leader election steps",
          "Leadership loss (15-25 s): leaders unable to renew within RenewDeadline step down",
          leadership_loss, "leaders"),
    Claim("election.chaos", "Leader election steps",
          "Election chaos (15-30 s): multiple candidates attempt acquisition",
          election_chaos, "events"),
    Claim("election.stabilization", "Leader election steps",
          "Stabilization (30-45 s): new leaders elected", stabilization, "leaders"),
    Claim("election.single-leader", "Leader election steps",
          "Never two leaders of one lease at once (local-clock expiry, renew deadline "
          "shorter than the lease)", single_leader, "leaders"),
    Claim("workload.ranking", "Workloads",
          "StatefulSets are most resilient, Deployments moderately affected, DaemonSets "
          "most affected", workload_ranking, "progress"),
    Claim("workload.daemonset-ops", "Workloads",
          "DaemonSet node-by-node management requires more etcd interactions",
          daemonset_ops, "controllers"),
    Claim("partition.majority-continues", "Partition vs node failure",
          "Network partition: if a majority is accessible the cluster continues operating",
          majority_continues, "requests"),
    Claim("partition.quorum-loss", "Partition vs node failure",
          "Quorum lost: complete API unavailability", quorum_loss, "requests"),
    Claim("partition.rejoin", "Partition vs node failure",
          "When a partition heals, nodes rejoin seamlessly", rejoin, "health"),
    Claim("node-failure.detection", "Partition vs node failure",
          "Node failure: leaders detect it through renewal timeouts, new elections follow "
          "lease expiration", node_failure_detection, "leaders"),
    Claim("recovery.endpoint-rotation", "Recovery",
          "Immediate recovery (0-30 s): etcd client endpoint rotation fails over to "
          "healthy endpoints", rotation((0, 30)), "events"),
    Claim("recovery.informer-cache", "Recovery",
          "Informers maintain local caches during temporary unavailability",
          informer_cache_kept, "informers"),
    Claim("recovery.workqueue-buffers", "Recovery",
          "Work queues buffer operations during brief outages", workqueue_buffers, "workqueue"),
    Claim("recovery.latency-normalizes", "Recovery",
          "Long-term (10+ min): request latency returns to baseline", latency_normalizes,
          "latency"),
)  # fmt: skip


def evaluate(timeline: Timeline) -> list[tuple[Claim, Finding]]:
    return [(claim, claim.evaluate(timeline)) for claim in CLAIMS]
