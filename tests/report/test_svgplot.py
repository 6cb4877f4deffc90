from __future__ import annotations

import re

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
