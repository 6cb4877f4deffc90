"""``etcdlab sweep``: loss levels x settings sets, each cell run with several seeds."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from etcdlab.common import exits
from etcdlab.common.argtypes import (
    negative_values,
    non_negative_int,
    positive_float,
    positive_int,
    time_scale,
)
from etcdlab.scenario import fidelity
from etcdlab.sweep import aggregate, page, runner
from etcdlab.sweep import settings as settings_sets
from etcdlab.sweep.grid import (
    LOSSES,
    QUICK,
    TARGETS,
    Grid,
    parse_latency,
    parse_losses,
    parse_names,
)
from etcdlab.sweep.results import RESUME, Results

DEFAULTS = Grid()
MAX_FAILOVER = 60.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    builtin = "; ".join(f"{s.name}: {s.words()}" for s in settings_sets.BUILTINS.values())
    sweep = subparsers.add_parser(
        "sweep",
        help="which settings keep controllers leading and apiservers ready under loss",
        description=(
            "Run a grid of network conditions x settings sets against real etcd and "
            "recommend, per loss level, the settings set with the fewest lease losses whose "
            "failover time stays under --max-failover. A condition is packet loss on every "
            "link of one member (the raft leader or a follower) for the whole run under the "
            "emulated control plane, 0% being the baseline, with --latency on the same "
            "links if given; plus a dead member for the "
            "failover time: three electors each pinned to its own member, as controller-"
            "managers behind stacked apiservers, and the leader's member killed. A settings "
            "set fixes the apiserver's etcd keepalive time and "
            "timeout, its livez and readyz etcd check timeouts and the leader election "
            "LeaseDuration/RenewDeadline/RetryPeriod. Each cell runs --seeds times; each "
            "figure is the mean over the seeds, with its spread. Built-in sets: "
            f"{builtin}."
        ),
        epilog=(
            "Writes to --out: sweep.json (every cell's figures and the recommendations), "
            "sweep.csv (a row per cell), sweep.html (heatmaps, settings x condition, hover "
            f"for the spread) and {RESUME} (a line per finished run: run the same command "
            "again after a stop and only the missing runs run). Figures per cell: lease "
            "losses, livez and readyz failures (per hour), apiserver p99 and error rate of "
            "its etcd requests, time without a leader (per lease, per hour) and the longest "
            "time a lease had no leader; in the dead-member cell, the failover (the kill to "
            "the successor leading; none within the run excludes the set). "
            "Cost: about (duration x time scale + 15 s) per run, over the concurrency; "
            "--quick is a few minutes, the full grid hours (docs/RECOMMENDATIONS.md). "
            "Examples: etcdlab sweep --quick; etcdlab sweep --loss 0,10,30 --settings "
            "client-go,mine --settings-file sets.toml --seeds 5; etcdlab sweep --quick "
            "--latency 50ms --jitter 10ms; etcdlab sweep --scheduler "
            "tcp://10.0.0.5:8786 (each worker needs etcdlab installed). Exit status: 0 every "
            "run done; 1 a run failed twice (the others are kept; run again to retry it); "
            "2 bad options or settings file (nothing started); 130/143 stopped by "
            "SIGINT/SIGTERM (finished runs kept, outputs written for them)."
        ),
    )
    negative_values(sweep)
    sweep.add_argument(
        "--quick",
        action="store_true",
        help=f"a small grid: loss {', '.join(f'{v:g}' for v in QUICK.losses)}%% on the "
        f"leader, {QUICK.seeds} seeds, {QUICK.duration:g} s per run; the options below "
        "still override it",
    )
    sweep.add_argument(
        "--loss",
        metavar="PERCENTS",
        help=f"loss levels on one member, comma-separated (default "
        f"{','.join(str(v) for v in LOSSES)}); 0 is the baseline",
    )
    sweep.add_argument(
        "--target",
        metavar="WHO",
        help=f"the lossy member: {', '.join(TARGETS)} or both (default both)",
    )
    sweep.add_argument(
        "--latency",
        metavar="DURATION",
        help="also delay every byte on the lossy member's links this long each way, at "
        "every loss level (a unit is required: 50ms, 0.2s); 0%% loss becomes this latency "
        "alone on the leader or a follower; the dead member has none (default: no latency)",
    )
    sweep.add_argument(
        "--jitter",
        metavar="DURATION",
        help="each delay drawn uniformly within --latency +/- this (seeded), e.g. 10ms",
    )
    sweep.add_argument(
        "--settings",
        metavar="NAMES",
        help="settings sets to compare, comma-separated (default: the built-ins and every "
        "set of --settings-file)",
    )
    sweep.add_argument(
        "--settings-file",
        type=Path,
        metavar="TOML",
        help="more sets, one [settings.NAME] table each with any of keepalive_time, "
        "keepalive_timeout, livez_timeout, readyz_timeout, lease_duration, renew_deadline, "
        "retry_period (seconds; the rest keep client-go's)",
    )
    sweep.add_argument(
        "--seeds", type=positive_int, help=f"runs per cell (default {DEFAULTS.seeds})"
    )
    sweep.add_argument(
        "--first-seed", type=non_negative_int, default=0, help="the first seed (default 0)"
    )
    sweep.add_argument(
        "--duration",
        type=positive_float,
        help=f"unscaled seconds each run measures after its warm-up (default "
        f"{DEFAULTS.duration:g}); counts are per hour of it",
    )
    sweep.add_argument(
        "--time-scale",
        type=time_scale,
        help=f"multiply every timing by this (default {fidelity.FAITHFUL_SCALE:g}, the "
        "smallest that keeps the figures of a real-timing run)",
    )
    sweep.add_argument(
        "--no-dead-member",
        action="store_true",
        help="skip the dead-member cells (then failover is not measured)",
    )
    sweep.add_argument(
        "--max-failover",
        type=positive_float,
        default=MAX_FAILOVER,
        help=f"seconds a dead member's failover may take in a recommended set "
        f"(default {MAX_FAILOVER:g})",
    )
    sweep.add_argument(
        "--concurrency",
        type=positive_int,
        help="runs at once (default: the CPU count, or the threads of the scheduler's "
        "workers when the sweep starts); lowered by one whenever a run's event loop lags",
    )
    sweep.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="a Dask scheduler whose workers run the cells (each needs etcdlab installed); "
        "default: an in-process local cluster",
    )
    sweep.add_argument("--out", type=Path, default=Path("etcdlab-sweep"), help="output directory")
    sweep.set_defaults(handler=run_sweep)


def build_grid(args: argparse.Namespace) -> Grid:
    """The grid the options ask for; ValueError naming the option otherwise."""
    base = QUICK if args.quick else DEFAULTS
    available = dict(settings_sets.BUILTINS)
    if args.settings_file is not None:
        available.update(settings_sets.load(args.settings_file))
    names = (
        parse_names("--settings", args.settings, list(available))
        if args.settings
        else tuple(available)
    )
    changes: dict[str, Any] = {"settings": tuple(available[n] for n in names)}
    if args.loss is not None:
        changes["losses"] = parse_losses(args.loss)
    if args.target is not None:
        changes["targets"] = parse_names("--target", args.target, TARGETS)
    changes["latency"], changes["jitter"] = parse_latency(args.latency, args.jitter)
    for option in ("seeds", "duration", "time_scale"):
        if getattr(args, option) is not None:
            changes[option] = getattr(args, option)
    changes["first_seed"] = args.first_seed
    changes["dead_member"] = not args.no_dead_member
    return replace(base, **changes)


def run_sweep(args: argparse.Namespace) -> int:
    grid = build_grid(args)
    cells = list(grid.cells())
    results = Results(args.out / RESUME)
    results.check(cells)
    warning = fidelity.warning(grid.time_scale)
    if warning is not None:
        print(f"etcdlab sweep: warning: {warning}", file=sys.stderr)
    # Lines as written: a log (and a test) finds them whole.
    console = Console(stderr=True, soft_wrap=True)
    failed: list[dict[str, str]] = []
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        # Runs end in bursts, tens of seconds apart: the ETA averages over the sweep.
        speed_estimate_period=24 * 3600,
    )
    shown, counted = 0, -1

    def report(progress: runner.Progress) -> None:
        nonlocal shown, counted
        for note in progress.notes[shown:]:
            bar.console.print(note)
        shown = len(progress.notes)
        bar.update(
            task,
            completed=progress.done,
            description=f"runs ({progress.running} running, at most {progress.limit})",
        )
        if not console.is_terminal and progress.done != counted:
            # A log (CI, a file) gets no live bar: a line per finished run instead.
            counted = progress.done
            left = bar.tasks[0].time_remaining
            eta = "" if left is None else f", about {left / 60:.0f} min left"
            console.print(f"{progress.done}/{progress.total} runs done{eta}")

    try:
        with runner.client_for(args.scheduler, args.concurrency or os.cpu_count() or 1) as client:
            concurrency = args.concurrency or runner.worker_threads(client)
            done = sum(results.done(c) for c in cells)
            console.print(
                f"sweep: {len(grid.networks())} conditions x {len(grid.settings)} settings "
                f"sets x {grid.seeds} seeds = {len(cells)} runs of {grid.duration:g} s at "
                f"time scale {grid.time_scale:g}, {concurrency} at once; {done} already "
                f"done ({args.out / RESUME})"
            )
            with bar:
                task = bar.add_task("runs", total=len(cells), completed=done)
                runner.sweep(cells, results, client, concurrency, report, failed)
    finally:
        summary = aggregate.summary(grid, results.records.values(), args.max_failover, failed)
        paths = page.write(summary, args.out)
        _print(summary, paths)
    return exits.FAILED if failed else exits.COMPLETED


def _print(summary: dict[str, Any], paths: tuple[Path, ...]) -> None:
    for rec in summary["recommendations"]:
        choice = rec["settings"] or "none qualifies"
        losses = rec["lease_losses_per_hour"]
        extra = "" if losses is None else f" ({losses:.3g} lease losses per hour)"
        slow = page.latency_words(rec["latency_seconds"], rec["jitter_seconds"])
        print(f"loss {rec['loss_percent']:g}%{slow}: {choice}{extra}")
    runs = summary["runs"]
    print(f"{runs['done']} of {runs['planned']} runs done; outputs: {', '.join(map(str, paths))}")
