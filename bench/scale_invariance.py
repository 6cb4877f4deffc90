"""Does a time-scaled run tell the same story as a real-timing run?

Runs each scenario at several time scales and seeds (``etcdlab run SCENARIO
--time-scale S --seed K``, one child process per run), reads every run's
``report.json`` and compares its unscaled figures (``"figures"``: lease losses,
apiserver health failures, latency quantiles, errors by class, time to detect,
time to recover) and its claim verdicts with the scale-1 runs of the same
scenario.

How to read the table: a cell is the median over the seeds and, in brackets,
the lowest and highest seed (the spread a figure has to be judged against:
two runs with the same seed differ too, because real etcd and the event loop
are not seeded). ``never`` stands for a figure that did not happen (no error,
never healthy again). A cell is marked ``✗`` when its median is outside the
bounds around the scale-1 median (within 25%, or within an absolute slack for
small values: 2 for counts, 1 s for times, which are sampled every 0.5 s,
5 ms for latency quantiles) and outside the range of the scale-1 seeds; a
cell outside the bounds but inside that range is marked ``(~)``: so few runs
cannot tell it from run-to-run spread. The verdict line counts the claims
whose most common verdict over the seeds differs from scale 1.

Runs are kept under ``--out`` (one directory per scenario, scale and seed,
with the run's log and the load average before and after it in
``bench.json``); a cell whose ``report.json`` exists is not run again, so an
interrupted matrix resumes where it stopped (``--rerun`` runs it anyway).

examples:
  .venv/bin/python -m etcdlab.bench.scale_invariance            # every scenario, the full matrix
  .venv/bin/python -m etcdlab.bench.scale_invariance --scenarios packet-loss-30,member-pause \\
      --scales 1,0.5,0.2 --seeds 0,1 --tail 60 --markdown /tmp/scale.md
  .venv/bin/python -m etcdlab.bench.scale_invariance --scenarios partition-minority \\
      --scales 1,0.75 --seeds 0,1,2 --control-seeds 3,4,5   # scale 1 against itself too
  .venv/bin/python -m etcdlab.bench.scale_invariance --compare-only --out bench-scale
Results: docs/BENCHMARKS.md, "Scale invariance".
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import statistics
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etcdlab.bench.sweep import agrees, flatten
from etcdlab.common.timescale import TimeScale
from etcdlab.scenario.spec import BUILTINS, load
from etcdlab.sweep.child import run_child, stop_on_sigterm

SCALES = (1.0, 0.5, 0.2, 0.1)
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Cell:
    scenario: str
    scale: float
    seed: int

    def directory(self, out: Path) -> Path:
        return out / self.scenario / f"scale-{self.scale:g}-seed-{self.seed}"


def run_cell(cell: Cell, out: Path, duration: float | None) -> dict[str, Any]:
    """Run one scenario as ``etcdlab run`` in a child process; its report lands in
    the cell's directory with ``run.log`` and ``bench.json``."""
    where = cell.directory(out)
    command = [
        sys.executable, "-m", "etcdlab", "run", cell.scenario,
        "--time-scale", f"{cell.scale:g}", "--seed", str(cell.seed),
        "--out", str(where), "--quiet",
        *(["--duration", f"{duration:g}"] if duration else []),
    ]  # fmt: skip
    return run_child(command, where)


@dataclass
class Run:
    cell: Cell
    figures: dict[str, float]
    verdicts: dict[str, str]
    load: tuple[float, float]  # 1-minute load average before and after the run


def read_run(cell: Cell, out: Path) -> Run | None:
    where = cell.directory(out)
    try:
        report = json.loads((where / "report.json").read_text())
    except FileNotFoundError:
        return None
    if "figures" not in report:
        raise ValueError(f"{where / 'report.json'} has no figures: written by an older etcdlab")
    try:
        meta = json.loads((where / "bench.json").read_text())
        load = (meta["loadavg_before"][0], meta["loadavg_after"][0])
    except FileNotFoundError:
        load = (math.nan, math.nan)
    verdicts = {claim["id"]: claim["verdict"] for claim in report["claims"]}
    return Run(cell, flatten(report["figures"]), verdicts, load)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _majority(verdicts: Sequence[str]) -> str:
    counts = collections.Counter(verdicts).most_common()
    best = counts[0][1]
    return "/".join(sorted(v for v, n in counts if n == best))


