from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from html import escape
from pathlib import Path

import pytest

from etcdlab.common.timeline import ErrorClass, EventKind, FaultKind, Gauge, Timeline
from etcdlab.common.timescale import TimeScale
from etcdlab.report.claims import CLAIMS
from etcdlab.report.plots import FIGURES
from etcdlab.report.render import Outcome, build_report, summary, write_report
from tests.synthetic import base, ev, gauge, lead, probe, progress, reconciles, reqs


def rich(scale: float = 0.1) -> Timeline:
    """One of everything the report plots, at a scaled clock."""
    timeline = base(FaultKind.LOSS, scale=scale)
    reqs(timeline, 100, 160, latency=0.4)
    reqs(timeline, 105, 115, error=ErrorClass.CONTEXT)
    reqs(timeline, 120, 125, error=ErrorClass.CLUSTER, op="put")
    reqs(timeline, 160, 400, source="cache")
    reqs(timeline, 400, 1100)
    ev(timeline, 105, EventKind.KEEPALIVE_FAILURE)
    probe(timeline, (0, True), (112, False), (150, True))
    probe(timeline, (0, True), (100, False), (410, True), who="etcd-0")
    lead(timeline, (0, "a", True), (118, "a", False), (135, "b", True))
    lead(timeline, (0, "x", True), lease="scheduler")
    for controller, back in (("statefulset", 410), ("deployment", 420), ("daemonset", 430)):
        progress(timeline, controller, back)
        reconciles(timeline, controller, ops=3 if controller == "daemonset" else 2)
        gauge(timeline, f"workqueue/{controller}", (0, 0), (200, 4), (500, 0))
    gauge(timeline, "informer_cache/pods", (0, 30), (300, 30))
    for i in range(1000):
        timeline.gauges.append(Gauge(i * scale, "event_loop_lag", 0.001 + (i % 100) * 1e-5))
    return timeline


def test_report_json_has_the_promised_fields(tmp_path: Path) -> None:
    report, paths = write_report(rich(), tmp_path)
    loaded = json.loads(paths.json.read_text())
    assert loaded == json.loads(json.dumps(report))
    for key in ("scenario", "seed", "time_scale", "claims", "safety", "event_loop_lag"):
        assert key in loaded
    assert loaded["time_scale"] == 0.1
    assert [c["id"] for c in loaded["claims"]] == [c.id for c in CLAIMS]
    for claim in loaded["claims"]:
        assert set(claim) >= {"id", "claim", "measured", "verdict"}
        assert claim["verdict"] in {"agrees", "differs", "not observed"}
    assert loaded["safety"]["overlapping_leaders"] == 0
    assert loaded["safety"]["leases"] == 2
    assert loaded["event_loop_lag"]["exceeded"] is False
    assert loaded["controllers"]["daemonset"]["ops_per_reconcile"] == 3
    assert loaded["components"]["apiserver-0"]["errors"] == {"context": 10, "cluster": 5}
    assert json.loads(paths.timeline.read_text())["scenario"] == "synthetic"


def test_html_is_self_contained_with_well_formed_plots(tmp_path: Path) -> None:
    _, paths = write_report(rich(), tmp_path)
    html = paths.html.read_text()
    assert "<script" not in html
    assert not re.search(r"(src|href)=\"https?:", html), "nothing may load from the network"
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    assert len(svgs) == len(FIGURES)
    for svg in svgs:
        root = ElementTree.fromstring(svg)
        assert root.tag.endswith("svg")
    # Every plot shades the fault, and the data plots draw something.
    assert all(svg.count('class="fault"') == 1 for svg in svgs)
    assert sum('class="series"' in svg for svg in svgs) >= 6
    assert sum('class="segment"' in svg for svg in svgs) == 2
    assert html.count('<tr id="row-') == len(CLAIMS)
    assert "<td>apiserver-0</td><td>1115</td>" in html
    assert "<td>daemonset</td>" in html


