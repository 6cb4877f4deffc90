"""The run's report: ``report.json``, a self-contained ``report.html`` and a summary.

All three are built from one :class:`~etcdlab.common.timeline.Timeline` and the claim
findings; the HTML carries its plots as inline SVG, so it opens anywhere without
a network.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from etcdlab.common.timeline import ErrorClass, Timeline, quantile
from etcdlab.report import svgplot
from etcdlab.report.claims import CONTROLLERS, Verdict, converge_time, evaluate, stall_intervals
from etcdlab.report.figures import figures
from etcdlab.report.svgplot import Segment, Series, Shade

# The bar: event-loop lag p99 under 20 ms at time scale 1.
EVENT_LOOP_LAG_LIMIT = 0.020
BINS = 200


@dataclass(frozen=True)
class ReportPaths:
    json: Path
    html: Path
    timeline: Path


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def event_loop_lag(timeline: Timeline) -> dict[str, Any]:
    lags = [g.value for g in timeline.gauge_series("event_loop_lag")]
    p99 = quantile(lags, 0.99)
    return {
        "samples": len(lags),
        "p50": _round(quantile(lags, 0.5)),
        "p99": _round(p99),
        "max": _round(max(lags, default=None)),
        "limit_p99": EVENT_LOOP_LAG_LIMIT,
        "exceeded": p99 is not None and p99 > EVENT_LOOP_LAG_LIMIT,
    }


def safety(timeline: Timeline) -> dict[str, Any]:
    overlaps = timeline.overlapping_leaders()
    return {
        "overlapping_leaders": len(overlaps),
        "overlaps": [
            {"lease": lease, "leaders": [a, b], "start": _round(o.start), "end": _round(o.end)}
            for lease, a, b, o in overlaps
        ],
        "leases": len(timeline.leadership()),
        "leader_changes": len(timeline.leaders),
    }


def component_metrics(timeline: Timeline) -> dict[str, Any]:
    components: dict[str, Any] = {}
    for name in sorted({r.component for r in timeline.requests}):
        mine = [r for r in timeline.requests if r.component == name]
        errors = {c.value: sum(r.error is c for r in mine) for c in ErrorClass}
        components[name] = {
            "requests": len(mine),
            "p50": _round(quantile((r.latency for r in mine), 0.5)),
            "p99": _round(quantile((r.latency for r in mine), 0.99)),
            "max": _round(max((r.latency for r in mine), default=None)),
            "errors": {k: v for k, v in errors.items() if v},
            "from_cache": sum(r.source == "cache" for r in mine),
        }
    controllers: dict[str, Any] = {}
    for name in CONTROLLERS:
        mine_r = [r for r in timeline.reconciles if r.controller == name]
        if not mine_r and not timeline.gauge_series(f"progress/{name}"):
            continue
        stalls = stall_intervals(timeline, name)
        controllers[name] = {
            "reconciles": len(mine_r),
            "failed": sum(not r.ok for r in mine_r),
            "ops_per_reconcile": _round(sum(r.ops for r in mine_r) / len(mine_r), 3)
            if mine_r
            else None,
            "stalls": len(stalls),
            "stalled_seconds": _round(sum(b - a for a, b in stalls) / timeline.time_scale, 3),
            "converge_seconds": _round(converge_time(timeline, name), 3),
        }
    return {"components": components, "controllers": controllers}


def build_report(timeline: Timeline) -> dict[str, Any]:
    findings = evaluate(timeline)
    counts = {v.value: sum(f.verdict is v for _, f in findings) for v in Verdict}
    return {
        "scenario": timeline.scenario,
        "seed": timeline.seed,
        "time_scale": timeline.time_scale,
        "duration": _round(timeline.duration, 3),
        "settings": timeline.settings,
        "faults": [
            {
                "kind": w.kind.value,
                "target": w.target,
                "start": _round(w.start, 3),
                "end": _round(w.end, 3),
                "detail": w.detail,
            }
            for w in timeline.faults
        ],
        "claims": [
            {
                "id": claim.id,
                "section": claim.section,
                "claim": claim.claim,
                "measured": finding.measured,
                "verdict": finding.verdict.value,
            }
            for claim, finding in findings
        ],
        "verdicts": counts,
        "safety": safety(timeline),
        "event_loop_lag": event_loop_lag(timeline),
        **component_metrics(timeline),
        "figures": figures(timeline),
    }


def write_report(timeline: Timeline, out_dir: Path) -> tuple[dict[str, Any], ReportPaths]:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(timeline)
    paths = ReportPaths(out_dir / "report.json", out_dir / "report.html", out_dir / "timeline.json")
    paths.json.write_text(json.dumps(report, indent=2) + "\n")
    paths.timeline.write_text(json.dumps(timeline.to_dict()) + "\n")
    paths.html.write_text(render_html(report, timeline))
    return report, paths


# Plots.


def _x_range(timeline: Timeline) -> tuple[float, float]:
    """Every chart's time axis, so they line up; an empty run still gets a unit axis."""
    return 0.0, timeline.duration if timeline.duration > 0 else 1.0