@dataclass
class Comparison:
    """Figures and verdicts per column (a group of runs: ``"scale 0.5"``), each
    judged against the first column, the scale-1 reference."""

    scenario: str
    columns: list[str]
    seeds: dict[str, list[int]]
    medians: dict[tuple[str, str], float]
    spreads: dict[tuple[str, str], tuple[float, float]]
    held: dict[tuple[str, str], bool]
    noise: dict[tuple[str, str], bool]
    verdicts: dict[tuple[str, str], str]
    loads: dict[str, tuple[float, float]]

    @property
    def reference(self) -> str:
        return self.columns[0]

    @property
    def figures(self) -> list[str]:
        return sorted({name for name, _ in self.medians})

    def failing(self, column: str) -> list[str]:
        return [f for f in self.figures if not self.held.get((f, column), True)]

    def distorted(self, column: str) -> list[str]:
        """Failing figures whose median is also outside the reference seeds' range."""
        return [f for f in self.failing(column) if not self.noise[(f, column)]]

    def verdicts_differing(self, column: str) -> list[str]:
        claims = sorted({claim for claim, _ in self.verdicts})
        return [
            c
            for c in claims
            if self.verdicts.get((c, column)) != self.verdicts[(c, self.reference)]
        ]


def compare(scenario: str, groups: Mapping[str, Sequence[Run]]) -> Comparison:
    """Medians and spreads per figure and column, checked against the first column."""
    columns = [label for label, group in groups.items() if group]
    if not columns or columns[0] != next(iter(groups)):
        raise ValueError(f"{scenario}: no run at time scale 1 to compare with")
    reference = columns[0]
    runs = [r for label in columns for r in groups[label]]
    names = sorted({name for r in runs for name in r.figures})
    medians: dict[tuple[str, str], float] = {}
    spreads: dict[tuple[str, str], tuple[float, float]] = {}
    for name in names:
        for label in columns:
            values = [r.figures[name] for r in groups[label] if name in r.figures]
            medians[(name, label)] = _median(values)
            spreads[(name, label)] = (min(values, default=math.nan), max(values, default=math.nan))
    held = {
        (name, label): agrees(name, medians[(name, reference)], medians[(name, label)])
        for name in names
        for label in columns
    }
    # Outside the bounds, but where the reference's own seeds already range: so
    # few runs cannot tell that from run-to-run spread.
    noise = {
        (name, label): spreads[(name, reference)][0]
        <= medians[(name, label)]
        <= spreads[(name, reference)][1]
        for name in names
        for label in columns
    }
    claims = sorted({claim for r in runs for claim in r.verdicts})
    verdicts = {
        (claim, label): _majority([r.verdicts[claim] for r in groups[label] if claim in r.verdicts])
        for claim in claims
        for label in columns
    }
    loads = {
        label: (min(min(r.load) for r in groups[label]), max(max(r.load) for r in groups[label]))
        for label in columns
    }
    seeds = {label: sorted({r.cell.seed for r in groups[label]}) for label in columns}
    return Comparison(scenario, columns, seeds, medians, spreads, held, noise, verdicts, loads)


def _number(value: float, figure: str) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "never"
    if figure.startswith("latency.") and not figure.endswith(".requests"):
        return f"{value * 1000:.0f} ms" if value >= 0.0995 else f"{value * 1000:.1f} ms"
    if value == int(value):
        return f"{value:.0f}"
    return f"{value:.1f}"


def markdown(comparison: Comparison) -> str:
    """The comparison as a Markdown section (what docs/BENCHMARKS.md shows)."""
    c = comparison
    seeds = ", ".join(map(str, c.seeds[c.reference]))
    lines = [
        f"### {c.scenario} (seeds {seeds})",
        "",
        "| figure (unscaled) | " + " | ".join(c.columns) + " |",
        "| --- |" + " --- |" * len(c.columns),
    ]
    for figure in c.figures:
        cells = []
        for label in c.columns:
            low, high = c.spreads[(figure, label)]
            text = _number(c.medians[(figure, label)], figure)
            if low != high:
                text += f" [{_number(low, figure)}-{_number(high, figure)}]"
            if not c.held[(figure, label)]:
                text += " (~)" if c.noise[(figure, label)] else " ✗"
            cells.append(text)
        lines.append(f"| {figure} | " + " | ".join(cells) + " |")
    total = len(c.figures)
    claims = len({claim for claim, _ in c.verdicts})

    def row(title: str, value: Callable[[str], str]) -> str:
        return f"| {title} | " + " | ".join(value(label) for label in c.columns) + " |"

    lines += [
        row("**figures within bounds**", lambda k: f"{total - len(c.failing(k))}/{total}"),
        row(
            f"**outside bounds and {c.reference}'s range (✗)**", lambda k: f"{len(c.distorted(k))}"
        ),
        row(
            "**same majority verdict**",
            lambda k: f"{claims - len(c.verdicts_differing(k))}/{claims}",
        ),
        row("load average (1 min)", lambda k: f"{c.loads[k][0]:.1f}-{c.loads[k][1]:.1f}"),
        "",
    ]
    for label in c.columns[1:]:
        differing = c.verdicts_differing(label)
        if differing:
            words = ", ".join(
                f"{claim} ({c.verdicts[(claim, c.reference)]} -> {c.verdicts[(claim, label)]})"
                for claim in differing
            )
            lines.append(f"- verdicts at {label} that differ from {c.reference}: {words}")
    return "\n".join(lines) + "\n"


