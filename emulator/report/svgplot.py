"""Small inline SVG charts for the self-contained report (no JavaScript, no libraries).

Three shapes cover every plot of a run's report: :func:`line_chart` (series of points, optionally
log-scaled), :func:`lane_chart` (one row per name, coloured segments: health
states, who leads a lease), both shading the fault windows and able to mark
windows of interest (:class:`Mark`: a claim's window, as a bar above the plot
and a band over it shown while the mark is the page's ``:target``), and
:func:`bar_chart` (a value per group and series); the sweep's page adds
:func:`heatmap` (a shaded value per row and column). :func:`stack` puts several
charts in one SVG document. Values show on hover, as SVG ``<title>`` tooltips:
a line chart has a column per slice of the time axis naming every series' value
there, a lane chart's segments, a bar chart's bars and a heatmap's cells name
their own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

# One left margin for every chart, wide enough for lane names, so time axes line up.
WIDTH, LEFT, RIGHT, TOP, BOTTOM = 960, 130, 170, 28, 30
LEGEND_ROW, LEGEND_MAX = 14, 20
MARK_ROW = 11  # height of a mark's bar row, between the title and the plot
MARK_GAP = 6  # between the last row and the plot, clear of the top tick label
HOVER_COLUMNS = 200  # hover targets across a line chart's time axis
DOT = 3.0  # width of the dash that draws a lone value of a line
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


@dataclass(frozen=True)
class Series:
    """Points to join; a NaN value is a gap (no data there), the line breaks."""

    label: str
    points: Sequence[tuple[float, float]]
    color: str = ""
    step: bool = False  # hold each value until the next point (gauges)


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    label: str
    color: str


@dataclass(frozen=True)
class Shade:
    start: float
    end: float
    label: str


@dataclass(frozen=True)
class Mark:
    """A window of the time axis worth pointing at; ``end`` may be ``inf``, ``at`` is a
    moment inside it (drawn as a tick). ``id`` is the element's id, for links."""

    id: str
    label: str
    title: str
    start: float
    end: float
    at: float | None = None


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _ticks(low: float, high: float, count: int = 6) -> list[float]:
    span = high - low
    if span <= 0:
        return [low]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.3g}"


