"""``etcdlab election``: a leader election on a local cluster, one fault, a verdict."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any

from etcdlab.cluster.local import LocalCluster, ServerFlags
from etcdlab.common import exits, stopping
from etcdlab.common.argtypes import positive_float, positive_int, time_scale
from etcdlab.election.config import LeaderElectionConfig
from etcdlab.election.safety import SafetyChecker
from etcdlab.proxy.driver import LinkFaults
from etcdlab.proxy.faults.blackhole import Blackhole
from etcdlab.proxy.faults.loss import Loss
from etcdlab.scenario.candidates import (
    Campaigner,
    Candidate,
    ConnectionFactory,
    campaign,
    contest,
    pinned,
    proxied,
    rotating,
)

FAULTS = ("none", "kill", "pause", "blackhole", "loss")
# etcd's concurrency.Session default lease TTL, in seconds.
SESSION_TTL = 60

Participant = Candidate | Campaigner


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "election",
        help="run leader election under one fault and check for two leaders",
        description=(
            "Start a local 3-member cluster and N candidates, each with its own client "
            "preferring member i mod 3: client-go style electors (15 s lease, 10 s renew "
            "deadline, 2 s retry, jitter 1.2) or etcd's own concurrency.Election (lease-"
            "bound keys, 60 s session TTL), every timing times --time-scale. Once a leader "
            "is elected, inject one fault on the leader's member or connection, watch for "
            "--observe seconds, and report overlaps (two candidates believing they lead at "
            "once), transitions, time without a leader and the failover. Exit status "
            f"{exits.UNSAFE} if leaders overlapped, {exits.FAILED} if the run failed, "
            "130/143 if stopped by SIGINT/SIGTERM."
        ),
    )
    parser.add_argument(
        "--kind",
        choices=("client-go", "etcd"),
        default="client-go",
        help="client-go lease lock or etcd-native election (default client-go)",
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
        type=time_scale,
        default=1.0,
        help="multiply every election, client, raft and proxy timing (default 1: real)",
    )
    parser.add_argument(
        "--ttl",
        type=positive_int,
        default=None,
        help="etcd kind: session lease TTL in whole seconds (default 60 x time scale, min 1)",
    )
    parser.add_argument(
        "--observe",
        type=positive_float,
        default=None,
        help="seconds to watch after the fault (default: 3 lease durations or TTLs)",
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
    summary = stopping.run(_election(args))
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        _print_summary(summary)
    return exits.UNSAFE if summary["report"]["overlaps"] else exits.COMPLETED


async def _election(args: argparse.Namespace) -> dict[str, Any]:
    scale = args.time_scale
    connect: ConnectionFactory = pinned if args.clients == "pinned" else rotating
    if args.fault in ("blackhole", "loss"):
        connect = proxied
    async with LocalCluster(3, flags=ServerFlags.scaled(scale)) as cluster:
        if args.kind == "etcd":
            ttl = args.ttl or max(1, round(scale.scaled(SESSION_TTL)))
            timings: dict[str, Any] = {"ttl": ttl}
            async with campaign(
                cluster, ttl=ttl, time_scale=scale, connect=connect, candidates=args.candidates
            ) as native:
                leader: Participant = await native.agreed_leader(timeout=3 * ttl + 10)
                observe = args.observe if args.observe is not None else 3 * ttl
                outcome = await _fault_and_watch(
                    args,
                    cluster,
                    native.campaigners,
                    leader,
                    native.checker,
                    native.faults,
                    observe,
                )
                leader_now: Participant | None = native.leader()
        else:
            config = LeaderElectionConfig(identity="-", name=f"etcdlab-{uuid.uuid4().hex[:8]}")
            config = config.scaled(scale)
            timings = {
                "lease_duration": config.lease_duration,
                "renew_deadline": config.renew_deadline,
                "retry_period": config.retry_period,
                "jitter_factor": config.jitter_factor,
            }
            async with contest(
                cluster,
                config,
                time_scale=scale,
                connect=connect,
                candidates=args.candidates,
                seed=args.seed,
            ) as electors:
                leader = await electors.agreed_leader(timeout=3 * config.lease_duration + 10)
                observe = args.observe if args.observe is not None else 3 * config.lease_duration
                outcome = await _fault_and_watch(
                    args,
                    cluster,
                    electors.candidates,
                    leader,
                    electors.checker,
                    electors.faults,
                    observe,
                )
                leader_now = electors.leader()
    return {
        "kind": args.kind,
        "fault": args.fault,
        "time_scale": scale,
        "timings": timings,
        "observed_seconds": observe,
        "leader_before": leader.identity,
        "leader_before_member": cluster.members[leader.member].name,
        "leader_after": leader_now.identity if leader_now else None,
        "report": outcome,
    }


async def _fault_and_watch(
    args: argparse.Namespace,
    cluster: LocalCluster,
    participants: Sequence[Participant],
    leader: Participant,
    checker: SafetyChecker,
    faults: LinkFaults,
    observe: float,
) -> dict[str, Any]:
    if args.fault != "none":
        checker.mark_fault(args.fault)
    if args.fault == "kill":
        cluster.kill(leader.member)
    elif args.fault == "pause":
        cluster.pause(leader.member)
    elif args.fault == "blackhole":
        await faults.add(leader.identity, Blackhole())
    elif args.fault == "loss":
        await faults.apply(
            (participant.identity, Loss(probability=args.loss))
            for participant in participants
            if participant.member == leader.member
        )
    await asyncio.sleep(observe)
    return checker.report().as_dict()


def _print_summary(summary: dict[str, Any]) -> None:
    report = summary["report"]
    timings = ", ".join(f"{name} {value:g}" for name, value in summary["timings"].items())
    print(f"{summary['kind']} election: {timings} (time scale {summary['time_scale']:g})")
    before = f"{summary['leader_before']} ({summary['leader_before_member']})"
    print(f"leader before the fault: {before}")
    print(f"fault: {summary['fault']}; watched {summary['observed_seconds']:g}s")
    print(f"leader now: {summary['leader_after'] or 'none'}")
    print(
        f"transitions {report['transitions']}, without a leader "
        f"{report['leaderless_seconds']:.2f}s, overlaps {len(report['overlaps'])}"
    )
    for failover in report["failovers"]:
        if failover["new_leader"] is None:
            kept = failover["old_stepped_down"] is None
            print("failover: none, " + ("the leader kept it" if kept else "no successor yet"))
            continue
        # Native leaders report no renewals (their lease keep-alives are the client's).
        since_renewal = failover["since_last_renewal"] if summary["kind"] == "client-go" else None
        print(
            f"failover: {failover['old_leader']} -> {failover['new_leader']}, "
            f"{failover['since_fault']:.2f}s after the fault"
            + ("" if since_renewal is None else f", {since_renewal:.2f}s after the last renewal")
        )
    for overlap in report["overlaps"]:
        print(
            f"OVERLAP: {overlap['first']} and {overlap['second']} both leading "
            f"for {overlap['seconds']:.3f}s"
        )
