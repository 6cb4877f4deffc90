"""The HTML report in a real browser: headless Chromium loads it without a single
console message, paints every plot, and highlights the window of the claim a link
points to (checked on the pixels of screenshots); it lays the summary, the
description and the faults' settings out above the claims and the plots, and
shows each plot's values under the pointer wherever they are (checked with the
page's own hit testing).

Chromium comes from Debian (`apt-get install chromium`, which `.ci/run` does);
without it these tests skip, and fail under CI=true. No etcd: the report is
built from the synthetic timeline of tests/report/test_render.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from etcdlab.common.timeline import Timeline
from etcdlab.common.timescale import TimeScale
from etcdlab.report import svgplot
from etcdlab.report.plots import FIGURES
from etcdlab.report.render import write_report
from tests.conftest import require_tool
from tests.report.test_render import rich
from tests.synthetic import gauge

# Without the background-networking flags Chromium waits on services this closed network
# never answers. One device pixel per CSS pixel and no scrollbar, so the boxes the page
# reports are the screenshot's pixel coordinates.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--enable-logging=stderr",
    "--v=0",
)
WINDOW = (1280, 6000)
TIMEOUT = 60.0
# Blink logs every console message (script errors, invalid SVG attributes) as ...:CONSOLE...
CONSOLE = re.compile(r"^\[[^\]]*:CONSOLE[^\]]*\] (.*)$", re.M)
# The fault shade (#f4c7c3 at opacity 0.55) over the white background.
SHADE = (249, 224, 222)
# A followed claim's window (#ffd54f at opacity 0.45) over the white background.
BAND = (255, 236, 176)
# A thin line's edge pixels are its colour partly blended with the white under it.
MIN_COVERAGE = 0.4
TOLERANCE = 16
MIN_PIXELS = 40


def _kill_group(pgid: int) -> None:
    # Chromium forks helpers (zygote, gpu, renderer) that may outlive the browser process.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def chromium(page: Path, workdir: Path, *args: str, url_suffix: str = "") -> tuple[str, str]:
    """Loads ``page`` (``url_suffix`` appended to its URL: a fragment) headless with a
    fresh profile; returns stdout and the browser log."""
    binary = require_tool("chromium", "headless; Debian: apt-get install chromium")
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir)
    command = [
        binary,
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *args,
        page.as_uri() + url_suffix,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except BaseException:
        _kill_group(process.pid)
        process.communicate()
        raise
    _kill_group(process.pid)
    assert process.returncode == 0, f"chromium exited {process.returncode}:\n{stderr[-3000:]}"
    return stdout, stderr


def console_messages(log: str) -> list[str]:
    return CONSOLE.findall(log)


@dataclass(frozen=True)
class Plot:
    id: str  # the figure's id
    box: tuple[int, int, int, int]  # left, top, width, height in page pixels
    area: tuple[float, float, float, float]  # where the data is, in the chart's own pixels
    colors: frozenset[str]  # strokes of the data series and fills of the lane segments

    def crop(self, image: Image.Image, left: float, right: float | None = None) -> Image.Image:
        """The plot area of the screenshot, from ``left`` to ``right`` (chart pixels)."""
        x, y, width, height = self.area
        right = x + width if right is None else right
        page_left, page_top = self.box[0], self.box[1]
        return image.crop(
            (round(page_left + left), round(page_top + y), round(page_left + right),
             round(page_top + y + height))
        )  # fmt: skip


def plots_as_laid_out(html: Path, workdir: Path) -> list[Plot]:
    """Where Chromium placed each SVG, read from a copy that writes its boxes into the DOM."""
    probe = workdir / "probe.html"
    probe.write_text(
        html.read_text().replace(
            "</body>",
            "<script>for (const svg of document.querySelectorAll('svg')) {"
            " const r = svg.getBoundingClientRect();"
            " svg.setAttribute('data-box', [r.left + scrollX, r.top + scrollY, r.width, r.height]"
            ".map(Math.round).join(' ')); }</script></body>",
        )
    )
    dom, _ = chromium(probe, workdir, "--dump-dom")
    plots = []
    for figure, svg in re.findall(r'<figure id="plot-(\w+)">(<svg\b.*?</svg>)', dom, flags=re.S):
        box = re.search(r'data-box="([-\d ]+)"', svg)
        assert box, svg[:200]
        left, top, width, height = map(int, box.group(1).split())
        area = re.search(r'<rect class="area" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" '
                         r'height="([\d.]+)"', svg)  # fmt: skip
        assert area, svg[:200]
        x, y, w, h = map(float, area.groups())
        colors = re.findall(r'<polyline class="series"[^>]*\bstroke="(#[0-9a-f]{6})"', svg)
        colors += re.findall(r'<rect class="segment"[^>]*\bfill="(#[0-9a-f]{6})"', svg)
        plots.append(Plot(figure, (left, top, width, height), (x, y, w, h), frozenset(colors)))
    return plots


def rgb(hex_color: str) -> tuple[int, int, int]:
    return int(hex_color[1:3], 16), int(hex_color[3:5], 16), int(hex_color[5:7], 16)


def painted(region: Image.Image, color: tuple[int, int, int]) -> int:
    """How many pixels of ``region`` show ``color``, alone or antialiased over white."""
    ink = [255 - c for c in color]
    norm = sum(i * i for i in ink)
    colors = region.getcolors(maxcolors=region.width * region.height)
    assert colors is not None
    count = 0
    for n, pixel in colors:
        assert isinstance(pixel, tuple), "an RGB image has tuple pixels"
        seen = [255 - p for p in pixel]
        # How much of the colour covers the pixel, and how far the rest is from that blend.
        coverage = sum(s * i for s, i in zip(seen, ink, strict=True)) / norm
        residual = max(abs(s - coverage * i) for s, i in zip(seen, ink, strict=True))
        if coverage >= MIN_COVERAGE and residual <= TOLERANCE:
            count += n
    return count


def staggered() -> Timeline:
    """The report test's timeline, with workqueues that never share a line: every series
    keeps some pixels of its own colour."""
    timeline = rich()
    timeline.gauges = [g for g in timeline.gauges if not g.name.startswith("workqueue/")]
    for i, controller in enumerate(("statefulset", "deployment", "daemonset")):
        gauge(timeline, f"workqueue/{controller}", (0, 0), (150 + 50 * i, 2 + 2 * i), (500, 0))
    return timeline


def test_the_report_loads_without_console_messages(tmp_path: Path) -> None:
    for timeline in (staggered(), Timeline("empty", seed=0, time_scale=TimeScale(1.0))):
        _, paths = write_report(timeline, tmp_path / timeline.scenario)
        dom, log = chromium(paths.html, tmp_path, "--dump-dom")
        assert console_messages(log) == []
        # The HTML parser kept every chart and every mark of it.
        source = paths.html.read_text()
        marks = ("<svg", 'class="series"', 'class="segment"', 'class="fault"', 'class="hover"',
                 'class="mark"', 'class="band"', "<title>")  # fmt: skip
        for mark in marks:
            assert dom.count(mark) == source.count(mark), mark
        # Every link within the page leads somewhere in it.
        targets = set(re.findall(r'href="#([^"]+)"', dom))
        assert targets, "the claims link to their plots"
        assert {t for t in targets if f'id="{t}"' not in dom} == set()


def test_the_console_check_catches_script_and_svg_errors(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body>"
        '<svg width="10" height="10"><polyline points="1,2 nan,3" stroke="red"/></svg>'
        "<script>undefined_function()</script></body></html>"
    )
    _, log = chromium(page, tmp_path, "--dump-dom")
    messages = console_messages(log)
    assert any("<polyline> attribute points" in m for m in messages), messages
    assert any("Uncaught ReferenceError" in m for m in messages), messages


def test_every_plot_is_painted(tmp_path: Path) -> None:
    _, paths = write_report(staggered(), tmp_path / "report")
    plots = plots_as_laid_out(paths.html, tmp_path)
    assert [plot.id for plot in plots] == [figure.id for figure in FIGURES]
    shot = tmp_path / "report.png"
    _, log = chromium(paths.html, tmp_path, f"--screenshot={shot}")
    assert console_messages(log) == []
    image = Image.open(shot).convert("RGB")
    assert image.size == WINDOW
    for plot in plots:
        _, top, width, height = plot.box
        assert width == svgplot.WIDTH, "charts are drawn at their own size, never squeezed"
        assert top + height <= WINDOW[1], "the window is too short for the report"
        area = plot.crop(image, plot.area[0])
        assert painted(area, SHADE) >= MIN_PIXELS, f"no fault shade in the plot at {plot.box}"
        assert plot.colors, f"the plot at {plot.box} declares no data"
        for color in plot.colors:
            assert painted(area, rgb(color)) >= MIN_PIXELS, f"{color} missing at {plot.box}"


def test_a_claim_link_highlights_its_window_on_its_plot(tmp_path: Path) -> None:
    """Following a claim's link (the page's fragment) shows its window over the plot,
    and nothing else changes: the window is past the fault, over a white plot."""
    report, paths = write_report(staggered(), tmp_path / "report")
    claim = next(c for c in report["claims"] if c["id"] == "recovery.latency-normalizes")
    assert claim["window"] == [900, None] and claim["plot"] == "latency"
    (plot,) = [p for p in plots_as_laid_out(paths.html, tmp_path) if p.id == "latency"]
    svg = re.search(r'<figure id="plot-latency">(.*?)</figure>', paths.html.read_text(), re.S)
    assert svg
    band = re.search(r'id="claim-recovery.latency-normalizes">.*?<rect class="band" '
                     r'x="([\d.]+)"', svg.group(1), re.S)  # fmt: skip
    assert band
    shots = {}
    for name, fragment in (("plain", ""), ("followed", "#claim-recovery.latency-normalizes")):
        shot = tmp_path / f"{name}.png"
        page = paths.html.with_name(f"{name}.html")
        page.write_text(paths.html.read_text())
        _, log = chromium(page, tmp_path, f"--screenshot={shot}", url_suffix=fragment)
        assert console_messages(log) == []
        shots[name] = Image.open(shot).convert("RGB")
    left = float(band.group(1))
    inside = [shot for shot in (plot.crop(shots[n], left) for n in ("plain", "followed"))]
    assert painted(inside[0], BAND) == 0
    assert painted(inside[1], BAND) >= 0.5 * inside[1].width * inside[1].height
    # Left of the window the plot is the same with and without the link followed.
    before = [plot.crop(shots[n], plot.area[0], left - 1) for n in ("plain", "followed")]
    assert ImageChops.difference(*before).getbbox() is None


# Writes, into the page, what a reader meets: where the top sections are laid out,
# and for points across every hover target on a plot, whose <title> the browser
# shows there (the nearest element under the pointer that has one).
READER = """<script>
addEventListener('load', () => {
const topOf = (selector) => document.querySelector(selector).getBoundingClientRect().top;
const tip = (element) => {
  for (let e = element; e; e = e.parentElement) {
    const title = [...e.children].find((c) => c.tagName === 'title');
    if (title) return title.textContent;
  }
  return null;
};
const hovers = [];
for (const rect of document.querySelectorAll('figure rect.hover, figure rect.segment')) {
  const r = rect.getBoundingClientRect();
  for (let k = 1; k < 6; k++) {
    const under = document.elementFromPoint(r.left + r.width * k / 6, r.top + r.height / 2);
    hovers.push([rect.closest('figure').id, tip(rect), under && tip(under)]);
  }
}
document.body.setAttribute('data-reader', JSON.stringify({
  happened: topOf('ul.happened'), description: topOf('#description'),
  faults: topOf('#faults'), claims: topOf('tr[id^="row-"]'), plots: topOf('figure svg'),
  hovers: hovers,
  bands: [...document.querySelectorAll('.band')]
    .filter((band) => getComputedStyle(band).visibility === 'visible')
    .map((band) => {
      const r = band.getBoundingClientRect();
      const under = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
      return [tip(band), under && tip(under)];
    }),
}));
});
</script></body>"""


@pytest.mark.parametrize("fragment", ["", "#claim-phase.immediate.health-degraded"])
def test_the_summary_comes_first_and_every_plot_shows_its_values_on_hover(
    tmp_path: Path, fragment: str
) -> None:
    """Also with a claim's link followed: its window's band over the health lanes."""
    timeline = staggered()
    timeline.settings = {
        "description": "30% loss on one member",
        "faults": [{"at": 10.0, "duration": 30.0, "kind": "loss", "target": "0",
                    "probability": 0.3, "links": "all", "period": 10.0}],
    }  # fmt: skip
    _, paths = write_report(timeline, tmp_path / "report")
    probe = tmp_path / "reader.html"
    probe.write_text(paths.html.read_text().replace("</body>", READER))
    dom, log = chromium(probe, tmp_path, "--dump-dom", url_suffix=fragment)
    assert console_messages(log) == []
    found = re.search(r"data-reader=\"([^\"]*)\"", dom)
    assert found, "the reader script did not run"
    reader = json.loads(unescape(found.group(1)))
    # A followed claim's band shows, and lets the pointer through to what is under it.
    assert len(reader["bands"]) == (1 if fragment else 0)
    for claim, shown in reader["bands"]:
        assert shown != claim
    # Read top down: the description, what happened and the faults' settings come
    # before the claims, and the claims before the plots.
    assert reader["description"] < reader["happened"] < reader["faults"] < reader["claims"]
    assert reader["claims"] < reader["plots"]
    # Under the pointer, across each bin and lane segment, the browser shows
    # that target's own values: nothing drawn over it (a fault shade, a claim's band)
    # takes the tooltip.
    hovers = reader["hovers"]
    assert {figure for figure, _, _ in hovers} == {f"plot-{f.id}" for f in FIGURES}
    covered = [(figure, own, shown) for figure, own, shown in hovers if own != shown]
    assert covered == [], covered[:5]
    assert any(" to " in own and " ms" in own for figure, own, _ in hovers
               if figure == "plot-latency")  # fmt: skip
