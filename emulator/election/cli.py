"""``etcdlab election``: a leader election on a local cluster, one fault, a verdict."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from typing import Any

from emulator.argtypes import positive_float, positive_int
from emulator.cluster import LocalCluster, ServerFlags
from emulator.election.candidates import (
    Candidate,
    ConnectionFactory,
    Contest,
    contest,
    pinned,
    proxied,
    rotating,
)
from emulator.election.config import LeaderElectionConfig
from proxy.faults import Blackhole, Loss

FAULTS = ("none", "kill", "pause", "blackhole", "loss")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "election",
        help="run client-go leader election under one fault and check for two leaders",
        description=(
            "Start a local 3-member cluster and N client-go style candidates (15 s lease, "
            "10 s renew deadline, 2 s retry, jitter 1.2, times --time-scale), each with its "
            "own client preferring member i mod 3. Once everyone agrees on a leader, inject "
            "one fault on the leader's member or connection, watch for --observe seconds, "
            "and report overlaps (two candidates believing they lead at once), transitions, "
            "time without a leader and the failover. Exit status 1 if leaders overlapped."
        ),
    )
    parser.add_argument(
        "--fault",
        choices=FAULTS,
        default="kill",
        help=(
            "kill/pause: SIGKILL/SIGSTOP the leader's member; blackhole: hold every byte "
            "on the leader's own proxy link; loss: TCP-faithful packet loss on the proxy "
            "links of every candidate preferring the leader's member (default kill)"
        ),
    )
    parser.add_argument(
        "--loss", type=_probability, default=0.3, help="loss probability (default 0.3)"
    )
    parser.add_argument(
        "--clients",
        choices=("rotating", "pinned"),
        default="rotating",
        help=(
            "rotating: each client knows every member and fails over (the apiserver's "
            "way); pinned: each knows only its preferred member, so kill/pause force a "
            "failover (default rotating; blackhole and loss always use proxy links)"
        ),
    )
    parser.add_argument("--candidates", type=positive_int, default=5, help="candidates (default 5)")
    parser.add_argument(
        "--time-scale",
        type=positive_float,
        default=1.0,
        help="multiply every election, client, raft and proxy timing (default 1: real)",
    )
    parser.add_argument(
        "--observe",
        type=positive_float,
        default=None,
        help="seconds to watch after the fault (default: 3 lease durations)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the retry jitter")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line")
    parser.set_defaults(handler=run)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive): {text}")
    return value


def run(args: argparse.Namespace) -> int:
    config = LeaderElectionConfig(identity="-", name=f"etcdlab-{uuid.uuid4().hex[:8]}")
    config = config.scaled(args.time_scale)
    summary = asyncio.run(_contest(args, config))
    report: dict[str, Any] = summary["report"]
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        _print_summary(summary, config)
    return 1 if report["overlaps"] else 0


async def _contest(args: argparse.Namespace, config: LeaderElectionConfig) -> dict[str, Any]:
    connect: ConnectionFactory = pinned if args.clients == "pinned" else rotating
    if args.fault in ("blackhole", "loss"):
        connect = proxied
    observe = args.observe if args.observe is not None else 3 * config.lease_duration
    async with (
        LocalCluster(3, flags=ServerFlags.scaled(args.time_scale)) as cluster,
        contest(
            cluster,
            config,
            time_scale=args.time_scale,
            connect=connect,
            candidates=args.candidates,
            seed=args.seed,
        ) as run,
    ):
        leader = await run.agreed_leader(timeout=3 * config.lease_duration + 10)
        if args.fault != "none":
            run.checker.mark_fault(args.fault)
            _inject(run, leader, args.fault, args.loss)
        await asyncio.sleep(observe)
        report = run.checker.report()
        leader_now = run.leader()
    return {
        "fault": args.fault,
        "time_scale": args.time_scale,
        "observed_seconds": observe,
        "leader_before": leader.identity,
        "leader_before_member": cluster.members[leader.member].name,
        "leader_after": leader_now.identity if leader_now else None,
        "config": {
            "lease_duration": config.lease_duration,
            "renew_deadline": config.renew_deadline,
            "retry_period": config.retry_period,
            "jitter_factor": config.jitter_factor,
        },
        "report": report.as_dict(),
    }


def _inject(run: Contest, leader: Candidate, fault: str, loss: float) -> None:
    if fault == "kill":
        run.cluster.kill(leader.member)
    elif fault == "pause":
        run.cluster.pause(leader.member)
    elif fault == "blackhole" and leader.connection.link is not None:
        leader.connection.link.add(Blackhole())
    elif fault == "loss":
        for candidate in run.candidates:
            if candidate.member == leader.member and candidate.connection.link is not None:
                candidate.connection.link.add(Loss(probability=loss))


def _print_summary(summary: dict[str, Any], config: LeaderElectionConfig) -> None:
    report = summary["report"]
    print(
        f"lease {config.lease_duration:g}s, renew deadline {config.renew_deadline:g}s, "
        f"retry {config.retry_period:g}s (time scale {summary['time_scale']:g})"
    )
    print(
        f"leader before the fault: {summary['leader_before']} ({summary['leader_before_member']})"
    )
    print(f"fault: {summary['fault']}; watched {summary['observed_seconds']:g}s")
    print(f"leader now: {summary['leader_after'] or 'none'}")
    print(
        f"transitions {report['transitions']}, without a leader "
        f"{report['leaderless_seconds']:.2f}s, overlaps {len(report['overlaps'])}"
    )
    for failover in report["failovers"]:
        if failover["new_leader"] is None:
            kept = failover["old_stepped_down"] is None
            print(
                "failover: none, " + ("the leader kept its lease" if kept else "no successor yet")
            )
            continue
        print(
            f"failover: {failover['old_leader']} -> {failover['new_leader']}, "
            f"{failover['since_fault']:.2f}s after the fault, "
            f"{failover['since_last_renewal']:.2f}s after the last renewal"
        )
    for overlap in report["overlaps"]:
        print(
            f"OVERLAP: {overlap['first']} and {overlap['second']} both leading "
            f"for {overlap['seconds']:.3f}s"
        )
