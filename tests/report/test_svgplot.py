from __future__ import annotations

import math
import re

import pytest

from etcdlab.report import svgplot
from etcdlab.report.svgplot import Segment


def test_a_lane_chart_is_tall_enough_for_its_legend() -> None:
    legend = [(f"candidate-{i}", svgplot.color(i)) for i in range(6)]
    svg = svgplot.lane_chart(
        "one lease", [("kcm", [Segment(0, 1, "a", "#000")])], (0, 1), (), legend
    )
    height = float(re.search(r'<svg[^>]* height="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    swatches = [
        float(y) for y in re.findall(r'<rect x="[\d.]+" y="([\d.]+)" width="10" height="10"', svg)
    ]
    assert len(swatches) == len(legend)
    assert max(swatches) + 10 <= height - svgplot.BOTTOM


def test_a_mark_past_the_end_of_the_axis_says_so() -> None:
    marks = [
        svgplot.Mark("inside", "in", "window 10-20 s", 10, 20, at=15),
        svgplot.Mark("later", "later", "window 600 s on", 600, float("inf"), at=700),
    ]
    svg = svgplot.line_chart("t", [svgplot.Series("s", [(0, 1), (100, 2)])], (0, 100), marks=marks)
    inside = re.search(r'<g class="mark" id="inside">.*?</g>', svg, re.S)
    later = re.search(r'<g class="mark" id="later">.*?</g>', svg, re.S)
    assert inside and later
    assert 'class="bar"' in inside[0] and 'class="at"' in inside[0]
    assert 'class="bar"' not in later[0] and 'class="at"' not in later[0]
    assert "after the run (600 s) &#8594;" in later[0]
    # Two rows of marks push the plot down; the chart grows by as much.
    plain = svgplot.line_chart("t", [svgplot.Series("s", [(0, 1)])], (0, 100))
    top = re.search(r'<rect class="area" x="[\d.]+" y="([\d.]+)"', svg)
    assert top and float(top.group(1)) == svgplot.TOP + 2 * svgplot.MARK_ROW + svgplot.MARK_GAP
    heights = [float(re.search(r'<svg[^>]* height="([\d.]+)"', x)[1]) for x in (svg, plain)]  # type: ignore[index]
    assert heights[0] - heights[1] == 2 * svgplot.MARK_ROW + svgplot.MARK_GAP


def test_a_nan_is_a_gap_in_the_line() -> None:
    points = [(0.0, 1.0), (1.0, 2.0), (2.0, math.nan), (3.0, 2.0), (4.0, 1.0)]
    svg = svgplot.line_chart("t", [svgplot.Series("s", points)], (0, 4))
    assert svg.count('class="series"') == 2
    hovers = re.findall(r'<rect class="hover"[^>]*><title>([^<]*)</title>', svg)
    assert not any("nan" in h for h in hovers) and any(h.endswith("s 2") for h in hovers)


def test_a_lone_value_between_gaps_is_drawn() -> None:
    # Sparse requests in fine bins: every value alone between two empty bins.
    points = [(float(t), 5.0 if t % 2 else math.nan) for t in range(10)]
    svg = svgplot.line_chart("t", [svgplot.Series("s", points)], (0, 9))
    lines = re.findall(r'<polyline class="series"[^>]*points="([^"]*)"', svg)
    assert len(lines) == 5
    for line in lines:
        ends = line.split()
        assert len(ends) == 2, f"a point alone draws nothing: {line}"
        (x0, y0), (x1, y1) = (map(float, xy.split(",")) for xy in ends)
        assert x1 - x0 == pytest.approx(svgplot.DOT, abs=0.11) and y0 == y1
