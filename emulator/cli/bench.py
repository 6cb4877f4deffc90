"""``etcdlab bench``: benchmarks against a real local cluster (``bench retries``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from etcdlab.bench.retries import run_bench
from etcdlab.bench.retry_config import FAULTS, BenchConfig
from etcdlab.bench.retry_report import table, write_outputs
from etcdlab.bench.retry_strategies import STRATEGIES
from etcdlab.common import stopping
from etcdlab.common.argtypes import positive_float, positive_int, time_scale


def _names(known: Sequence[str], what: str, singular: str) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(part.strip() for part in text.split(",") if part.strip())
        if not names:
            raise argparse.ArgumentTypeError(f"no {what} given")
        for name in names:
            if name not in known:
                raise argparse.ArgumentTypeError(
                    f"unknown {singular} {name!r} (known: {', '.join(known)})"
                )
        return names

    return parse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="benchmarks against a real local cluster",
        description="Benchmarks that run against a real local etcd cluster.",
    )
    kinds = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    strategies = "; ".join(f"{s.name}: {s.description}" for s in STRATEGIES.values())
    faults = "; ".join(f"{name}: {text}" for name, text in FAULTS.items())
    retries = kinds.add_parser(
        "retries",
        help="compare client retry strategies under the same seeded faults",
        description=(
            "Start a local etcd cluster behind the fault proxy and, for each fault and "
            "each strategy, run the same open-loop workload (seeded Poisson arrivals over "
            "many clients; reads and compare-guarded writes) for --duration: the fault "
            "starts after a third of it and lasts a third (outages: 2 s). Prints a "
            "table and writes bench.json and bench.svg to --out. "
            f"Strategies: {strategies}. Faults: {faults}. When the outage starts, every "
            "client also begins one increment of a shared counter (read, then a "
            "compare-guarded write, retried until the deadline): the 'herd', AWS's "
            "backoff-and-jitter experiment."
        ),
        epilog=(
            "Columns: goodput (ok ops/s), ok%, p50/p99 of successful ops, amp (RPCs per "
            "success), recov (s after the fault until 2 s x scale pass without a failure), "
            "rpc x (RPCs per arriving op during the fault over before), disp (variance/mean "
            "of RPCs per 50 ms x scale: 1 = independent, more = bunched), storm (rpc x "
            "> 1.2). Example: etcdlab bench retries --faults outage --strategies "
            "exponential,full-jitter --duration 20"
        ),
    )
    retries.add_argument(
        "--time-scale",
        type=time_scale,
        default="0.25",
        help="multiply every duration (run, timeouts, backoff, etcd timings) (default 0.25)",
    )
    retries.add_argument(
        "--seed", type=int, default=0, help="seed of everything random (default 0)"
    )
    retries.add_argument(
        "--duration",
        type=positive_float,
        default=24.0,
        help="seconds per run before scaling (default 24: 6 s of wall time at scale 0.25)",
    )
    retries.add_argument(
        "--rate",
        type=positive_float,
        default=100.0,
        help="operations per wall second (default 100)",
    )
    retries.add_argument("--clients", type=positive_int, default=16, help="clients (default 16)")
    retries.add_argument(
        "--strategies",
        type=_names(tuple(STRATEGIES), "strategies", "strategy"),
        default=tuple(STRATEGIES),
        help=f"comma-separated subset of: {', '.join(STRATEGIES)} (default all)",
    )
    retries.add_argument(
        "--faults",
        type=_names(tuple(FAULTS), "faults", "fault"),
        default=tuple(FAULTS),
        help=f"comma-separated subset of: {', '.join(FAULTS)} (default all)",
    )
    retries.add_argument(
        "--out",
        type=Path,
        default=Path("bench-retries"),
        help="output directory (default bench-retries)",
    )
    retries.set_defaults(handler=run_retries)


def run_retries(args: argparse.Namespace) -> int:
    cfg = BenchConfig(
        time_scale=args.time_scale,
        seed=args.seed,
        duration=args.duration,
        rate=args.rate,
        clients=args.clients,
        strategies=args.strategies,
        faults=args.faults,
    )
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} exists and is not a directory")

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    results = stopping.run(run_bench(cfg, progress))
    print(table(results))
    write_outputs(cfg, results, args.out)
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.svg'}")
    return 0
