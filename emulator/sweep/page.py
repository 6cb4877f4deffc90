"""The sweep's outputs: ``sweep.json``, ``sweep.csv`` and ``sweep.html``.

The page is self-contained (inline SVG, no script): the recommendation per
loss level, then a heatmap per figure (a row per settings set, a column per
network condition, each cell the mean over the seeds, its spread and seeds
on hover), and the grid it came from.
"""

from __future__ import annotations

import csv
import io
import json
from html import escape
from pathlib import Path
from typing import Any

from etcdlab.report import svgplot
from etcdlab.sweep.metrics import FAILOVER, METRICS

JSON, CSV, HTML = "sweep.json", "sweep.csv", "sweep.html"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 4px 6px; text-align: left; vertical-align: top; }
.note { color: #555; font-size: 13px; }
"""


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def write(summary: dict[str, Any], out: Path) -> tuple[Path, Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = out / JSON, out / CSV, out / HTML
    paths[0].write_text(json.dumps(summary, indent=2) + "\n")
    paths[1].write_text(to_csv(summary))
    paths[2].write_text(to_html(summary))
    return paths


def to_csv(summary: dict[str, Any]) -> str:
    """A row per cell: its condition, its set, and each figure's mean, min and max."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["network", "loss_percent", "target", "settings", "seeds"]
    for metric in METRICS:
        header += [f"{metric.name}_{part}" for part in ("mean", "min", "max")]
    writer.writerow(header)
    for cell in summary["cells"]:
        row: list[Any] = [
            cell["network"],
            cell["loss_percent"] if cell["kind"] == "loss" else "",
            cell["target"] or "",
            cell["settings"],
            len(cell["seeds"]),
        ]
        for metric in METRICS:
            figure = cell["metrics"][metric.name]
            row += ["", "", ""] if figure is None else [figure[p] for p in ("mean", "min", "max")]
        writer.writerow(row)
    return buffer.getvalue()


def _heatmap(summary: dict[str, Any], name: str, label: str, unit: str) -> str:
    settings = list(summary["grid"]["settings"])
    columns = list(summary["grid"]["networks"])
    duration = summary["grid"]["duration_seconds"]
    by = {(c["label"], c["settings"]): c for c in summary["cells"]}
    values: list[list[float | None]] = []
    titles: list[list[str]] = []
    texts: list[list[str | None]] = []
    for row in settings:
        values.append([])
        titles.append([])
        texts.append([])
        for column in columns:
            cell = by[(column, row)]
            figure = cell["metrics"][name]
            values[-1].append(None if figure is None else figure["mean"])
            stuck = cell["no_successor_runs"] if name == FAILOVER else 0
            # A failover longer than the run is known only to be that long.
            texts[-1].append(f"> {duration:g}" if stuck else None)
            if stuck:
                words = (
                    f"no successor within the {duration:g} s run in {stuck} of "
                    f"{len(cell['seeds'])} seeds"
                )
            elif figure is None:
                words = "not measured yet" if not cell["seeds"] else "not applicable"
            else:
                seeds = len(figure["values"])
                words = (
                    f"{_number(figure['mean'])} {unit} (mean of {seeds} seed"
                    f"{'s' if seeds != 1 else ''}; {_number(figure['min'])} to "
                    f"{_number(figure['max'])})"
                )
            lag = f"; {cell['lagged_runs']} run(s) with a lagging emulator" * bool(
                cell["lagged_runs"]
            )
            titles[-1].append(f"{row}, {column}: {label} {words}{lag}")
    return svgplot.heatmap(f"{label} ({unit})", settings, columns, values, titles, texts)


def _recommendations(summary: dict[str, Any]) -> str:
    bound = summary["max_failover_seconds"]
    rows = []
    for rec in summary["recommendations"]:
        if rec["settings"] is None:
            choice = "none qualifies"
        else:
            choice = f"<b>{escape(rec['settings'])}</b>"
        failover = (
            "not measured" if not rec["failover_measured"] else _number(rec["failover_seconds"])
        )
        ranking = ", ".join(
            f"{escape(r['settings'])} {_number(r['lease_losses_per_hour'])}" for r in rec["ranking"]
        )
        excluded = "; ".join(f"{escape(k)}: {escape(v)}" for k, v in rec["excluded"].items())
        rows.append(
            f"<tr><td>{rec['loss_percent']:g}%</td><td>{choice}</td>"
            f"<td>{_number(rec['lease_losses_per_hour'])}</td><td>{failover}</td>"
            f"<td>{ranking}</td><td>{excluded}</td></tr>"
        )
    return (
        f"<p>Per loss level, the settings set with the fewest lease losses per hour (the "
        f"worse of the leader and follower cells; ties: fewer readyz failures, then lower "
        f"p99) among those whose failover time (worst seed of the dead-member cell) stays "
        f"within {bound:g} s.</p><table><tr><th>loss</th><th>recommended</th>"
        "<th>lease losses per hour</th><th>failover s</th><th>ranking (lease losses per "
        "hour)</th><th>excluded</th></tr>" + "".join(rows) + "</table>"
    )


def to_html(summary: dict[str, Any]) -> str:
    grid = summary["grid"]
    runs = summary["runs"]
    sets = "".join(
        f"<tr><td>{escape(name)}</td>"
        + "".join(f"<td>{value:g}</td>" for value in values.values())
        + "</tr>"
        for name, values in grid["settings"].items()
    )
    keys = next(iter(grid["settings"].values())).keys()
    header = "".join(f"<th>{escape(k)} (s)</th>" for k in keys)
    maps = "".join(
        f"<figure>{_heatmap(summary, m.name, m.label, m.unit)}</figure>" for m in METRICS
    )
    incomplete = (
        f'<p class="note">Incomplete: {runs["done"]} of {runs["planned"]} runs done; '
        f"{len(runs['failed'])} failed. Run the same command again to finish it.</p>"
        if runs["done"] < runs["planned"]
        else ""
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>etcdlab sweep</title><style>{STYLE}</style></head><body>"
        "<h1>etcdlab sweep</h1>"
        f'<p class="note">{runs["done"]} runs of {grid["duration_seconds"]:g} s (unscaled) '
        f"at time scale {grid['time_scale']:g}, seeds {grid['seeds']}; every figure is over "
        "the fault's window in unscaled seconds. Hover a cell for its spread over the "
        "seeds. Reading them: docs/RECOMMENDATIONS.md.</p>"
        f"{incomplete}<h2>Recommendations</h2>{_recommendations(summary)}"
        f"<h2>Heatmaps</h2>{maps}"
        f"<h2>Settings sets</h2><table><tr><th>set</th>{header}</tr>{sets}</table>"
        "</body></html>\n"
    )
