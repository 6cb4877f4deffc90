"""Whole scenarios under the kernel's packet loss and under the proxy's, side by side.

The per-connection oracle (``bench/loss_fidelity.py``) holds the proxy's loss
model against the kernel on one workload; the failure analysis's claims are
about a cluster and a control plane. Here each cell is one full scenario run,
``etcdlab run SCENARIO --network NETWORK --seed K`` in a child process:

- kernel: no proxies; the members on their own loopback addresses in a
  private network namespace, nftables dropping the share of packets of every
  connection of the faulted member, both ways (``--network kernel``);
- proxy: the fault proxies in front of every member, as ``etcdlab run`` does
  by default.

Same scenarios, same seeds, same control plane. The scenarios are
packet-loss-30 and the same timeline at each other ``--loss`` level (written
as ``packet-loss-<percent>.toml`` under ``--out``). Every run's report.json
gives its ``figures`` (real seconds whatever the time scale): apiserver
latency quantiles before, during and after the fault, errors by class,
apiserver health failures, lease losses, keepalive failures, endpoint
switches, time to detect and time to recover (members healthy again after
the heal, ...); its ``member_recovery`` gives each member's time to healthy
again after each heal (shown for the faulted member and the slowest other);
and its claims' verdicts. From timeline.json, ``peer_disconnects``: how often
a member's raft peer went inactive after the warm-up, summed over the members
(etcd's ``etcd_network_disconnected_peers_total``: a send or read on one of
raft's streams or pipelines failed, e.g. a stream writer's 5 s write deadline).

How to read the table: a cell is the median over the seeds and, in brackets,
the lowest and highest seed; ``never`` is a figure that did not happen. The
last column is proxy / kernel of the medians, marked ``✗`` when it is outside
±25% and the difference is also beyond an absolute slack for small values (2
for counts, 1 s for times, 5 ms for latency quantiles): the target. The
verdict lines list the claims whose most common verdict differs between the
sides. The kernel runs also report how many packets nftables saw on the
faulted member's connections and dropped.

Runs are kept under ``--out`` (one directory per scenario, network and seed,
with ``run.log``, its command and the load average before and after in
``bench.json``); a cell whose run completed at the same timings (time scale
and duration) is reused, so a matrix can be run a seed at a time and resumes
after an interruption (``--rerun`` runs it again). The table names the
timings its runs were made with.

Needs root, ip, nft and setpriv for the kernel side; skips it (and says so)
otherwise. Results: docs/BENCHMARKS.md, "Scenario fidelity".

examples:
  sudo .venv/bin/python -m etcdlab.bench.scenario_fidelity --seeds 0      # 4 runs, ~21 min
  sudo .venv/bin/python -m etcdlab.bench.scenario_fidelity --seeds 0 1 2 --markdown /tmp/sf.md
  sudo .venv/bin/python -m etcdlab.bench.scenario_fidelity --target leader --duration 210 \\
      --seeds 0 1 2    (docs/BENCHMARKS.md's matrix: 12 runs of 3.6 min; 60 s after the heal)
  .venv/bin/python -m etcdlab.bench.scenario_fidelity --compare-only --out bench-scenario-fidelity
  sudo .venv/bin/python -m etcdlab.bench.scenario_fidelity --loss 0.3 --seeds 0 --time-scale 0.5 \\
      --out /tmp/quick       (a quicker, scaled look; real timings are the reference)
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import statistics
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from etcdlab.bench.sweep import NEVER, agrees, flatten
from etcdlab.common.argtypes import positive_float, time_scale
from etcdlab.scenario import kernel
from etcdlab.scenario.spec import BUILTINS, Scenario
from etcdlab.sweep.child import run_child, stop_on_sigterm

BASE = BUILTINS["packet-loss-30"]
NETWORKS = ("kernel", "proxy")


def scenario_for(loss: float, target: str = "0") -> Scenario:
    """packet-loss-30's timeline with ``loss`` instead of 30%, on ``target``."""
    percent = round(loss * 100)
    faults = tuple(replace(step, probability=loss, target=target) for step in BASE.faults)
    description = BASE.description.replace("30%", f"{percent}%")
    name = f"packet-loss-{percent}" + ("" if target == BASE.faults[0].target else f"-{target}")
    return Scenario(name, description, BASE.duration, faults)


