"""The report's plots, on one clock: unscaled seconds since the first fault began.

The claims speak in those seconds ("first client error 19.4 s after the fault"),
so the plots do too; a record's time on the run's (scaled) clock goes through
:meth:`Timeline.unscaled_since_fault` on its way in, and each axis note says how
to get back to the run clock. A run without faults counts from its start.
The axis spans what was measured: from the first record to the run's end.

Each plot is a :class:`Figure` with an id; the claims decided on it mark their
windows there (:class:`~etcdlab.report.svgplot.Mark`, id ``claim-<claim id>``),
so the claim table can link to the window that decided each verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from etcdlab.common.timeline import ErrorClass, EventKind, Timeline, quantile
from etcdlab.report import svgplot
from etcdlab.report.svgplot import Mark, Segment, Series, Shade

# A hover column per bin: hovering names each bin's own values.
BINS = svgplot.HOVER_COLUMNS
# The bar: event-loop lag p99 under 20 ms at time scale 1.
EVENT_LOOP_LAG_LIMIT = 0.020
HEALTH_COLORS = {"healthy": "#2ca02c", "unhealthy": "#d62728"}
# Event kinds worth a line each, in words.
EVENTS = {
    EventKind.KEEPALIVE_FAILURE: "keepalive failures",
    EventKind.TRANSPORT_STATE: "connection state changes",
    EventKind.RENEW_FAILED: "failed renewals",
    EventKind.SLOW_PATH: "slow-path renewals",
    EventKind.ACQUIRE_FAILED: "failed acquisitions",
    EventKind.RELIST: "informer relists",
}


@dataclass(frozen=True)
class Figure:
    id: str  # one of etcdlab.report.claims.PLOTS
    title: str
    short: str  # what links to it say


FIGURES = (
    Figure("latency", "Request latency per component (p99 per bin)", "latency"),
    Figure(
        "requests",
        "Requests per bin: errors by class, and reads the watch cache served",
        "errors and cache reads",
    ),
    Figure("health", "Health (apiserver probes, etcd members)", "health"),
    Figure("events", "Client and election events (per bin)", "events"),
    Figure("leaders", "Who leads each lease", "leaders"),
    Figure("progress", "Reconcile progress (fraction done)", "reconcile progress"),
    Figure("workqueue", "Workqueue depth", "workqueue depth"),
    Figure("informers", "Informer cache size", "informer caches"),
    Figure("lag", "Event-loop lag", "event-loop lag"),
)


class Clock:
    """A timeline's records on the report's clock, and the axis they share."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        start, end = self(_first_record(timeline)), self(timeline.duration)
        # An empty run still gets a unit axis.
        self.x_range = (start, end) if end > start else (start, start + 1.0)
        self.bin = (self.x_range[1] - self.x_range[0]) / BINS

    def __call__(self, t: float) -> float:
        """A run-clock time as unscaled seconds since the fault began."""
        return self.timeline.unscaled_since_fault(t)

    def bin_of(self, t: float) -> int:
        return min(BINS - 1, int((self(t) - self.x_range[0]) / self.bin))

    def bin_middle(self, index: int) -> float:
        return self.x_range[0] + (index + 0.5) * self.bin

    @property
    def note(self) -> str:
        """The axis note: what the seconds are, and the run clock they stand for."""
        return f"{self._origin} (run clock: {self._run_clock})"

    @property
    def sentence(self) -> str:
        """The same, for the page's text."""
        return (
            f"Every time on this page is in {self._origin}, the clock the claims speak in; "
            f"on the run's own clock that is {self._run_clock}."
        )

    @property
    def _origin(self) -> str:
        began = "the run" if self.timeline.fault_start is None else "the fault"
        return f"seconds since {began} began, unscaled"

    @property
    def _run_clock(self) -> str:
        timeline = self.timeline
        scaled = f"{timeline.time_scale:g} x " if float(timeline.time_scale) != 1.0 else ""
        start = f"{timeline.fault_start:.1f} s + " if timeline.fault_start else ""
        return f"{start}{scaled}these seconds"

    def shades(self) -> list[Shade]:
        return [
            Shade(self(w.start), self(w.end), f"{w.kind.value} {w.target} {w.detail}".strip())
            for w in self.timeline.faults
        ]


