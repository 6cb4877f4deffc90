"""The retry benchmark's table and plot, on synthetic results."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from etcdlab.bench.retry_metrics import HerdResult, RunResult, StrategyResult
from etcdlab.bench.retry_report import plot, table
from etcdlab.report import svgplot

SVG = "{http://www.w3.org/2000/svg}"


def run(fault: str, strategy: str, goodput: float, herd: HerdResult | None = None) -> RunResult:
    result = StrategyResult(strategy, 100, 90, goodput, 1.0, 9.0, 1.5, 0.2, 1.1)
    return RunResult(fault, result, 1.0, 2.0, 4.0, 0.1, [3] * 60, 1.2, herd)


def test_plot_is_one_svg_of_svgplot_charts() -> None:
    herd = HerdResult(4, 3, 12, 0.8, 2.0, 0.05, [1] * 120)
    results = [
        run("kill", "none", 50.0),
        run("kill", "exponential", 80.0),
        run("outage", "none", 20.0, herd),
        run("outage", "exponential", 70.0, herd),
    ]
    root = ElementTree.fromstring(plot(results))
    charts = root.findall(f"{SVG}g/{SVG}svg")
    titles = [chart.attrib["aria-label"] for chart in charts]
    assert titles[:2] == ["goodput (successful operations/s)", "RPCs per successful operation"]
    assert "kill: RPCs/s over the run" in titles and "outage: RPCs/s over the run" in titles
    assert sum(t.startswith("outage herd") for t in titles) == 3
    # Two faults x two strategies in each bar chart, the fault window shaded.
    assert len(charts[0].findall(f".//{SVG}rect[@class='bar']")) == 4
    assert charts[2].findall(f".//{SVG}rect[@class='fault']")
    total = sum(float(chart.attrib["height"]) for chart in charts)
    assert float(root.attrib["height"]) == total
    assert "outage    exponential" in table(results) and "3/4" in table(results)


def test_a_missing_value_draws_no_bar() -> None:
    svg = svgplot.bar_chart("t", ["a", "b"], [("x", [1.0, None]), ("y", [2.0, 0.5])])
    assert svg.count('class="bar"') == 3