class _Frame:
    def __init__(
        self,
        title: str,
        x_range: tuple[float, float],
        plot_h: int,
        marks: Sequence[Mark] = (),
    ) -> None:
        self.title = title
        self.x0, self.x1 = x_range
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1
        self.marks = marks
        self.top = TOP + (len(marks) * MARK_ROW + MARK_GAP if marks else 0)
        self.plot_w = WIDTH - LEFT - RIGHT
        self.plot_h = plot_h
        self.height = self.top + plot_h + BOTTOM
        self.parts: list[str] = [
            # Where the data is drawn (for readers of the SVG; not painted).
            f'<rect class="area" x="{LEFT}" y="{self.top}" width="{self.plot_w}" '
            f'height="{plot_h}" fill="none"/>'
        ]

    def x(self, t: float) -> float:
        return LEFT + (min(max(t, self.x0), self.x1) - self.x0) / (self.x1 - self.x0) * self.plot_w

    def shade(self, shades: Sequence[Shade], *, over: bool = False) -> None:
        """The fault windows; ``over`` the data, they let the pointer through to it,
        so hovering there still shows the data's values, not the fault."""
        through = ' pointer-events="none"' if over else ""
        for s in shades:
            a, b = self.x(s.start), self.x(s.end)
            self.parts.append(
                f'<rect class="fault" x="{a:.1f}" y="{self.top}" width="{max(b - a, 1):.1f}" '
                f'height="{self.plot_h}" fill="#f4c7c3" opacity="0.55"{through}>'
                f"<title>{escape(s.label)}</title></rect>"
            )

    def mark(self) -> None:
        """Each mark's bar in its row above the plot, with a band over the plot that
        the page's stylesheet shows when the mark is the ``:target``."""
        for row, m in enumerate(self.marks):
            y = TOP + row * MARK_ROW + 2
            a, b = self.x(m.start), self.x(m.end)
            beyond = m.start > self.x1
            parts = [
                f'<g class="mark" id="{escape(m.id)}"><title>{escape(m.title)}</title>',
                f'<text x="{LEFT - 4}" y="{y + 7}" font-size="8" text-anchor="end">'
                f"{escape(m.label)}</text>",
                f'<rect class="band" x="{a:.1f}" y="{self.top}" width="{max(b - a, 2):.1f}" '
                f'height="{self.plot_h}"/>',
            ]
            if beyond:
                # The window lies past the end of the run: say so at the edge.
                parts.append(
                    f'<text x="{b:.1f}" y="{y + 7}" font-size="8" text-anchor="end">'
                    f"after the run ({_fmt(m.start)} s) &#8594;</text>"
                )
            else:
                parts.append(
                    f'<rect class="bar" x="{a:.1f}" y="{y}" width="{max(b - a, 2):.1f}" '
                    'height="7"/>'
                )
            if m.at is not None and self.x0 <= m.at <= self.x1:
                parts.append(
                    f'<rect class="at" x="{self.x(m.at) - 1:.1f}" y="{y - 1}" width="2" '
                    'height="9"/>'
                )
            self.parts.append("".join(parts) + "</g>")

    def x_axis(self, unit: str) -> None:
        bottom = self.top + self.plot_h
        self.parts.append(
            f'<line x1="{LEFT}" y1="{bottom}" x2="{LEFT + self.plot_w}" y2="{bottom}" '
            'stroke="#444"/>'
        )
        for tick in _ticks(self.x0, self.x1):
            x = self.x(tick)
            self.parts.append(
                f'<text x="{x:.1f}" y="{bottom + 14}" font-size="10" text-anchor="middle">'
                f"{_fmt(tick)}</text>"
            )
        self.parts.append(
            f'<text x="{LEFT + self.plot_w}" y="{bottom + 26}" font-size="10" '
            f'text-anchor="end">{escape(unit)}</text>'
        )

    def y_axis(self, ticks: Sequence[tuple[float, float]], label: str) -> None:
        """Grid lines and values at ``(value, y)``, and the axis label."""
        for tick, yy in ticks:
            self.parts.append(
                f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{LEFT + self.plot_w}" y2="{yy:.1f}" '
                f'stroke="#ddd"/><text x="{LEFT - 4}" y="{yy + 3:.1f}" font-size="10" '
                f'text-anchor="end">{_fmt(tick)}</text>'
            )
        middle = self.top + self.plot_h / 2
        self.parts.append(
            f'<text x="12" y="{middle:.0f}" font-size="10" '
            f'transform="rotate(-90 12 {middle:.0f})" text-anchor="middle">'
            f"{escape(label)}</text>"
        )

    def legend(self, entries: Sequence[tuple[str, str]]) -> None:
        for i, (label, fill) in enumerate(entries[:LEGEND_MAX]):
            y = self.top + 6 + i * LEGEND_ROW
            x = LEFT + self.plot_w + 10
            self.parts.append(
                f'<rect x="{x}" y="{y - 8}" width="10" height="10" fill="{fill}"/>'
                f'<text x="{x + 14}" y="{y + 1}" font-size="10">{escape(label)}</text>'
            )

    def render(self) -> str:
        title = (
            f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{escape(self.title)}</text>'
        )
        body = "".join(self.parts)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{self.height}" '
            f'viewBox="0 0 {WIDTH} {self.height}" role="img" aria-label="{escape(self.title)}">'
            f"{title}{body}</svg>"
        )


def _hover(frame: _Frame, series: Sequence[Series], unit: str) -> None:
    """Transparent columns across the plot, each titled with every series' value there:
    the value in effect for a step series, the nearest point in the column otherwise."""
    width = (frame.x1 - frame.x0) / HOVER_COLUMNS
    suffix = f" {unit}" if unit else ""
    for column in range(HOVER_COLUMNS):
        low = frame.x0 + column * width
        middle, high = low + width / 2, low + width
        values = []
        for s in series:
            if s.step:
                before = [v for t, v in s.points if t <= middle]
                value = before[-1] if before else None
            else:
                inside = [(abs(t - middle), v) for t, v in s.points if low <= t < high]
                value = min(inside)[1] if inside else None
            if value is not None and math.isfinite(value):
                values.append(f"{s.label} {_fmt(value)}{suffix}")
        if values:
            frame.parts.append(
                f'<rect class="hover" x="{frame.x(low):.1f}" y="{frame.top}" '
                f'width="{frame.x(high) - frame.x(low):.1f}" height="{frame.plot_h}" '
                f'fill="#fff" fill-opacity="0"><title>{_fmt(low)} to {_fmt(high)} s: '
                f"{escape('; '.join(values))}</title></rect>"
            )