def _first_record(timeline: Timeline) -> float:
    """When the run first measured something. The axis starts there: before it the
    cluster was starting, with nothing to plot, and at time scale 0.1 the 2 s that
    takes are 20 unscaled seconds, most of a short scenario's axis."""
    records: list[Iterable[Any]] = [
        timeline.requests,
        timeline.health,
        timeline.events,
        timeline.leaders,
        timeline.gauges,
        timeline.reconciles,
    ]
    times = [record.t for kind in records for record in kind]
    times += [window.start for window in timeline.faults]
    return min(times, default=0.0)


def _counts(clock: Clock, times: Iterable[float]) -> list[tuple[float, float]]:
    counts = [0] * BINS
    for t in times:
        counts[clock.bin_of(t)] += 1
    return [(clock.bin_middle(b), float(n)) for b, n in enumerate(counts)]


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def latency(clock: Clock, marks: Sequence[Mark]) -> str:
    series = []
    for name in clock.timeline.components():
        buckets: dict[int, list[float]] = {}
        for r in clock.timeline.requests:
            if r.component == name:
                buckets.setdefault(clock.bin_of(r.t), []).append(r.latency * 1000)
        # A bin without a finished request is a gap, not a line across it.
        p99 = [(clock.bin_middle(b), _or_nan(quantile(buckets.get(b, []), 0.99)))
               for b in range(BINS)]  # fmt: skip
        series.append(Series(f"{name} p99", p99))
    return svgplot.line_chart(
        _title("latency"), series, clock.x_range, clock.shades(), y_label="ms (log)",
        log_y=True, x_unit=clock.note, marks=marks, unit="ms",
    )  # fmt: skip


def requests(clock: Clock, marks: Sequence[Mark]) -> str:
    records = clock.timeline.requests
    series = [
        Series(error.value, _counts(clock, (r.t for r in records if r.error is error)),
               svgplot.color(i + 1))
        for i, error in enumerate(ErrorClass)
        if any(r.error is error for r in records)
    ]  # fmt: skip
    cached = [r.t for r in records if r.source == "cache"]
    if cached:
        series.append(Series("from cache", _counts(clock, cached), "#17becf"))
    return svgplot.line_chart(
        _title("requests"), series, clock.x_range, clock.shades(), y_label="requests",
        x_unit=clock.note, marks=marks, unit=f"in {clock.bin:.3g} s",
    )  # fmt: skip


def _state_segments(
    samples: Sequence[tuple[float, str]], end: float, colors: dict[str, str]
) -> list[Segment]:
    segments: list[Segment] = []
    for (t, state), following in zip(samples, [*samples[1:], (end, "")], strict=True):
        if segments and segments[-1].label == state and segments[-1].end == t:
            last = segments[-1]
            segments[-1] = Segment(last.start, following[0], state, last.color)
        else:
            segments.append(Segment(t, following[0], state, colors.setdefault(state, "#999")))
    return segments


def health(clock: Clock, marks: Sequence[Mark]) -> str:
    timeline = clock.timeline
    lanes = []
    for name in sorted({h.component for h in timeline.health}):
        samples = [
            (clock(h.t), "healthy" if h.healthy else "unhealthy")
            for h in sorted(timeline.health, key=lambda h: h.t)
            if h.component == name
        ]
        lanes.append((name, _state_segments(samples, clock.x_range[1], dict(HEALTH_COLORS))))
    return svgplot.lane_chart(
        _title("health"), lanes, clock.x_range, clock.shades(),
        legend=list(HEALTH_COLORS.items()), x_unit=clock.note, marks=marks,
    )  # fmt: skip


def events(clock: Clock, marks: Sequence[Mark]) -> str:
    records = clock.timeline.events
    series = [
        Series(words, _counts(clock, (e.t for e in records if e.kind is kind)), svgplot.color(i))
        for i, (kind, words) in enumerate(EVENTS.items())
        if any(e.kind is kind for e in records)
    ]
    return svgplot.line_chart(
        _title("events"), series, clock.x_range, clock.shades(), y_label="events",
        x_unit=clock.note, marks=marks, unit=f"in {clock.bin:.3g} s",
    )  # fmt: skip


