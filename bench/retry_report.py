"""The retry benchmark's outputs: the printed table, ``bench.json`` and ``bench.svg``
(drawn with :mod:`etcdlab.report.svgplot`, like the scenario report's plots)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from etcdlab.bench.retry_config import FAULTS, BenchConfig
from etcdlab.bench.retry_metrics import RunResult, StrategyResult
from etcdlab.bench.retry_strategies import STRATEGIES
from etcdlab.report import svgplot
from etcdlab.report.svgplot import Series, Shade


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def row(r: StrategyResult) -> str:
    """One strategy's numbers on a line (the progress output)."""
    ok = 100 * r.succeeded / r.operations if r.operations else 0.0
    return (
        f"goodput {r.goodput:7.1f}/s  ok {ok:5.1f}%  p50 {_fmt(r.p50_ms):>7} ms  "
        f"p99 {_fmt(r.p99_ms):>7} ms  amp {_fmt(r.amplification, 2):>5}  "
        f"recovery {_fmt(r.recovery_s, 2):>5} s  storm {'yes' if r.storm else 'no'}"
    )


def table(results: Sequence[RunResult]) -> str:
    header = (
        f"{'fault':<9} {'strategy':<13} {'goodput/s':>9} {'ok%':>6} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'amp':>5} {'recov s':>7} {'rpc x':>6} {'disp':>6} storm"
    )
    lines = [header, "-" * len(header)]
    for run in results:
        r = run.result
        ok = 100 * r.succeeded / r.operations if r.operations else 0.0
        lines.append(
            f"{run.fault:<9} {r.strategy:<13} {r.goodput:9.1f} {ok:6.1f} "
            f"{_fmt(r.p50_ms):>8} {_fmt(r.p99_ms):>8} {_fmt(r.amplification, 2):>5} "
            f"{_fmt(r.recovery_s, 2):>7} {_fmt(r.fault_rpc_rate_ratio, 2):>6} "
            f"{_fmt(run.dispersion, 2):>6} {'YES' if r.storm else 'no'}"
        )
    herds = [run for run in results if run.herd is not None]
    if herds:
        lines += [
            "",
            "herd at the outage's start: every client increments one shared counter "
            "(read + compare-guarded write)",
            f"{'strategy':<13} {'done':>7} {'RPCs':>6} {'RPCs/done':>9} {'finished s':>10} "
            f"{'disp':>6}",
        ]
        for run in herds:
            h = run.herd
            assert h is not None
            per = h.calls / h.succeeded if h.succeeded else None
            lines.append(
                f"{run.result.strategy:<13} {f'{h.succeeded}/{h.clients}':>7} {h.calls:6d} "
                f"{_fmt(per, 1):>9} {_fmt(h.finished_s, 2):>10} {_fmt(h.dispersion, 2):>6}"
            )
    return "\n".join(lines)


def plot(results: Sequence[RunResult]) -> str:
    """Goodput and RPCs per success per fault and strategy, RPCs/s over each
    fault's run (the fault shaded), and the outage herd."""
    faults = list(dict.fromkeys(run.fault for run in results))
    strategies = list(dict.fromkeys(run.result.strategy for run in results))
    by = {(run.fault, run.result.strategy): run for run in results}
    # A strategy keeps its colour in every chart, whichever others a chart leaves out.
    colour = {s: svgplot.color(i) for i, s in enumerate(strategies)}

    def per_strategy(value: str) -> list[tuple[str, list[float | None]]]:
        return [
            (s, [getattr(by[f, s].result, value) if (f, s) in by else None for f in faults])
            for s in strategies
        ]

    charts = [
        svgplot.bar_chart("goodput (successful operations/s)", faults, per_strategy("goodput")),
        svgplot.bar_chart("RPCs per successful operation", faults, per_strategy("amplification")),
    ]
    for fault in faults:
        runs = [by[fault, s] for s in strategies if (fault, s) in by]
        charts.append(
            svgplot.line_chart(
                f"{fault}: RPCs/s over the run",
                [
                    Series(r.result.strategy, _rates(r.sent, r.bucket), colour[r.result.strategy])
                    for r in runs
                ],
                (0.0, runs[0].bucket * len(runs[0].sent)),
                shades=[Shade(runs[0].fault_start, runs[0].fault_end, fault)],
                y_label="RPCs/s",
            )
        )
    herds = [(run.result.strategy, run.herd) for run in results if run.herd is not None]
    if herds:
        charts.append(
            svgplot.bar_chart(
                "outage herd: increments done (of each client's one)",
                ["outage"],
                [(name, [float(h.succeeded)]) for name, h in herds],
            )
        )
        charts.append(
            svgplot.bar_chart(
                "outage herd: RPCs per increment done",
                ["outage"],
                [(name, [h.calls / h.succeeded if h.succeeded else None]) for name, h in herds],
            )
        )
        charts.append(
            svgplot.line_chart(
                "outage herd: RPCs/s from the outage's start",
                # Immediate retry would flatten every other curve; it has its own bars.
                [
                    Series(name, _rates(h.timeline, h.bucket), colour[name])
                    for name, h in herds
                    if h.calls > h.clients and name != "immediate"
                ],
                (0.0, herds[0][1].bucket * len(herds[0][1].timeline)),
                y_label="RPCs/s",
            )
        )
    return svgplot.stack(charts)


def _rates(counts: Sequence[int], bucket: float) -> list[tuple[float, float]]:
    """Counts per bucket as rates at each bucket's middle."""
    return [((k + 0.5) * bucket, count / bucket) for k, count in enumerate(counts)]


def write_outputs(cfg: BenchConfig, results: Sequence[RunResult], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "config": dataclasses.asdict(cfg),
        "strategies": {name: STRATEGIES[name].description for name in cfg.strategies},
        "faults": {name: FAULTS[name] for name in cfg.faults},
        "runs": [run.as_json() for run in results],
    }
    (out / "bench.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "bench.svg").write_text(plot(results))
