"""The run's report: ``report.json``, a self-contained ``report.html`` and a summary.

All three are built from one :class:`~etcdlab.common.timeline.Timeline` and the claim
findings. The HTML reads top down: how the run ended, the scenario and every
fault's settings, what happened (:mod:`etcdlab.report.happened`), the claims
(each linked to the window on the plot that decided it), the tables, then the
plots (:mod:`etcdlab.report.plots`, one clock). It carries its plots as inline
SVG and its style inline, so it opens anywhere without a network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from etcdlab.common.timeline import ErrorClass, Timeline, quantile
from etcdlab.report import plots
from etcdlab.report.claims import CONTROLLERS, Verdict, converge_time, stall_intervals
from etcdlab.report.figures import figures
from etcdlab.report.happened import what_happened
from etcdlab.report.incidents import evaluate
from etcdlab.report.plots import EVENT_LOOP_LAG_LIMIT
from etcdlab.report.recovery import member_recovery


@dataclass(frozen=True)
class Outcome:
    """How the run ended: ``completed``, ``interrupted`` (a signal stopped it; the report
    holds what was measured until then) or ``failed`` (an error ended it, ``reason``)."""

    state: str = "completed"
    reason: str = ""


@dataclass(frozen=True)
class ReportPaths:
    json: Path
    html: Path
    timeline: Path


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _bounded(value: float) -> float | None:
    """JSON has no infinity: an open end is None."""
    return None if value == float("inf") else _round(value, 3)


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
            "stalled_seconds": _round(timeline.unscaled(sum(b - a for a, b in stalls)), 3),
            "converge_seconds": _round(converge_time(timeline, name), 3),
        }
    return {"components": components, "controllers": controllers}


def recovery(timeline: Timeline) -> list[dict[str, Any]]:
    """Each member's unscaled seconds to healthy for good after each heal
    (:mod:`etcdlab.report.recovery`); ``healed_at`` on the report's clock."""
    return [
        {
            "kind": heal.fault.kind.value,
            "target": heal.fault.target,
            "healed_at": _round(heal.healed_at, 3),
            "members": heal.members,
            "slowest": _round(heal.slowest, 3),
            "resolution": _round(heal.resolution, 3),
        }
        for heal in member_recovery(timeline)
    ]


def build_report(timeline: Timeline, outcome: Outcome = Outcome()) -> dict[str, Any]:
    findings = evaluate(timeline)
    counts = {v.value: sum(f.verdict is v for _, f in findings) for v in Verdict}
    return {
        "scenario": timeline.scenario,
        "outcome": {"state": outcome.state, "reason": outcome.reason},
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
        "what_happened": what_happened(timeline),
        "member_recovery": recovery(timeline),
        "claims": [
            {
                "id": claim.id,
                "section": claim.section,
                "claim": claim.claim,
                "measured": finding.measured,
                "verdict": finding.verdict.value,
                "plot": claim.plot,
                # Unscaled seconds since the fault began; an open end is null.
                "window": None
                if finding.window is None
                else [_round(finding.window[0], 3), _bounded(finding.window[1])],
                "at": _round(finding.at, 3),
            }
            for claim, finding in findings
        ],
        "verdicts": counts,
        "safety": safety(timeline),
        "event_loop_lag": event_loop_lag(timeline),
        **component_metrics(timeline),
        "figures": figures(timeline),
    }


def write_report(
    timeline: Timeline, out_dir: Path, outcome: Outcome = Outcome()
) -> tuple[dict[str, Any], ReportPaths]:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(timeline, outcome)
    paths = ReportPaths(out_dir / "report.json", out_dir / "report.html", out_dir / "timeline.json")
    paths.json.write_text(json.dumps(report, indent=2) + "\n")
    paths.timeline.write_text(json.dumps(timeline.to_dict()) + "\n")
    paths.html.write_text(render_html(report, timeline))
    return report, paths


# The page.