def line_chart(
    title: str,
    series: Sequence[Series],
    x_range: tuple[float, float],
    shades: Sequence[Shade] = (),
    y_label: str = "",
    log_y: bool = False,
    x_unit: str = "s",
    plot_h: int = 182,
    marks: Sequence[Mark] = (),
    unit: str = "",
) -> str:
    """``unit`` follows each value in the hover text."""
    frame = _Frame(title, x_range, plot_h, marks)
    frame.shade(shades)
    frame.mark()
    values = [v for s in series for _, v in s.points if math.isfinite(v) and (not log_y or v > 0)]
    y0: float
    y1: float
    if log_y:
        low = min(values, default=1e-4)
        high = max(values, default=1.0)
        y0, y1 = math.floor(math.log10(low)), math.ceil(math.log10(high))
        y1 = max(y1, y0 + 1)
    else:
        y0, y1 = 0.0, max(values, default=1.0) * 1.05 or 1.0

    def y(value: float) -> float:
        v = math.log10(max(value, 10**y0)) if log_y else value
        return frame.top + frame.plot_h - (v - y0) / (y1 - y0) * frame.plot_h

    ticks = [10.0**e for e in range(int(y0), int(y1) + 1)] if log_y else _ticks(y0, y1, 4)
    frame.y_axis([(tick, y(tick)) for tick in ticks], y_label)
    legend = []
    for i, s in enumerate(series):
        stroke = s.color or color(i)
        legend.append((s.label, stroke))
        lines: list[list[tuple[float, float]]] = [[]]
        previous: float | None = None
        for t, v in s.points:
            if not math.isfinite(v):
                lines.append([])
                previous = None
                continue
            if log_y and v <= 0:
                continue
            if s.step and previous is not None:
                lines[-1].append((frame.x(t), y(previous)))
            lines[-1].append((frame.x(t), y(v)))
            previous = v
        if s.step and previous is not None:
            lines[-1].append((frame.x(frame.x1), y(previous)))
        for line in filter(None, lines):
            if len(line) == 1:
                # A value between two gaps (sparse requests in a fine bin) would be a
                # line of no length, drawn as nothing: a short dash shows it.
                (px, py), dash = line[0], DOT / 2
                line = [(px - dash, py), (px + dash, py)]
            coords = [f"{px:.1f},{py:.1f}" for px, py in line]
            frame.parts.append(
                f'<polyline class="series" fill="none" stroke="{stroke}" stroke-width="1.5" '
                f'points="{" ".join(coords)}"><title>{escape(s.label)}</title></polyline>'
            )
    # Last, so the pointer finds them over everything else.
    _hover(frame, series, unit)
    frame.x_axis(x_unit)
    frame.legend(legend)
    return frame.render()


def lane_chart(
    title: str,
    lanes: Sequence[tuple[str, Sequence[Segment]]],
    x_range: tuple[float, float],
    shades: Sequence[Shade] = (),
    legend: Sequence[tuple[str, str]] = (),
    x_unit: str = "s",
    marks: Sequence[Mark] = (),
) -> str:
    lane_h = 18
    # Tall enough for the legend too: a lease or two with many candidates would clip it.
    rows = max(1, len(lanes)) * (lane_h + 4)
    frame = _Frame(title, x_range, max(rows, len(legend[:LEGEND_MAX]) * LEGEND_ROW), marks)
    for row, (name, segments) in enumerate(lanes):
        y = frame.top + row * (lane_h + 4) + 2
        frame.parts.append(
            f'<text x="{LEFT - 4}" y="{y + 13}" font-size="10" text-anchor="end">'
            f"{escape(name[:22])}</text>"
        )
        for seg in segments:
            a, b = frame.x(seg.start), frame.x(seg.end)
            frame.parts.append(
                f'<rect class="segment" x="{a:.1f}" y="{y}" width="{max(b - a, 0.5):.1f}" '
                f'height="{lane_h}" fill="{seg.color}"><title>{escape(name)}: '
                f"{escape(seg.label)} from {_fmt(seg.start)} to {_fmt(seg.end)} s</title></rect>"
            )
    # Over the segments (translucent): the lanes fill the plot and would hide it.
    frame.shade(shades, over=True)
    frame.mark()
    frame.x_axis(x_unit)
    frame.legend(legend)
    return frame.render()


