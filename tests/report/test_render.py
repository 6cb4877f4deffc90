from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from etcdlab.common.timeline import ErrorClass, EventKind, FaultKind, Gauge, Timeline
from etcdlab.common.timescale import TimeScale
from etcdlab.report.claims import CLAIMS
from etcdlab.report.render import build_report, summary, write_report
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
    assert len(svgs) == 7
    for svg in svgs:
        root = ElementTree.fromstring(svg)
        assert root.tag.endswith("svg")
    # Every plot shades the fault, and the data plots draw something.
    assert all(svg.count('class="fault"') == 1 for svg in svgs)
    assert sum('class="series"' in svg for svg in svgs) >= 4
    assert sum('class="segment"' in svg for svg in svgs) == 2
    assert html.count("<tr style=") == len(CLAIMS)
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
    assert paths.html.read_text().count("<svg") == 7


def test_every_chart_of_an_empty_run_shares_one_time_axis(tmp_path: Path) -> None:
    _, paths = write_report(Timeline("empty", seed=0, time_scale=TimeScale(1.0)), tmp_path)
    svgs = re.findall(r"<svg.*?</svg>", paths.html.read_text(), flags=re.S)
    # The last x tick of each chart, drawn just before the axis unit.
    ends = {re.findall(r'text-anchor="middle">([^<]*)</text>', svg)[-1] for svg in svgs}
    assert ends == {"1"}