def test_lag_over_the_limit_is_flagged_everywhere() -> None:
    timeline = rich()
    timeline.gauges.extend(Gauge(float(i), "event_loop_lag", 0.05) for i in range(100))
    report = build_report(timeline)
    assert report["event_loop_lag"]["exceeded"] is True
    assert "EXCEEDED" in summary(report)


def test_summary_lists_every_claim_with_its_verdict() -> None:
    text = summary(build_report(rich()))
    assert text.startswith("scenario synthetic (seed 1, time scale 0.1)")
    for claim in CLAIMS:
        assert claim.id in text
    assert "0 overlapping leaders" in text


def test_an_empty_run_still_renders(tmp_path: Path) -> None:
    report, paths = write_report(Timeline("empty", seed=0, time_scale=TimeScale(1.0)), tmp_path)
    assert {c["verdict"] for c in report["claims"]} == {"not observed"}
    assert report["event_loop_lag"]["p99"] is None
    assert paths.html.read_text().count("<svg") == len(FIGURES)


def test_every_chart_of_an_empty_run_shares_one_time_axis(tmp_path: Path) -> None:
    _, paths = write_report(Timeline("empty", seed=0, time_scale=TimeScale(1.0)), tmp_path)
    svgs = re.findall(r"<svg.*?</svg>", paths.html.read_text(), flags=re.S)
    # The last x tick of each chart, drawn just before the axis unit.
    ends = {re.findall(r'text-anchor="middle">([^<]*)</text>', svg)[-1] for svg in svgs}
    assert ends == {"1"}


def svgs_by_figure(html: str) -> dict[str, str]:
    return dict(re.findall(r'<figure id="plot-([a-z]+)">(<svg.*?</svg>)</figure>', html, re.S))


