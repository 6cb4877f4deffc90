"""What a scenario run measured: timestamped records the report and the verdicts read.

The scenario engine and the components it runs write into one :class:`Timeline`
through a :class:`Recorder` (which stamps records with its clock); the claims
(:mod:`etcdlab.report.claims`) and the report (:mod:`etcdlab.report.render`) only read it.
Times are seconds since the run started, on the run's (possibly scaled) clock;
:meth:`Timeline.unscaled_since_fault` converts them to unscaled seconds after
the fault began, which is how the failure analysis phrases every claim.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from etcdlab.common.clock import Clock
from etcdlab.common.timescale import TimeScale


class ErrorClass(StrEnum):
    """The analysis's error classification, plus what fits none of it."""

    CONTEXT = "context"  # cancelled or deadline exceeded
    CLUSTER = "cluster"  # every endpoint failed
    RESPONSE = "response"  # the server answered with an error or garbage
    OTHER = "other"


class EventKind(StrEnum):
    KEEPALIVE_FAILURE = "keepalive_failure"  # transport closed by a keepalive timeout
    # A client's connection to a member changed state; detail
    # "<endpoint> <STATE> <client>" (+ ": <why>" for TRANSIENT_FAILURE), as the
    # Go reference writes it.
    TRANSPORT_STATE = "transport_state"
    RENEW_FAILED = "renew_failed"  # a leader's renew attempt failed (detail: lease)
    SLOW_PATH = "slow_path"  # optimistic renew failed, fell back to read-then-update
    ACQUIRE_FAILED = "acquire_failed"  # a candidate tried to take a lease and could not
    RELIST = "relist"  # an informer listed again after its watch broke
    NOTE = "note"  # why a check turned unhealthy (the Go reference's checks write it)


class FaultKind(StrEnum):
    LOSS = "loss"
    PARTITION_MINORITY = "partition-minority"  # one member cut off, quorum kept
    PARTITION_MAJORITY = "partition-majority"  # quorum lost
    KILL = "kill"
    PAUSE = "pause"
    FLAPPING = "flapping"  # links down and up again, repeatedly
    MTU = "mtu"  # IP packets above a size dropped (a path MTU black hole)


PARTITIONS = frozenset({FaultKind.PARTITION_MINORITY, FaultKind.PARTITION_MAJORITY})
NODE_FAILURES = frozenset({FaultKind.KILL, FaultKind.PAUSE})
WRITE_OPS = frozenset({"put", "delete", "txn", "create", "update"})


@dataclass(frozen=True)
class Request:
    """One request an emulated component made (through its etcd client or cache)."""

    t: float
    component: str
    op: str
    latency: float
    error: ErrorClass | None = None
    source: str = "etcd"  # "cache" when the apiserver's watch cache answered
    member: str | None = None  # the endpoint of the last attempt (None: no attempt reached one)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Health:
    t: float
    component: str  # "apiserver-0" for the apiserver's probe, "etcd-1" for a member
    healthy: bool


@dataclass(frozen=True)
class Event:
    t: float
    component: str
    kind: EventKind
    detail: str = ""


@dataclass(frozen=True)
class LeaderChange:
    """``candidate`` started (``leading``) or stopped believing it leads ``lease``."""

    t: float
    lease: str
    candidate: str
    leading: bool


@dataclass(frozen=True)
class Gauge:
    t: float
    name: str  # "workqueue/deployment", "progress/statefulset", "event_loop_lag", ...
    value: float


@dataclass(frozen=True)
class Reconcile:
    t: float  # when the reconcile finished
    controller: str
    key: str
    duration: float
    ops: int  # etcd operations it made
    ok: bool


@dataclass(frozen=True)
class FaultWindow:
    start: float
    end: float
    kind: FaultKind
    target: str  # "etcd-0", "etcd-0,etcd-1", ...
    detail: str = ""


@dataclass(frozen=True)
class Interval:
    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass
class Timeline:
    scenario: str
    seed: int
    time_scale: TimeScale
    duration: float = 0.0  # run length on the run's clock, set when the run ends
    requests: list[Request] = field(default_factory=list)
    health: list[Health] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    leaders: list[LeaderChange] = field(default_factory=list)
    gauges: list[Gauge] = field(default_factory=list)
    reconciles: list[Reconcile] = field(default_factory=list)
    faults: list[FaultWindow] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.time_scale = TimeScale(self.time_scale)

    # Time helpers: every claim speaks in unscaled seconds after the fault began.

    @property
    def fault_start(self) -> float | None:
        return min((w.start for w in self.faults), default=None)

    @property
    def fault_end(self) -> float | None:
        return max((w.end for w in self.faults), default=None)

    def unscaled(self, duration: float) -> float:
        """A duration on the run's clock as the real seconds it stands for."""
        return self.time_scale.unscaled(duration)

    def scaled(self, unscaled: float) -> float:
        """Real seconds as a duration on the run's clock."""
        return self.time_scale.scaled(unscaled)

    def unscaled_since_fault(self, t: float) -> float:
        """``t`` as unscaled seconds after the first fault began."""
        return self.unscaled(t - (self.fault_start or 0.0))

    def run_time_at(self, unscaled: float, since: float | None = None) -> float:
        """The run time ``unscaled`` real seconds after ``since`` (default: fault start)."""
        origin = self.fault_start if since is None else since
        return (origin or 0.0) + self.scaled(unscaled)

    def in_fault(self, t: float) -> bool:
        return any(w.start <= t < w.end for w in self.faults)

    # Derived views used by the claims and the plots.

    def gauge_series(self, name: str) -> list[Gauge]:
        return [g for g in self.gauges if g.name == name]

    def gauge_names(self, prefix: str) -> list[str]:
        return sorted({g.name for g in self.gauges if g.name.startswith(prefix)})

    def components(self, prefix: str = "") -> list[str]:
        return sorted({r.component for r in self.requests if r.component.startswith(prefix)})

    def leadership(self) -> dict[str, dict[str, list[Interval]]]:
        """Per lease, per candidate: the intervals it believed it was the leader."""
        result: dict[str, dict[str, list[Interval]]] = {}
        since: dict[tuple[str, str], float] = {}
        for change in sorted(self.leaders, key=lambda c: c.t):
            key = (change.lease, change.candidate)
            if change.leading:
                since.setdefault(key, change.t)
            elif key in since:
                start = since.pop(key)
                result.setdefault(change.lease, {}).setdefault(change.candidate, []).append(
                    Interval(start, change.t)
                )
        end = max(self.duration, max((c.t for c in self.leaders), default=0.0))
        for (lease, candidate), start in since.items():
            result.setdefault(lease, {}).setdefault(candidate, []).append(Interval(start, end))
        return result

    def overlapping_leaders(self) -> list[tuple[str, str, str, Interval]]:
        """(lease, candidate, candidate, overlap) for every two leaders at once."""
        found: list[tuple[str, str, str, Interval]] = []
        for lease, by_candidate in sorted(self.leadership().items()):
            names = sorted(by_candidate)
            for i, first in enumerate(names):
                for second in names[i + 1 :]:
                    for a in by_candidate[first]:
                        for b in by_candidate[second]:
                            if a.overlaps(b):
                                overlap = Interval(max(a.start, b.start), min(a.end, b.end))
                                found.append((lease, first, second, overlap))
        return found

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_timeline(path: Path) -> Timeline:
    """A run's ``timeline.json`` read back: its requests, health samples, events,
    leader changes and fault windows (what the figures read; not the gauges)."""
    data = json.loads(path.read_text())
    timeline = Timeline(data["scenario"], data["seed"], data["time_scale"], data["duration"])
    timeline.settings = data["settings"]
    timeline.requests = [
        replace(
            Request(**{k: v for k, v in r.items() if k != "error"}),
            error=None if r["error"] is None else ErrorClass(r["error"]),
        )
        for r in data["requests"]
    ]
    timeline.health = [Health(**h) for h in data["health"]]
    timeline.events = [
        Event(e["t"], e["component"], EventKind(e["kind"]), e["detail"]) for e in data["events"]
    ]
    timeline.leaders = [LeaderChange(**c) for c in data["leaders"]]
    timeline.faults = [
        FaultWindow(f["start"], f["end"], FaultKind(f["kind"]), f["target"], f["detail"])
        for f in data["faults"]
    ]
    return timeline


def quantile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank quantile; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def value_at(series: list[Gauge], t: float) -> float | None:
    """The gauge's last sampled value at or before ``t``."""
    times = [g.t for g in series]
    index = bisect.bisect_right(times, t) - 1
    return series[index].value if index >= 0 else None


def between(records: Iterable[Any], start: float, end: float) -> Iterator[Any]:
    """Records (anything with ``.t``) with ``start <= t < end``."""
    return (r for r in records if start <= r.t < end)


class Recorder:
    """Stamps records with the time since the run began and appends them."""

    def __init__(self, timeline: Timeline, clock: Clock) -> None:
        self.timeline = timeline
        self._clock = clock
        self._origin = clock.now()
        self.finished = False

    def now(self) -> float:
        return self._clock.now() - self._origin

    def request(
        self,
        component: str,
        op: str,
        latency: float,
        error: ErrorClass | None = None,
        source: str = "etcd",
        member: str | None = None,
    ) -> None:
        self._add(
            self.timeline.requests,
            Request(self.now(), component, op, latency, error, source, member),
        )

    def health(self, component: str, healthy: bool) -> None:
        self._add(self.timeline.health, Health(self.now(), component, healthy))

    def event(self, component: str, kind: EventKind, detail: str = "") -> None:
        self._add(self.timeline.events, Event(self.now(), component, kind, detail))

    def leader(self, lease: str, candidate: str, leading: bool) -> None:
        self._add(self.timeline.leaders, LeaderChange(self.now(), lease, candidate, leading))

    def gauge(self, name: str, value: float) -> None:
        self._add(self.timeline.gauges, Gauge(self.now(), name, value))

    def reconcile(self, controller: str, key: str, duration: float, ops: int, ok: bool) -> None:
        self._add(
            self.timeline.reconciles, Reconcile(self.now(), controller, key, duration, ops, ok)
        )

    def fault(self, start: float, kind: FaultKind, target: str, detail: str = "") -> None:
        """A fault that began at ``start`` (a :meth:`now` value) and ends now."""
        self._add(self.timeline.faults, FaultWindow(start, self.now(), kind, target, detail))

    def add(self, record: Request | Health | Event | LeaderChange) -> None:
        """A record stamped elsewhere (another process's, on this run's clock)."""
        lists: dict[type, list[Any]] = {
            Request: self.timeline.requests,
            Health: self.timeline.health,
            Event: self.timeline.events,
            LeaderChange: self.timeline.leaders,
        }
        self._add(lists[type(record)], record)

    def _add(self, records: list[Any], record: Any) -> None:
        # Shutting the run down (leaders stepping down, calls cancelled) is not
        # part of what was measured.
        if not self.finished:
            records.append(record)

    def finish(self) -> Timeline:
        """End the run: its duration is now, and later records are dropped."""
        if not self.finished:
            self.timeline.duration = self.now()
            self.finished = True
        return self.timeline
