"""The ``etcdlab`` command line: one entry point, a subcommand per job.

Each subcommand lives in its own module with ``register(subparsers)``; this
module only wires them together and turns expected failures into one-line
errors with a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import version

from etcdlab.cli import bench as bench_cli
from etcdlab.cli import cluster as cluster_cli
from etcdlab.cli import election as election_cli
from etcdlab.cli import proxy as proxy_cli
from etcdlab.cli import run as run_cli
from etcdlab.cli import sweep as sweep_cli
from etcdlab.client.errors import EtcdError
from etcdlab.common import exits
from etcdlab.common.stopping import Stopped

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

REGISTRARS: tuple[Registrar, ...] = (
    cluster_cli.register,
    proxy_cli.register,
    election_cli.register,
    run_cli.register,
    bench_cli.register,
    sweep_cli.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etcdlab",
        description=(
            "etcdlab: run real etcd under network faults and watch what happens to "
            "etcd clients, leader election and a Kubernetes-style control plane."
        ),
        epilog="Run 'etcdlab COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"etcdlab {version('etcdlab')}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in REGISTRARS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return exits.USAGE
    try:
        return handler(args)
    except Stopped as stop:
        print(f"etcdlab {args.command}: {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        return 130
    except (ValueError, RuntimeError, OSError, EtcdError) as error:
        print(f"etcdlab {args.command}: error: {error}", file=sys.stderr)
        return exits.USAGE if isinstance(error, ValueError) else exits.FAILED
