"""``etcdlab proxy``: run fault-injecting links in the foreground.

Prints exactly one JSON line on stdout when every link listens, then logs to
stderr until SIGINT/SIGTERM. This module only needs argparse; the ``etcdlab``
command registers it from ``emulator/cli/proxy.py``. The faults' flags come
from the kinds themselves (:func:`etcdlab.proxy.faults.registry.add_flags`).

This is the proxy's edge for time: ``--time-scale`` (or ``time_scale`` in the
config) scales every fault given here or through the control API once, as it
enters a link.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import logging
import signal
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etcdlab.common.argtypes import negative_values, time_scale
from etcdlab.common.timescale import TimeScale
from etcdlab.proxy.control import ControlServer, format_address, parse_address
from etcdlab.proxy.faults import Fault
from etcdlab.proxy.faults.base import parse_duration, spelled
from etcdlab.proxy.faults.registry import add_flags, from_flags, from_table
from etcdlab.proxy.link import (
    MAX_WRITE_DEADLINE,
    MIN_WRITE_DEADLINE,
    Address,
    check_fits,
    write_deadline_ms,
)
from etcdlab.proxy.server import ProxyServer


def address(text: str) -> Address:
    try:
        return parse_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "proxy",
        help="run the fault proxy",
        description=(
            "Proxy TCP connections to an etcd member and inject network faults: "
            "TCP-faithful packet loss (bytes arrive late, as after kernel "
            "retransmission), HTTP/2 frame loss, latency, and any other kind with "
            "--fault. Durations need a unit (50ms, 1.5s). Prints one JSON line "
            '({"listen": ..., "links": {...}, "control": ...}) when ready, then '
            "logs to stderr. Faults can be changed at runtime over the control API "
            "(Toxiproxy-shaped HTTP/JSON, see docs/PROXY.md)."
        ),
        epilog=(
            "example: etcdlab proxy --listen 127.0.0.1:0 --upstream 127.0.0.1:2379 "
            "--loss 0.3 --latency 20ms --seed 1 --control 127.0.0.1:0"
        ),
    )
    negative_values(parser)
    parser.add_argument(
        "--listen",
        type=address,
        metavar="HOST:PORT",
        help="where to listen (port 0: the OS picks one; the ready line says which)",
    )
    parser.add_argument(
        "--upstream", type=address, metavar="HOST:PORT", help="the etcd member to forward to"
    )
    parser.add_argument(
        "--name",
        default="proxy",
        help="the link's name in the control API; seeds its randomness (default proxy)",
    )
    add_flags(parser)
    parser.add_argument(
        "--raw",
        action="store_true",
        help="forward raw TCP without parsing HTTP/2 (for etcd peer links, which speak "
        "HTTP/1.1); frame faults and --method need HTTP/2",
    )
    parser.add_argument(
        "--write-deadline",
        metavar="DURATION",
        help="the upstream server's own deadline on each of its writes, e.g. 5s for an "
        "etcd peer link (rafthttp's ConnWriteTimeout). Under a loss fault with send_buffer "
        "a server write blocks while the modelled send buffer is full; one blocked this "
        "long fails, as etcd's does under the kernel's loss: the server's side of the "
        "connection is reset and the client gets what the loss still carries, then EOF. "
        "The server's timer, so --time-scale leaves it alone. Default: none (a blocked "
        "write waits for the buffer to drain)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the faults' random draws, with each link's name (default 0)",
    )
    parser.add_argument(
        "--time-scale",
        type=time_scale,
        default=TimeScale(1.0),
        metavar="FACTOR",
        help="multiply every duration of every fault, given here or over the control "
        "API (default 1; 0.1 = 10x faster)",
    )
    parser.add_argument(
        "--control",
        type=address,
        metavar="HOST:PORT",
        help="serve the control API here (port 0: the OS picks one; the ready line says "
        "which); none without it",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a TOML file with several links and their faults, instead of --listen and "
        "--upstream (format: docs/PROXY.md)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING"),
        help="what goes to stderr (default INFO: links listening or disabled, "
        "connections that failed)",
    )
    parser.set_defaults(handler=run)


@dataclass
class LinkSpec:
    name: str
    upstream: Address
    listen: Address
    http2: bool = True
    faults: list[Fault] = field(default_factory=list)
    write_deadline: float | None = None  # seconds


@dataclass
class Spec:
    seed: int
    time_scale: TimeScale
    control: Address | None
    links: list[LinkSpec]


def spec_from_args(args: argparse.Namespace) -> Spec:
    if args.config is not None:
        if args.listen or args.upstream:
            raise ValueError("--config and --listen/--upstream are exclusive")
        if args.write_deadline is not None:
            raise ValueError(
                "--write-deadline: not with --config; give each link its own "
                "write_deadline in the file"
            )
        try:
            text = args.config.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise ValueError(f"--config: cannot read {args.config}: {reason}") from None
        return spec_from_toml(text, args)
    if args.listen is None or args.upstream is None:
        raise ValueError("--listen and --upstream are required (or --config)")
    if args.method is not None and args.raw:
        raise ValueError("--method needs HTTP/2: it cannot go with --raw")
    link = LinkSpec(
        args.name,
        args.upstream,
        args.listen,
        not args.raw,
        from_flags(args),
        _write_deadline(args.write_deadline),
    )
    for fault in link.faults:
        check_fits(fault, link.name, http2=link.http2)
    return Spec(args.seed, args.time_scale, args.control, [link])


def _write_deadline(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        raise ValueError(f"--write-deadline: {error}") from None
    if not MIN_WRITE_DEADLINE <= seconds <= MAX_WRITE_DEADLINE:
        raise ValueError(f"--write-deadline: must be between 1ms and 1440m (a day), not {text!r}")
    return seconds


# The keys a config file may have, at the top and in each [[links]] table.
_TOP_KEYS = ("seed", "time_scale", "control", "links")
_LINK_KEYS = ("name", "upstream", "listen", "http2", "write_deadline", "faults")


def spec_from_toml(text: str, args: argparse.Namespace) -> Spec:
    """The links of a ``--config`` file, checked whole before any link listens:
    ValueError ``config: <path>: <problem>`` naming the key (``links[1].http2``)."""
    try:
        config: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"config: not valid TOML: {error}") from None
    _known(config, _TOP_KEYS, "")
    seed = config.get("seed", args.seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"config: seed: must be a whole number, not {spelled(seed)}")
    scale = config.get("time_scale", args.time_scale)
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise ValueError(f"config: time_scale: must be a number, not {spelled(scale)}")
    try:
        scale = TimeScale(scale, "time_scale:")
    except ValueError as error:
        raise ValueError(f"config: {error}") from None
    control = config.get("control")
    tables = config.get("links", [])
    if not isinstance(tables, list):
        raise ValueError("config: links: must be an array of tables: write [[links]]")
    if not tables:
        raise ValueError("config: links: missing: at least one [[links]] table")
    links: list[LinkSpec] = []
    for index, entry in enumerate(tables):
        where = f"links[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"config: {where}: must be a table: write [[links]]")
        link = _link(entry, where)
        if link.name in {other.name for other in links}:
            raise ValueError(
                f"config: {where}.name: {spelled(link.name)} names an earlier link too"
            )
        links.append(link)
    return Spec(
        seed,
        scale,
        _address_at("control", control) if control is not None else args.control,
        links,
    )


def _link(entry: dict[str, Any], where: str) -> LinkSpec:
    _known(entry, _LINK_KEYS, f"{where}.")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"config: {where}.name: must be a non-empty string, not {spelled(name)}")
    if "upstream" not in entry:
        raise ValueError(f"config: {where}.upstream: missing (HOST:PORT of the etcd member)")
    http2 = entry.get("http2", True)
    if not isinstance(http2, bool):
        raise ValueError(f"config: {where}.http2: must be true or false, not {spelled(http2)}")
    try:
        deadline = write_deadline_ms(entry.get("write_deadline"))
    except ValueError as error:
        raise ValueError(f"config: {where}.write_deadline: {error}") from None
    tables = entry.get("faults", [])
    if not isinstance(tables, list):
        raise ValueError(f"config: {where}.faults: must be an array of tables: [[links.faults]]")
    faults = []
    for index, table in enumerate(tables):
        path = f"{where}.faults[{index}]"
        if not isinstance(table, dict):
            raise ValueError(f"config: {path}: must be a table: write [[links.faults]]")
        try:
            fault = from_table(table)
            check_fits(fault, name, http2=http2)
        except ValueError as error:
            raise ValueError(f"config: {path}: {error}") from None
        faults.append(fault)
    return LinkSpec(
        name,
        _address_at(f"{where}.upstream", entry["upstream"]),
        _address_at(f"{where}.listen", entry.get("listen", "127.0.0.1:0")),
        http2,
        faults,
        deadline,
    )


def _known(table: dict[str, Any], keys: tuple[str, ...], prefix: str) -> None:
    for key in table:
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(keys)}"
            raise ValueError(f"config: {prefix}{key}: unknown key; {hint}")


def _address_at(path: str, value: Any) -> Address:
    if not isinstance(value, str):
        raise ValueError(f"config: {path}: must be a HOST:PORT string, not {spelled(value)}")
    try:
        return parse_address(value)
    except ValueError as error:
        raise ValueError(f"config: {path}: {error}") from None


async def serve(spec: Spec, ready: Any = print) -> None:
    """Run the links of ``spec`` until cancelled or signalled."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with ProxyServer(seed=spec.seed) as server:
        for entry in spec.links:
            link = await server.add_link(
                entry.name,
                entry.upstream,
                entry.listen,
                http2=entry.http2,
                write_deadline=entry.write_deadline,
            )
            for fault in entry.faults:
                link.add(fault.scaled(spec.time_scale))
        control = None
        if spec.control is not None:
            control = ControlServer(server, spec.control, scale=spec.time_scale)
            await control.start()
        try:
            addresses = {name: format_address(link.address) for name, link in server.links.items()}
            ready(
                json.dumps(
                    {
                        "listen": addresses[spec.links[0].name],
                        "links": addresses,
                        "control": format_address(control.address) if control else None,
                    }
                ),
                flush=True,
            )
            await stop.wait()
        finally:
            if control is not None:
                await control.close()


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(spec))
    else:
        uvloop.run(serve(spec))
    return 0