def _bins(timeline: Timeline) -> tuple[float, float, float]:
    start, end = _x_range(timeline)
    return start, end, (end - start) / BINS


def _shades(timeline: Timeline) -> list[Shade]:
    return [Shade(w.start, w.end, f"{w.kind.value} {w.target} {w.detail}") for w in timeline.faults]


def latency_plot(timeline: Timeline) -> str:
    start, end, width = _bins(timeline)
    series = []
    for name in sorted({r.component for r in timeline.requests}):
        buckets: dict[int, list[float]] = {}
        for r in timeline.requests:
            if r.component == name:
                buckets.setdefault(int((r.t - start) / width), []).append(r.latency * 1000)
        p99 = [
            (start + (b + 0.5) * width, quantile(v, 0.99) or 0.0)
            for b, v in sorted(buckets.items())
        ]
        series.append(Series(f"{name} p99", p99))
    return svgplot.line_chart(
        "Request latency per component (p99 per bin)",
        series,
        (start, end),
        _shades(timeline),
        y_label="ms (log)",
        log_y=True,
    )


def errors_plot(timeline: Timeline) -> str:
    start, end, width = _bins(timeline)
    series = []
    for i, error in enumerate(ErrorClass):
        counts: dict[int, int] = {}
        for r in timeline.requests:
            if r.error is error:
                index = int((r.t - start) / width)
                counts[index] = counts.get(index, 0) + 1
        if counts:
            points = [(start + (b + 0.5) * width, float(counts.get(b, 0))) for b in range(BINS)]
            series.append(Series(error.value, points, svgplot.color(i + 1)))
    return svgplot.line_chart(
        "Errors by class (per bin)", series, (start, end), _shades(timeline), y_label="errors"
    )


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


def health_plot(timeline: Timeline) -> str:
    colors = {"healthy": "#2ca02c", "unhealthy": "#d62728"}
    lanes = []
    for name in sorted({h.component for h in timeline.health}):
        samples = [
            (h.t, "healthy" if h.healthy else "unhealthy")
            for h in sorted(timeline.health, key=lambda h: h.t)
            if h.component == name
        ]
        lanes.append((name, _state_segments(samples, timeline.duration, dict(colors))))
    return svgplot.lane_chart(
        "Health (apiserver probes, etcd members)",
        lanes,
        _x_range(timeline),
        _shades(timeline),
        legend=list(colors.items()),
    )


def leader_plot(timeline: Timeline) -> str:
    candidates = sorted({c.candidate for c in timeline.leaders})
    colors = {name: svgplot.color(i) for i, name in enumerate(candidates)}
    lanes = []
    for lease, by_candidate in sorted(timeline.leadership().items()):
        segments = [
            Segment(i.start, i.end, candidate, colors[candidate])
            for candidate, intervals in by_candidate.items()
            for i in intervals
        ]
        lanes.append((lease, sorted(segments, key=lambda s: s.start)))
    legend = list(colors.items()) if len(colors) <= svgplot.LEGEND_MAX else []
    return svgplot.lane_chart(
        "Who leads each lease", lanes, _x_range(timeline), _shades(timeline), legend
    )


def gauge_plot(timeline: Timeline, prefix: str, title: str, y_label: str) -> str:
    series = [
        Series(name.removeprefix(prefix), [(g.t, g.value) for g in timeline.gauge_series(name)],
               step=True)
        for name in timeline.gauge_names(prefix)
    ]  # fmt: skip
    return svgplot.line_chart(title, series, _x_range(timeline), _shades(timeline), y_label=y_label)


def lag_plot(timeline: Timeline) -> str:
    points = [(g.t, g.value * 1000) for g in timeline.gauge_series("event_loop_lag")]
    return svgplot.line_chart(
        "Event-loop lag",
        [Series("lag", points), Series("limit", [(0.0, 20.0), (timeline.duration, 20.0)], "#aaa")],
        _x_range(timeline),
        _shades(timeline),
        y_label="ms",
    )