def leaders(clock: Clock, marks: Sequence[Mark]) -> str:
    timeline = clock.timeline
    candidates = sorted({c.candidate for c in timeline.leaders})
    colors = {name: svgplot.color(i) for i, name in enumerate(candidates)}
    lanes = []
    for lease, by_candidate in sorted(timeline.leadership().items()):
        segments = [
            Segment(clock(i.start), clock(i.end), candidate, colors[candidate])
            for candidate, intervals in by_candidate.items()
            for i in intervals
        ]
        lanes.append((lease, sorted(segments, key=lambda s: s.start)))
    legend = list(colors.items()) if len(colors) <= svgplot.LEGEND_MAX else []
    return svgplot.lane_chart(
        _title("leaders"), lanes, clock.x_range, clock.shades(), legend, clock.note, marks
    )


def _gauges(clock: Clock, marks: Sequence[Mark], figure: str, prefix: str, unit: str) -> str:
    timeline = clock.timeline
    series = [
        Series(name.removeprefix(prefix),
               [(clock(g.t), g.value) for g in timeline.gauge_series(name)], step=True)
        for name in timeline.gauge_names(prefix)
    ]  # fmt: skip
    return svgplot.line_chart(
        _title(figure), series, clock.x_range, clock.shades(), y_label=unit,
        x_unit=clock.note, marks=marks, unit=unit,
    )  # fmt: skip


def progress(clock: Clock, marks: Sequence[Mark]) -> str:
    return _gauges(clock, marks, "progress", "progress/", "done")


def workqueue(clock: Clock, marks: Sequence[Mark]) -> str:
    return _gauges(clock, marks, "workqueue", "workqueue/", "items")


def informers(clock: Clock, marks: Sequence[Mark]) -> str:
    return _gauges(clock, marks, "informers", "informer_cache/", "objects")


def lag(clock: Clock, marks: Sequence[Mark]) -> str:
    points = [(clock(g.t), g.value * 1000) for g in clock.timeline.gauge_series("event_loop_lag")]
    start, end = clock.x_range
    limit_ms = EVENT_LOOP_LAG_LIMIT * 1000
    limit = Series("limit", [(start, limit_ms), (end, limit_ms)], "#aaa")
    return svgplot.line_chart(
        _title("lag"), [Series("lag", points), limit], clock.x_range, clock.shades(),
        y_label="ms", x_unit=clock.note, marks=marks, unit="ms",
    )  # fmt: skip


def _title(figure: str) -> str:
    return next(f.title for f in FIGURES if f.id == figure)


DRAW: dict[str, Callable[[Clock, Sequence[Mark]], str]] = {
    "latency": latency,
    "requests": requests,
    "health": health,
    "events": events,
    "leaders": leaders,
    "progress": progress,
    "workqueue": workqueue,
    "informers": informers,
    "lag": lag,
}


def window_words(low: float, high: float | None) -> str:
    """A claim's window (``high`` None: open-ended) in words, to a tenth of a second."""
    if high is None or high == float("inf"):
        return f"{round(low, 1):g} s on"
    return f"{round(low, 1):g} to {round(high, 1):g} s"


def claim_marks(claims: Sequence[dict[str, Any]]) -> dict[str, list[Mark]]:
    """Per figure, the windows of the claims decided on it (as ``report.json`` has them)."""
    marks: dict[str, list[Mark]] = {}
    for number, claim in enumerate(claims, 1):
        window = claim["window"]
        if window is None:
            continue
        low, high = window[0], float("inf") if window[1] is None else window[1]
        at = "" if claim["at"] is None else f"; decided at {claim['at']:.1f} s"
        shown = window_words(low, high)
        marks.setdefault(claim["plot"], []).append(
            Mark(
                id=f"claim-{claim['id']}",
                label=f"{number} {claim['id']}"[:28],
                title=f"claim {number}, {claim['id']} ({claim['verdict']}): window {shown}{at}",
                start=low,
                end=high,
                at=claim["at"],
            )
        )
    return marks


def figures(timeline: Timeline, claims: Sequence[dict[str, Any]]) -> list[tuple[Figure, str]]:
    """Every figure, drawn, with the claims' windows marked."""
    clock = Clock(timeline)
    marks = claim_marks(claims)
    return [(figure, DRAW[figure.id](clock, marks.get(figure.id, []))) for figure in FIGURES]
