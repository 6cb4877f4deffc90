"""The HTML report in a real browser: headless Chromium loads it without a single
console message and paints every plot (checked on the pixels of a screenshot).

Chromium comes from Debian (`apt-get install chromium`, which `.ci/run` does);
without it these tests skip. No etcd: the report is built from the synthetic
timeline of tests/test_report.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from etcdlab.common.timeline import Timeline
from etcdlab.common.timescale import TimeScale
from etcdlab.report import svgplot
from etcdlab.report.render import write_report
from tests.report.test_render import rich
from tests.synthetic import gauge

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs headless Chromium (Debian: apt-get install chromium)"
)

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
WINDOW = (1280, 4000)
TIMEOUT = 60.0
# Blink logs every console message (script errors, invalid SVG attributes) as ...:CONSOLE...
CONSOLE = re.compile(r"^\[[^\]]*:CONSOLE[^\]]*\] (.*)$", re.M)
# The fault shade (#f4c7c3 at opacity 0.55) over the white background.
SHADE = (249, 224, 222)
# A thin line's edge pixels are its colour partly blended with the white under it.
MIN_COVERAGE = 0.4
TOLERANCE = 16
MIN_PIXELS = 40


def _kill_group(pgid: int) -> None:
    # Chromium forks helpers (zygote, gpu, renderer) that may outlive the browser process.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def chromium(page: Path, workdir: Path, *args: str) -> tuple[str, str]:
    """Loads ``page`` headless with a fresh profile; returns stdout and the browser log."""
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir)
    command = [
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *args,
        page.as_uri(),
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
    box: tuple[int, int, int, int]  # left, top, width, height in page pixels
    colors: frozenset[str]  # strokes of the data series and fills of the lane segments


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
    for svg in re.findall(r"<svg\b.*?</svg>", dom, flags=re.S):
        box = re.search(r'data-box="([-\d ]+)"', svg)
        assert box, svg[:200]
        left, top, width, height = map(int, box.group(1).split())
        colors = re.findall(r'<polyline class="series"[^>]*\bstroke="(#[0-9a-f]{6})"', svg)
        colors += re.findall(r'<rect class="segment"[^>]*\bfill="(#[0-9a-f]{6})"', svg)
        plots.append(Plot((left, top, width, height), frozenset(colors)))
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
        for mark in ("<svg", 'class="series"', 'class="segment"', 'class="fault"'):
            assert dom.count(mark) == source.count(mark), mark


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
    assert len(plots) == 7
    shot = tmp_path / "report.png"
    _, log = chromium(paths.html, tmp_path, f"--screenshot={shot}")
    assert console_messages(log) == []
    image = Image.open(shot).convert("RGB")
    assert image.size == WINDOW
    for plot in plots:
        left, top, width, height = plot.box
        assert width == svgplot.WIDTH, "charts are drawn at their own size, never squeezed"
        assert top + height <= WINDOW[1], "the window is too short for the report"
        area = image.crop(
            (
                left + svgplot.LEFT,
                top + svgplot.TOP,
                left + svgplot.WIDTH - svgplot.RIGHT,
                top + height - svgplot.BOTTOM,
            )
        )
        assert painted(area, SHADE) >= MIN_PIXELS, f"no fault shade in the plot at {plot.box}"
        assert plot.colors, f"the plot at {plot.box} declares no data"
        for color in plot.colors:
            assert painted(area, rgb(color)) >= MIN_PIXELS, f"{color} missing at {plot.box}"