def _csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        try:
            values = [kind(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        return values

    return parse


def _scenario(name: str) -> str:
    load(name)  # a one-line error naming the scenario if it is unknown
    return name


def _scale(text: str) -> float:
    return float(TimeScale(text, "time scale"))


def cells(
    scenarios: Sequence[str], scales: Sequence[float], seeds: Sequence[int]
) -> Iterator[Cell]:
    """Scale 1 first for each seed, so a partial matrix can already be compared."""
    for scenario in scenarios:
        for seed in seeds:
            for scale in sorted(set(scales), reverse=True):
                yield Cell(scenario, scale, seed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m etcdlab.bench.scale_invariance",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenarios",
        type=_csv(_scenario),
        default=list(BUILTINS),
        help="comma-separated built-in names or .toml files (default: every built-in)",
    )
    parser.add_argument(
        "--scales",
        type=_csv(_scale),
        default=list(SCALES),
        help="comma-separated time scales; 1 is always added (default 1,0.5,0.2,0.1)",
    )
    parser.add_argument(
        "--seeds",
        type=_csv(int),
        default=list(SEEDS),
        help="comma-separated seeds (default 0,1,2)",
    )
    parser.add_argument(
        "--control-seeds",
        type=_csv(int),
        default=[],
        help="also run scale 1 with these seeds, shown as a column judged like the "
        "scaled ones: what differs there is run-to-run spread, the floor below "
        "which no scale can be judged",
    )
    parser.add_argument(
        "--tail",
        type=float,
        help="unscaled seconds to keep after the last fault heals (default: the "
        "scenario's whole duration); shortens the quiet end of every run",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-scale"), help="where runs are kept")
    parser.add_argument("--rerun", action="store_true", help="run cells that have a report")
    parser.add_argument(
        "--compare-only", action="store_true", help="run nothing, compare the runs in --out"
    )
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    if args.tail is not None and not args.tail > 0:
        parser.error(f"--tail must be a positive number of seconds, not {args.tail:g}")
    scales = sorted({1.0, *args.scales}, reverse=True)
    stop_on_sigterm()
    try:
        if not args.compare_only:
            control = cells(args.scenarios, [1.0], args.control_seeds)
            for cell in [*cells(args.scenarios, scales, args.seeds), *control]:
                if (cell.directory(args.out) / "report.json").exists() and not args.rerun:
                    continue
                scenario = load(cell.scenario)
                duration = None
                if args.tail is not None and scenario.faults:
                    end = max(step.end for step in scenario.faults)
                    duration = min(scenario.duration, end + args.tail)
                print(f"running {cell} (load {os.getloadavg()[0]:.1f}) ...", flush=True)
                meta = run_cell(cell, args.out, duration)
                print(f"  done in {meta['wall_seconds']:.0f} s", flush=True)
    except KeyboardInterrupt:
        print("stopped; runs so far are kept and will not be repeated", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as error:
        print(f"scale_invariance: error: {error}", file=sys.stderr)
        return 1
    sections = []
    for name in args.scenarios:
        columns = {f"scale {s:g}": cells([name], [s], args.seeds) for s in scales}
        if args.control_seeds:
            seeds = ",".join(map(str, args.control_seeds))
            columns = {
                "scale 1": columns["scale 1"],
                f"scale 1, seeds {seeds}": cells([name], [1.0], args.control_seeds),
                **columns,
            }
        try:
            groups = {
                label: [run for cell in group if (run := read_run(cell, args.out)) is not None]
                for label, group in columns.items()
            }
        except (ValueError, KeyError) as error:
            print(f"scale_invariance: error: {error}", file=sys.stderr)
            return 2
        if not groups["scale 1"]:
            print(f"{name}: no finished run at time scale 1, nothing to compare", file=sys.stderr)
            continue
        sections.append(markdown(compare(name, groups)))
    text = "\n".join(sections)
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