def to_toml(scenario: Scenario) -> str:
    lines = [
        f"name = {json.dumps(scenario.name)}",
        f"description = {json.dumps(scenario.description)}",
        f"duration = {scenario.duration:g}",
    ]
    for step in scenario.faults:
        lines += [
            "[[fault]]",
            f"at = {step.at:g}",
            f"duration = {step.duration:g}",
            f'kind = "{step.kind}"',
            f'target = "{step.target}"',
            f"probability = {step.probability:g}",
            f'links = "{step.links}"',
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Cell:
    loss: float
    network: str
    seed: int
    target: str = "0"

    @property
    def scenario(self) -> Scenario:
        return scenario_for(self.loss, self.target)

    def directory(self, out: Path) -> Path:
        return out / self.scenario.name / f"{self.network}-seed-{self.seed}"


def timing(scale: float, duration: float | None) -> list[str]:
    """The ``etcdlab run`` options that set a run's timings."""
    return ["--time-scale", f"{scale:g}", *(["--duration", f"{duration:g}"] if duration else [])]


def made_with(where: Path) -> list[str] | None:
    """The timing options the run in ``where`` was made with (its bench.json), or
    None if it has no record."""
    meta = where / "bench.json"
    if not meta.exists():
        return None
    command: list[str] = json.loads(meta.read_text())["command"]
    made: list[str] = []
    for option in ("--time-scale", "--duration"):
        if option in command:
            made += [option, command[command.index(option) + 1]]
    return made


def run_cell(cell: Cell, out: Path, scale: float, duration: float | None) -> None:
    """One ``etcdlab run`` in a child process; its report, ``run.log`` and
    ``bench.json`` land in the cell's directory."""
    where = cell.directory(out)
    name = cell.scenario.name
    if name != BASE.name:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.toml"
        path.write_text(to_toml(cell.scenario))
        name = str(path)
    command = [
        sys.executable, "-m", "etcdlab", "run", name, "--network", cell.network,
        "--seed", str(cell.seed), "--out", str(where), "--quiet", *timing(scale, duration),
    ]  # fmt: skip
    run_child(command, where)


@dataclass
class Run:
    cell: Cell
    figures: dict[str, float]
    verdicts: dict[str, str]
    dropped: tuple[int, int] | None  # kernel: (packets seen, dropped) on the faulted links
    load: float | None
    led: bool | None = None  # the faulted member led raft when the fault began
    made: list[str] | None = None  # its timing options (made_with)


def finished(where: Path) -> dict[str, Any] | None:
    """The report of a run that ran to its end in ``where``, or None (none, or
    one a signal or an error cut short)."""
    path = where / "report.json"
    if not path.exists():
        return None
    report: dict[str, Any] = json.loads(path.read_text())
    return report if report.get("outcome", {}).get("state", "completed") == "completed" else None


def recovery_by_role(heal: dict[str, Any]) -> dict[str, float | None]:
    """Seconds to healthy again after one heal (an entry of report.json's
    member_recovery) of the faulted member and of the slowest other one: with
    ``--target leader`` the faulted member's name changes from seed to seed,
    so a figure per name would mix the roles."""
    faulted = set(heal["target"].split(","))
    times = {name: NEVER if t is None else float(t) for name, t in heal["members"].items()}
    mine = [t for name, t in times.items() if name in faulted]
    others = [t for name, t in times.items() if name not in faulted]
    return {"faulted": max(mine, default=0.0), "others": max(others, default=0.0)}


def peer_disconnects(where: Path) -> float | None:
    """How often the members' raft peers went inactive in the run in ``where``,
    all members together (the engine's ``peer_disconnects/etcd-N`` gauges); None
    if its timeline has none (a run made before the engine recorded them)."""
    path = where / "timeline.json"
    if not path.exists():
        return None
    last: dict[str, float] = {}
    for gauge in json.loads(path.read_text())["gauges"]:
        if gauge["name"].startswith("peer_disconnects/"):
            last[gauge["name"]] = gauge["value"]
    return sum(last.values()) if last else None


def read_run(cell: Cell, out: Path) -> Run | None:
    where = cell.directory(out)
    path = where / "report.json"
    report = finished(where)
    if report is None:
        return None
    if "figures" not in report:
        raise RuntimeError(f"{path} has no figures: it was written by an older etcdlab")
    network = report["settings"].get("network")
    dropped = None
    if isinstance(network, dict):
        dropped = (int(network["packets"]), int(network["dropped"]))
    led = None
    for fault in report["faults"]:
        leader = re.search(r"raft leader (etcd-\d+)", fault["detail"])
        if leader is not None:
            led = leader[1] in fault["target"].split(",")
    load = None
    meta = where / "bench.json"
    if meta.exists():
        load = json.loads(meta.read_text())["loadavg_before"][0]
    figures = flatten(report["figures"])
    for index, heal in enumerate(report.get("member_recovery", [])):
        figures.update(flatten(recovery_by_role(heal), f"recovery_seconds.heal-{index}."))
    disconnects = peer_disconnects(where)
    if disconnects is not None:
        figures["peer_disconnects"] = disconnects
    return Run(
        cell,
        figures,
        {c["id"]: c["verdict"] for c in report["claims"]},
        dropped,
        load,
        led,
        made_with(where),
    )


def show(value: float, figure: str) -> str:
    if math.isinf(value):
        return "never"
    if figure.startswith("latency.") and not figure.endswith(".requests"):
        return f"{value * 1000:.0f}ms" if value >= 0.01 else f"{value * 1000:.1f}ms"
    if "seconds" in figure:
        return f"{value:.1f}s"
    return f"{value:g}"


def cell_text(values: list[float], figure: str) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return show(middle, figure)
    return f"{show(middle, figure)} [{show(min(values), figure)}-{show(max(values), figure)}]"


def ratio_text(figure: str, kernel: float, proxy: float) -> str:
    mark = "" if agrees(figure, kernel, proxy) else " ✗"
    if math.isinf(kernel) or math.isinf(proxy):
        return ("=" if kernel == proxy else "differs") + mark
    if kernel == 0:
        return ("=" if proxy == 0 else "n/a") + mark
    return f"{proxy / kernel:.2f}x{mark}"


def most_common(verdicts: list[str]) -> str:
    return collections.Counter(verdicts).most_common(1)[0][0]


def compare(loss: float, runs: dict[str, list[Run]], target: str = "0") -> Iterator[str]:
    """Lines of the side-by-side table for one loss level (markdown)."""
    name = scenario_for(loss, target).name
    seeds = {side: sorted(r.cell.seed for r in mine) for side, mine in runs.items()}
    yield f"### {name}"
    yield ""
    yield "seeds: " + ", ".join(f"{side} {seeds[side]}" for side in runs)
    for run in runs.get("kernel", []):
        if run.dropped is not None and run.dropped[0]:
            seen, dropped = run.dropped
            yield (
                f"kernel seed {run.cell.seed}: nftables dropped {dropped} of {seen} packets on "
                f"the faulted member's connections ({dropped / seen:.1%})"
            )
    for side, mine in runs.items():
        led = [r.cell.seed for r in mine if r.led]
        unknown = [r.cell.seed for r in mine if r.led is None]
        yield (
            f"{side}: the faulted member led raft when the fault began in seeds {led}"
            + (f" (not recorded: {unknown})" if unknown else "")
        )
    made = sorted({" ".join(r.made or ["(not recorded)"]) for mine in runs.values() for r in mine})
    yield "etcdlab run " + " / ".join(made) + (" (runs differ!)" if len(made) > 1 else "")
    loads = [r.load for mine in runs.values() for r in mine if r.load is not None]
    if loads:
        yield f"load average (1 min) before the runs: {min(loads):.1f}-{max(loads):.1f}"
    yield ""
    if set(runs) != set(NETWORKS):
        yield f"only {', '.join(runs)} ran: nothing to compare"
        return
    yield "| figure | kernel | proxy | proxy/kernel |"
    yield "| --- | --- | --- | --- |"
    figures = sorted(set.intersection(*(set(r.figures) for mine in runs.values() for r in mine)))
    differ = 0
    for figure in figures:
        values = {side: [r.figures[figure] for r in mine] for side, mine in runs.items()}
        kernel_median = statistics.median(values["kernel"])
        proxy_median = statistics.median(values["proxy"])
        ratio = ratio_text(figure, kernel_median, proxy_median)
        differ += ratio.endswith("✗")
        yield (
            f"| {figure} | {cell_text(values['kernel'], figure)} | "
            f"{cell_text(values['proxy'], figure)} | {ratio} |"
        )
    yield ""
    yield f"{differ} of {len(figures)} figures outside the target."
    claims = sorted(set.intersection(*(set(r.verdicts) for mine in runs.values() for r in mine)))
    verdicts = {
        side: {c: most_common([r.verdicts[c] for r in mine]) for c in claims}
        for side, mine in runs.items()
    }
    other = [c for c in claims if verdicts["kernel"][c] != verdicts["proxy"][c]]
    yield f"Verdicts: {len(claims) - len(other)} of {len(claims)} claims the same."
    for claim in other:
        yield f"- {claim}: kernel {verdicts['kernel'][claim]}, proxy {verdicts['proxy'][claim]}"
    yield ""


def cells(
    losses: Sequence[float], networks: Sequence[str], seeds: Sequence[int], target: str = "0"
) -> list[Cell]:
    """Seed by seed, so a partial matrix has both sides of each seed."""
    return [Cell(loss, n, seed, target) for seed in seeds for loss in losses for n in networks]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m etcdlab.bench.scenario_fidelity",
        description=__doc__.split("\n\n", 1)[1].split("\n\nexamples:")[0],
        epilog="examples:" + __doc__.split("\n\nexamples:", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--loss",
        type=float,
        nargs="+",
        default=[0.3, 0.1],
        help="loss levels, each in (0, 1), on packet-loss-30's timeline (default 0.3 0.1)",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)"
    )
    parser.add_argument(
        "--networks",
        nargs="+",
        choices=NETWORKS,
        default=list(NETWORKS),
        help="sides to run (default both)",
    )
    parser.add_argument(
        "--target",
        default="0",
        help="the faulted member: an index, or leader / follower as the fault begins "
        "(default 0, packet-loss-30's; raft elects its leader whatever the seed, and a "
        "faulted leader slows every write: pin the role to compare like with like)",
    )
    parser.add_argument(
        "--time-scale",
        type=time_scale,
        default=1.0,
        help="time scale of every run (default 1: real timings, the reference)",
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        help="seconds after the warm-up, unscaled (default: the scenario's, 300)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-scenario-fidelity"),
        help="where the runs are kept (default bench-scenario-fidelity)",
    )
    parser.add_argument("--rerun", action="store_true", help="run cells whose report exists")
    parser.add_argument(
        "--compare-only", action="store_true", help="run nothing; compare the runs in --out"
    )
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    if not all(0 < loss < 1 for loss in args.loss):
        parser.error("--loss: each level must be in (0, 1)")
    networks = list(dict.fromkeys(args.networks))
    reason = kernel.unavailable()
    if "kernel" in networks and reason and not args.compare_only:
        print(f"kernel side skipped: --network kernel {reason}", file=sys.stderr)
        networks.remove("kernel")
    stop_on_sigterm()
    try:
        scenario_for(args.loss[0], args.target)
    except ValueError as error:
        parser.error(f"--target: {error}")
    todo = cells(args.loss, networks, list(dict.fromkeys(args.seeds)), args.target)
    wanted = timing(args.time_scale, args.duration)
    try:
        for cell in todo:
            if args.compare_only:
                continue
            where = cell.directory(args.out)
            if finished(where) is not None and not args.rerun:
                made = made_with(where)
                if made == wanted:
                    print(f"reusing {where}", flush=True)
                    continue
                # A run at other timings is no cell of this matrix.
                print(f"{where} was run with {' '.join(made or ['unrecorded timings'])}")
            print(f"running {where} (load {os.getloadavg()[0]:.1f}) ...", flush=True)
            run_cell(cell, args.out, args.time_scale, args.duration)
    except KeyboardInterrupt:
        print("stopped; the runs so far are kept", file=sys.stderr)
        return 130
    except RuntimeError as error:
        print(f"scenario_fidelity: error: {error}", file=sys.stderr)
        return 1
    lines: list[str] = []
    for loss in args.loss:
        runs: dict[str, list[Run]] = {}
        for cell in todo:
            if cell.loss == loss and (run := read_run(cell, args.out)) is not None:
                runs.setdefault(cell.network, []).append(run)
        if runs:
            lines += compare(loss, runs, args.target)
    print("\n".join(lines))
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