VERDICT_COLORS = {"agrees": "#d8f0d8", "differs": "#f8d7d3", "not observed": "#eeeeee"}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; text-align: left; }
figure { margin: 1em 0; }
.outcome { background: #fff3cd; border: 1px solid #e0b000; padding: 0.5em 1em; }
.happened li { margin: 0.15em 0; }
.mark .bar { fill: #9fa8da; }
.mark .at { fill: #1a237e; }
.mark .band { fill: #ffd54f; opacity: 0.45; visibility: hidden; pointer-events: none; }
.mark:target .bar { fill: #f9a825; }
.mark:target .band { visibility: visible; }
.mark { scroll-margin-top: 4em; }
"""


def _link(claim: dict[str, Any]) -> str:
    """Where the claim table points: the claim's window on its plot, else the plot."""
    if claim["plot"] == "controllers":
        return '<a href="#controllers">controllers table</a>'
    name = next(f.short for f in plots.FIGURES if f.id == claim["plot"])
    if claim["window"] is None:
        return f'<a href="#plot-{claim["plot"]}">{escape(name)} plot</a>'
    span = plots.window_words(*claim["window"])
    return f'<a href="#claim-{escape(claim["id"])}">{escape(name)}, {span}</a>'


def _faults_table(report: dict[str, Any]) -> str:
    """Every fault's settings as the scenario gave them (times: after the warm-up)."""
    steps = report["settings"].get("faults", [])
    if not steps:
        return "<p>No faults.</p>"
    keys = list(steps[0])
    head = "".join(f"<th>{escape(key)}</th>" for key in keys)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(str(step[key]))}</td>" for key in keys) + "</tr>"
        for step in steps
    )
    return (
        f"<table><tr>{head}</tr>{rows}</table><p>at and duration: the scenario's unscaled "
        "seconds, at counted from the end of the warm-up.</p>"
    )


def _recovery_words(seconds: float | None) -> str:
    if seconds is None:
        return "not healthy again"
    return "healthy throughout" if seconds == 0 else f"{seconds:.1f} s"


def _recovery_lines(report: dict[str, Any]) -> list[str]:
    """One line per heal: how soon each member was healthy for good."""
    lines = []
    for heal in report["member_recovery"]:
        members = ", ".join(f"{m} {_recovery_words(t)}" for m, t in heal["members"].items())
        every = "" if heal["resolution"] is None else f" (sampled every {heal['resolution']:g} s)"
        lines.append(
            f"Members after the {heal['kind']} on {heal['target']} healed at "
            f"{heal['healed_at']:.1f} s: {members or 'not sampled'}{every}."
        )
    return lines


def _recovery_table(report: dict[str, Any]) -> str:
    heals = report["member_recovery"]
    if not heals:
        return ""
    members = list(heals[0]["members"])
    head = "".join(f"<th>{escape(m)}</th>" for m in members)
    rows = "".join(
        f"<tr><td>{escape(h['kind'])} on {escape(h['target'])}</td><td>{h['healed_at']:.1f}</td>"
        + "".join(f"<td>{_recovery_words(h['members'].get(m))}</td>" for m in members)
        + "</tr>"
        for h in heals
    )
    return (
        '<h2 id="recovery">Members after each heal</h2>'
        f"<table><tr><th>fault</th><th>healed at s</th>{head}</tr>{rows}</table>"
        "<p>Unscaled seconds from the heal until the member's <code>/health</code> (a leader "
        "and quorum) was true for good, up to the next fault or the end of the run; known to "
        "within one sample period. After a heal real TCP delivers within about one "
        "retransmission timeout: a member unhealthy for long after it is an artefact of the "
        "lab.</p>"
    )


def render_html(report: dict[str, Any], timeline: Timeline) -> str:
    rows = "".join(
        f'<tr id="row-{escape(c["id"])}" style="background:{VERDICT_COLORS[c["verdict"]]}">'
        f"<td>{number}</td><td>{escape(c['section'])}</td><td>{escape(c['claim'])}</td>"
        f"<td>{escape(c['measured'])}</td><td><b>{escape(c['verdict'])}</b></td>"
        f"<td>{_link(c)}</td></tr>"
        for number, c in enumerate(report["claims"], 1)
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
    happened = "".join(f"<li>{escape(line)}</li>" for line in report["what_happened"])
    figures = "".join(
        f'<figure id="plot-{figure.id}">{svg}</figure>'
        for figure, svg in plots.figures(timeline, report["claims"])
    )
    ended = _outcome_words(report)
    outcome = f'<p class="outcome"><b>{escape(ended)}.</b></p>' if ended else ""
    description = escape(str(report["settings"].get("description", ""))) or "(no description)"
    title = f"etcdlab: {escape(report['scenario'])}"
    clock = plots.Clock(timeline)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{STYLE}</style></head><body>
<h1>{title}</h1>
{outcome}
<p id="description">{description}</p>
<h2>What happened</h2>
<ul class="happened">{happened}</ul>
<p>Safety: {safety_info["overlapping_leaders"]} overlapping leaders over
{safety_info["leases"]} leases. Verdicts:
{", ".join(f"{v} {n}" for v, n in report["verdicts"].items())}. {escape(lag_line)}.</p>
<p>{escape(clock.sentence)} Seed {report["seed"]}, time scale {report["time_scale"]:g}
(every timeout multiplied by it), run length {report["duration"]:.1f} s on the run clock.</p>
{notes}
<h2 id="faults">The scenario's faults</h2>
{_faults_table(report)}
{_recovery_table(report)}
<h2>The claims against the measurement</h2>
<table><tr><th>#</th><th>section</th><th>claim</th><th>measured</th><th>verdict</th>
<th>decided on</th></tr>{rows}</table>
{_metrics_tables(report)}
<h2>Timeline</h2>
<p>Fault windows shaded; above each plot, the windows of the claims decided on it
(the one a link points to is highlighted over the plot). Hover for values.</p>
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
        '<h2 id="controllers">Controllers</h2><table><tr><th>controller</th>'
        "<th>reconciles</th><th>failed</th>"
        "<th>etcd requests per reconcile</th><th>stalls</th><th>stalled s (unscaled)</th>"
        f"<th>converged s after the fault (unscaled)</th></tr>{controllers}</table>"
    )


def _outcome_words(report: dict[str, Any]) -> str:
    """ "" for a completed run; what ended it otherwise."""
    outcome = report["outcome"]
    if outcome["state"] == "completed":
        return ""
    return (
        f"{outcome['state'].upper()} ({outcome['reason']}) after {report['duration']:.1f} s "
        "on the run clock: what follows is what was measured until then"
    )


def summary(report: dict[str, Any]) -> str:
    marks = {"agrees": "ok ", "differs": "DIF", "not observed": " - "}
    lines = [
        f"scenario {report['scenario']} (seed {report['seed']}, time scale "
        f"{report['time_scale']:g}): "
        + ", ".join(f"{v} {n}" for v, n in report["verdicts"].items())
    ]
    if ended := _outcome_words(report):
        lines.append(f"  {ended}")
    lines += [f"  {line}" for line in report["what_happened"]]
    lines += [f"  {line}" for line in _recovery_lines(report)]
    lines += [f"  note: {note}" for note in report["settings"].get("notes", [])]
    for claim in report["claims"]:
        lines.append(f"  [{marks[claim['verdict']]}] {claim['id']}: {claim['measured']}")
    lines.append(f"  safety: {report['safety']['overlapping_leaders']} overlapping leaders")
    lag = report["event_loop_lag"]
    if lag["p99"] is not None:
        verdict = "EXCEEDED 20 ms" if lag["exceeded"] else "under 20 ms"
        lines.append(f"  event-loop lag p99 {lag['p99'] * 1000:.1f} ms ({verdict})")
    return "\n".join(lines)