def render_html(report: dict[str, Any], timeline: Timeline) -> str:
    verdict_colors = {"agrees": "#d8f0d8", "differs": "#f8d7d3", "not observed": "#eeeeee"}
    rows = "".join(
        f'<tr style="background:{verdict_colors[c["verdict"]]}"><td>{escape(c["section"])}</td>'
        f"<td>{escape(c['claim'])}</td><td>{escape(c['measured'])}</td>"
        f"<td><b>{escape(c['verdict'])}</b></td></tr>"
        for c in report["claims"]
    )
    lag = report["event_loop_lag"]
    lag_line = (
        "no event-loop lag samples"
        if lag["p99"] is None
        else f"event-loop lag p50 {lag['p50'] * 1000:.1f} ms, p99 {lag['p99'] * 1000:.1f} ms, "
        f"max {lag['max'] * 1000:.1f} ms"
        + (" — EXCEEDED the 20 ms limit: the emulator itself may have skewed timings"
           if lag["exceeded"] else " (limit p99 20 ms)")
    )  # fmt: skip
    safety_info = report["safety"]
    notes = "".join(
        f"<p><b>Note:</b> {escape(str(note))}</p>" for note in report["settings"].get("notes", [])
    )
    plots = [
        latency_plot(timeline),
        errors_plot(timeline),
        health_plot(timeline),
        leader_plot(timeline),
        gauge_plot(timeline, "workqueue/", "Workqueue depth", "items"),
        gauge_plot(timeline, "progress/", "Reconcile progress (fraction done)", "done"),
        lag_plot(timeline),
    ]
    figures = "".join(f"<figure>{plot}</figure>" for plot in plots)
    metrics = _metrics_tables(report)
    title = f"etcdlab: {escape(report['scenario'])}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; text-align: left; }}
figure {{ margin: 1em 0; }}
</style></head><body>
<h1>{title}</h1>
<p>seed {report["seed"]}, time scale {report["time_scale"]:g}
(every timeout multiplied by it; claim windows are in unscaled seconds after the fault began),
run length {report["duration"]:.1f} s on the run clock;
verdicts: {", ".join(f"{v} {n}" for v, n in report["verdicts"].items())}.</p>
<p>Safety: {safety_info["overlapping_leaders"]} overlapping leaders over
{safety_info["leases"]} leases. {escape(lag_line)}.</p>
{notes}
<h2>The seed's claims against the measurement</h2>
<table><tr><th>section</th><th>claim</th><th>measured</th><th>verdict</th></tr>{rows}</table>
{metrics}
<h2>Timeline</h2>
<p>Times on the run clock (seconds); fault windows shaded.</p>
{figures}
</body></html>
"""


def _ms_cell(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.1f}"


def _metrics_tables(report: dict[str, Any]) -> str:
    components = "".join(
        f"<tr><td>{escape(name)}</td><td>{c['requests']}</td><td>{_ms_cell(c['p50'])}</td>"
        f"<td>{_ms_cell(c['p99'])}</td><td>{_ms_cell(c['max'])}</td>"
        f"<td>{escape(', '.join(f'{k} {v}' for k, v in c['errors'].items()) or '-')}</td>"
        f"<td>{c['from_cache']}</td></tr>"
        for name, c in report["components"].items()
    )
    controllers = "".join(
        f"<tr><td>{escape(name)}</td><td>{c['reconciles']}</td><td>{c['failed']}</td>"
        f"<td>{c['ops_per_reconcile'] if c['ops_per_reconcile'] is not None else ''}</td>"
        f"<td>{c['stalls']}</td><td>{c['stalled_seconds']}</td>"
        f"<td>{'' if c['converge_seconds'] is None else c['converge_seconds']}</td></tr>"
        for name, c in report["controllers"].items()
    )
    return (
        "<h2>Components</h2><table><tr><th>component</th><th>requests</th><th>p50 ms</th>"
        "<th>p99 ms</th><th>max ms</th><th>errors by class</th><th>from cache</th></tr>"
        f"{components}</table>"
        "<h2>Controllers</h2><table><tr><th>controller</th><th>reconciles</th><th>failed</th>"
        "<th>etcd requests per reconcile</th><th>stalls</th><th>stalled s (unscaled)</th>"
        f"<th>converged s after the fault (unscaled)</th></tr>{controllers}</table>"
    )


def summary(report: dict[str, Any]) -> str:
    marks = {"agrees": "ok ", "differs": "DIF", "not observed": " - "}
    lines = [
        f"scenario {report['scenario']} (seed {report['seed']}, time scale "
        f"{report['time_scale']:g}): "
        + ", ".join(f"{v} {n}" for v, n in report["verdicts"].items())
    ]
    lines += [f"  note: {note}" for note in report["settings"].get("notes", [])]
    for claim in report["claims"]:
        lines.append(f"  [{marks[claim['verdict']]}] {claim['id']}: {claim['measured']}")
    lines.append(f"  safety: {report['safety']['overlapping_leaders']} overlapping leaders")
    lag = report["event_loop_lag"]
    if lag["p99"] is not None:
        verdict = "EXCEEDED 20 ms" if lag["exceeded"] else "under 20 ms"
        lines.append(f"  event-loop lag p99 {lag['p99'] * 1000:.1f} ms ({verdict})")
    return "\n".join(lines)