def bar_chart(
    title: str,
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    y_label: str = "",
    plot_h: int = 162,
) -> str:
    """One bar per series in each group (``series``: label, one value per group;
    None draws no bar); a bar's tooltip gives its value."""
    frame = _Frame(title, (0.0, float(max(1, len(groups)))), plot_h)
    values = [v for _, vs in series for v in vs if v is not None]
    top = max(values, default=1.0) * 1.1 or 1.0
    bottom = frame.top + frame.plot_h

    def y(value: float) -> float:
        return bottom - value / top * frame.plot_h

    frame.y_axis([(tick, y(tick)) for tick in _ticks(0.0, top, 4)], y_label)
    width = 0.8 / max(1, len(series))
    for g, group in enumerate(groups):
        frame.parts.append(
            f'<text x="{frame.x(g + 0.5):.1f}" y="{bottom + 14}" font-size="10" '
            f'text-anchor="middle">{escape(group)}</text>'
        )
        for i, (label, vs) in enumerate(series):
            value = vs[g]
            if value is None:
                continue
            a, b = frame.x(g + 0.1 + i * width), frame.x(g + 0.1 + (i + 1) * width)
            frame.parts.append(
                f'<rect class="bar" x="{a:.1f}" y="{y(value):.1f}" width="{b - a:.1f}" '
                f'height="{bottom - y(value):.1f}" fill="{color(i)}">'
                f"<title>{escape(group)}, {escape(label)}: {_fmt(value)}</title></rect>"
            )
    frame.parts.append(
        f'<line x1="{LEFT}" y1="{bottom}" x2="{LEFT + frame.plot_w}" y2="{bottom}" stroke="#444"/>'
    )
    frame.legend([(label, color(i)) for i, (label, _) in enumerate(series)])
    return frame.render()


def stack(charts: Sequence[str]) -> str:
    """Charts from this module, one under the other, as one standalone SVG document."""
    parts = []
    offset = 0
    for chart in charts:
        found = re.match(r'<svg [^>]*height="(\d+)"', chart)
        if found is None:
            raise ValueError("not a chart of svgplot")
        parts.append(f'<g transform="translate(0,{offset})">{chart}</g>')
        offset += int(found[1])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{offset}" '
        f'viewBox="0 0 {WIDTH} {offset}"><rect width="{WIDTH}" height="{offset}" '
        f'fill="white"/>{"".join(parts)}</svg>\n'
    )


def heatmap(
    title: str,
    rows: Sequence[str],
    columns: Sequence[str],
    values: Sequence[Sequence[float | None]],
    titles: Sequence[Sequence[str]],
    texts: Sequence[Sequence[str | None]] | None = None,
    cell_w: int = 96,
    cell_h: int = 26,
) -> str:
    """A value per row and column, shaded from white (the smallest) to red (the
    largest), each written in its cell; None leaves a grey cell. ``titles``
    (one per value) is each cell's tooltip; a ``texts`` entry that is not None
    is written instead of the value."""
    measured = [v for row in values for v in row if v is not None and math.isfinite(v)]
    low, high = min(measured, default=0.0), max(measured, default=0.0)
    left, top = LEFT, TOP + 16
    width = max(WIDTH, left + cell_w * len(columns) + 10)
    height = top + cell_h * len(rows) + 10
    parts = [f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']
    for c, name in enumerate(columns):
        parts.append(
            f'<text x="{left + c * cell_w + cell_w / 2:.0f}" y="{top - 5}" font-size="10" '
            f'text-anchor="middle">{escape(name)}</text>'
        )
    for r, name in enumerate(rows):
        y = top + r * cell_h
        parts.append(
            f'<text x="{left - 6}" y="{y + cell_h / 2 + 4:.0f}" font-size="11" '
            f'text-anchor="end">{escape(name)}</text>'
        )
        for c, value in enumerate(values[r]):
            x = left + c * cell_w
            if value is None or not math.isfinite(value):
                fill, text = "#e0e0e0", "-"
            else:
                share = 0.0 if high == low else (value - low) / (high - low)
                # White to red: green and blue fall together with the share.
                level = round(255 - share * 200)
                fill, text = f"rgb(255,{level},{level})", _fmt(value)
            if texts is not None and texts[r][c] is not None:
                text = str(texts[r][c])
            parts.append(
                f'<g class="cell"><title>{escape(titles[r][c])}</title>'
                f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="{fill}" stroke="#bbb"/><text x="{x + cell_w / 2 - 1:.0f}" '
                f'y="{y + cell_h / 2 + 3:.0f}" font-size="11" text-anchor="middle">'
                f"{escape(text)}</text></g>"
            )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f"{''.join(parts)}</svg>"
    )