def plot_x(svg: str, seconds: float) -> float:
    """Where ``seconds`` (on the chart's axis) falls, from the chart's own plot area and
    its first and last tick labels."""
    area = re.search(r'<rect class="area" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg)
    assert area
    ticks = re.findall(r'<text x="([\d.]+)" y="[\d.]+" font-size="10" text-anchor="middle">'
                       r"(-?[\d.]+)</text>", svg)  # fmt: skip
    (x_a, t_a), (x_b, t_b) = ticks[0], ticks[-1]
    per_second = (float(x_b) - float(x_a)) / (float(t_b) - float(t_a))
    return float(x_a) + (seconds - float(t_a)) * per_second


def test_every_plot_is_on_one_clock_unscaled_seconds_since_the_fault(tmp_path: Path) -> None:
    # rich(): time scale 0.1, the fault from 100 s to 400 s (unscaled), 1200 s in all.
    _, paths = write_report(rich(), tmp_path)
    figures = svgs_by_figure(paths.html.read_text())
    assert list(figures) == [f.id for f in FIGURES]
    for figure, svg in figures.items():
        area = re.search(r'<rect class="area" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg)
        assert area, figure
        left, width = float(area.group(1)), float(area.group(2))
        # The axis runs from the run's start (100 s before the fault) to its end.
        assert plot_x(svg, -100) == pytest.approx(left, abs=0.5), figure
        assert plot_x(svg, 1100) == pytest.approx(left + width, abs=0.5), figure
        shade = re.search(r'<rect class="fault" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg)
        assert shade, figure
        assert float(shade.group(1)) == pytest.approx(plot_x(svg, 0), abs=0.5), figure
        assert float(shade.group(2)) == pytest.approx(plot_x(svg, 300) - plot_x(svg, 0), abs=1)
        assert "seconds since the fault began, unscaled (run clock: 10.0 s + 0.1 x" in svg


def test_the_axis_starts_at_the_first_record_not_at_the_cluster_start(tmp_path: Path) -> None:
    # Nothing measured in the first 40 s (unscaled) of rich(): the cluster was starting.
    timeline = rich()
    timeline.requests = [r for r in timeline.requests if r.t >= 4.0]
    timeline.health = [h for h in timeline.health if h.t >= 4.0]
    timeline.leaders = [c for c in timeline.leaders if c.t >= 4.0]
    timeline.gauges = [g for g in timeline.gauges if g.t >= 4.0]
    _, paths = write_report(timeline, tmp_path)
    for figure, svg in svgs_by_figure(paths.html.read_text()).items():
        area = re.search(r'<rect class="area" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg)
        assert area, figure
        left, width = float(area.group(1)), float(area.group(2))
        assert plot_x(svg, -60) == pytest.approx(left, abs=0.5), figure
        assert plot_x(svg, 1100) == pytest.approx(left + width, abs=0.5), figure


def test_each_claim_links_to_its_window_on_the_plot_that_decided_it(tmp_path: Path) -> None:
    report, paths = write_report(rich(), tmp_path)
    html = paths.html.read_text()
    figures = svgs_by_figure(html)
    claims = {c["id"]: c for c in report["claims"]}
    assert {c["plot"] for c in claims.values()} <= {*figures, "controllers"}
    # The windows each evaluation used, on the report's clock.
    assert claims["phase.short.latency"]["window"] == [10, 60]
    assert claims["phase.immediate.client-errors"]["window"] == [0, 10]
    assert claims["phase.immediate.client-errors"]["at"] == 5.0
    assert claims["recovery.latency-normalizes"]["window"] == [900, None]
    assert claims["recovery.informer-cache"]["window"] == [0, 300]
    assert claims["election.single-leader"]["window"] is None
    for claim in claims.values():
        row = re.search(rf'<tr id="row-{re.escape(claim["id"])}".*?</tr>', html, re.S)
        assert row, claim["id"]
        (target,) = re.findall(r'<a href="#([^"]+)"', row.group(0))
        if claim["window"] is None:
            assert target in (f"plot-{claim['plot']}", "controllers")
            assert f'id="{target}"' in html
            continue
        assert target == f"claim-{claim['id']}"
        svg = figures[claim["plot"]]
        mark = re.search(rf'<g class="mark" id="{re.escape(target)}">.*?</g>', svg, re.S)
        assert mark, f"{target} is not on the {claim['plot']} plot"
        band = re.search(r'<rect class="band" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', mark[0])
        assert band
        low, high = claim["window"]
        assert float(band.group(1)) == pytest.approx(plot_x(svg, min(low, 1100)), abs=0.5)
        end = plot_x(svg, min(1100 if high is None else high, 1100))
        assert float(band.group(1)) + float(band.group(2)) == pytest.approx(end, abs=2.5)
        if claim["at"] is not None:
            tick = re.search(r'<rect class="at" x="([\d.]+)"', mark[0])
            assert tick, target
            assert float(tick.group(1)) + 1 == pytest.approx(plot_x(svg, claim["at"]), abs=0.2)


def test_values_show_on_hover(tmp_path: Path) -> None:
    _, paths = write_report(rich(), tmp_path)
    figures = svgs_by_figure(paths.html.read_text())
    hovers = re.findall(r'<rect class="hover"[^>]*><title>([^<]*)</title>', figures["latency"])
    # 40 ms p99 (0.4 s unscaled at time scale 0.1) from the fault's start for 60 s.
    assert "26 to 32 s: apiserver-0 p99 40 ms" in hovers, hovers[:5]
    assert "-100 to -94 s: apiserver-0 p99 0.1 ms" in hovers
    counts = re.findall(r'<rect class="hover"[^>]*><title>([^<]*)</title>', figures["requests"])
    assert "8 to 14 s: context 6 in 6 s; cluster 0 in 6 s; from cache 0 in 6 s" in counts
    gauges = re.findall(r'<rect class="hover"[^>]*><title>([^<]*)</title>', figures["workqueue"])
    assert any("statefulset 4 items" in h for h in gauges)
    segments = re.findall(r'<rect class="segment"[^>]*><title>([^<]*)</title>', figures["health"])
    assert "etcd-0: unhealthy from 0 to 310 s" in segments


def test_the_summary_says_what_broke_when_and_for_how_long(tmp_path: Path) -> None:
    report, paths = write_report(rich(), tmp_path)
    assert report["what_happened"] == [
        "Fault: loss on etcd-0 from 0.0 s to 300.0 s (300.0 s).",
        "15 of 1115 requests failed (context 10, cluster 5): the first at 5.0 s, the last at "
        "24.0 s.",
        "1 lease loss: kcm by a at 18.0 s.",
        "apiserver-0 unhealthy from 12.0 s to 50.0 s.",
        "etcd-0 unhealthy from 0.0 s to 310.0 s: healthy again 10.0 s after the heal.",
        "Workloads converged after the heal: statefulset 10.0 s, deployment 20.0 s, "
        "daemonset 30.0 s.",
    ]
    html = paths.html.read_text()
    top = html.index('<ul class="happened">')
    assert top < html.index("<h2>The claims") < html.index("<svg")
    for line in report["what_happened"]:
        assert escape(line) in html[top:]
    assert summary(report).splitlines()[1:7] == [f"  {line}" for line in report["what_happened"]]


def test_the_summary_leaves_out_what_was_unhealthy_only_before_the_fault() -> None:
    timeline = rich()
    # Start-up: unhealthy until the first probes pass, all of it before the fault (100 s).
    probe(timeline, (0, False), (30, True), who="apiserver-1")
    probe(timeline, (0, False), (30, True), (130, False), (150, True), who="apiserver-2")
    probe(timeline, (0, False), (30, True), (90, False), (120, True), who="apiserver-3")
    lines = build_report(timeline)["what_happened"]
    assert not [line for line in lines if line.startswith("apiserver-1")]
    assert "apiserver-2 unhealthy from 30.0 s to 50.0 s." in lines
    # Unhealthy when the fault began: from when it went so.
    assert "apiserver-3 unhealthy from -10.0 s to 20.0 s." in lines


def test_a_member_still_down_at_the_end_is_said_so() -> None:
    timeline = rich()
    probe(timeline, (1000, False), who="etcd-1")
    lines = build_report(timeline)["what_happened"]
    assert "etcd-1 unhealthy from 900.0 s to the end of the run, 800.0 s after the heal." in lines


def test_the_page_shows_the_scenario_and_every_fault_setting(tmp_path: Path) -> None:
    timeline = rich()
    timeline.settings = {
        "description": "30% loss <on> one member",
        "faults": [{"at": 30.0, "duration": 120.0, "kind": "loss", "target": "0",
                    "probability": 0.3, "links": "all", "period": 10.0}],
    }  # fmt: skip
    _, paths = write_report(timeline, tmp_path)
    html = paths.html.read_text()
    assert '<p id="description">30% loss &lt;on&gt; one member</p>' in html
    table = html.split('<h2 id="faults">', 1)[1].split("</table>", 1)[0]
    for cell in ("at", "duration", "kind", "target", "probability", "links", "period",
                 "30.0", "120.0", "loss", "0.3", "all"):  # fmt: skip
        assert f"<td>{cell}</td>" in table or f"<th>{cell}</th>" in table, cell


def test_an_interrupted_run_says_so_first(tmp_path: Path) -> None:
    report, paths = write_report(rich(), tmp_path, Outcome("interrupted", "stopped by SIGTERM"))
    assert report["outcome"] == {"state": "interrupted", "reason": "stopped by SIGTERM"}
    words = "INTERRUPTED (stopped by SIGTERM) after 120.0 s on the run clock"
    assert summary(report).splitlines()[1].startswith(f"  {words}")
    html = paths.html.read_text()
    assert html.index(words) < html.index('<ul class="happened">')
