"""Throughput through the proxy against direct, socat and Toxiproxy, in the same run.

Starts one real etcd member, the proxy (``etcdlab proxy``, a separate process,
faults off, HTTP/2 parsing on), the proxy as a raw TCP pump (``--raw``),
``socat`` (fork, nodelay) when installed and Toxiproxy's server when its
binary is there (``make toxiproxy``; ``--toxiproxy PATH`` or
``$TOXIPROXY_SERVER``), then drives back-to-back linearizable Range or Put
from C clients, one gRPC channel (one TCP connection) each. Modes are
interleaved round by round, each round starting one path later, so machine
noise hits them alike; the median of the rounds is reported, with each
path's ratio to direct. A second line per
load gives the CPU time (user + system, microseconds per call, from
``/proc/PID/stat``) of the client (this process), etcd and the proxy, so the
cost of the extra hop can be seen where it lands. The load average is
printed before and after: the machine may be shared.

    .venv/bin/python -m etcdlab.bench.proxy_overhead --seconds 3 --rounds 3

``--base PYTHON`` adds the path ``proxy-base``: the proxy (HTTP/2 following
on) of another checkout, run by that checkout's interpreter, interleaved with
the others, so a change to the proxy is measured within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from etcdlab.bench.proxy_process import proxy_process
from etcdlab.cluster.local import LocalCluster, free_tcp_port
from etcdlab.protos import rpc_pb2, rpc_pb2_grpc

# grpc shares one connection among channels with equal arguments unless each
# channel keeps its own subchannel pool: one TCP connection per client.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
PATHS = ("proxy", "proxy-raw", "socat", "toxiproxy")
# Where `make toxiproxy` installs Toxiproxy's server.
TOXIPROXY_DEFAULT = Path(__file__).resolve().parent.parent / ".build" / "toxiproxy" / "server"


async def load(target: str, clients: int, op: str, seconds: float) -> tuple[int, float]:
    """Calls made by ``clients`` channels doing ``op`` back to back, and the seconds taken."""
    channels = [grpc.aio.insecure_channel(target, options=OWN_CONNECTION) for _ in range(clients)]
    try:
        stubs = [rpc_pb2_grpc.KVStub(channel) for channel in channels]
        for stub in stubs:
            await stub.Put(rpc_pb2.PutRequest(key=b"bench", value=b"v" * 64))
        deadline = time.perf_counter() + seconds
        counts = [0] * clients

        async def worker(index: int) -> None:
            stub = stubs[index]
            while time.perf_counter() < deadline:
                if op == "range":
                    await stub.Range(rpc_pb2.RangeRequest(key=b"bench"))
                else:
                    await stub.Put(rpc_pb2.PutRequest(key=b"bench", value=b"v" * 64))
                counts[index] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        return sum(counts), time.perf_counter() - started
    finally:
        for channel in channels:
            await channel.close()


def wait_listening(
    port: int, process: subprocess.Popen[bytes], name: str, timeout: float = 10.0
) -> None:
    """socat and Toxiproxy print nothing we can wait for: poll until the port accepts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not listen on {port} within {timeout} s") from None
            time.sleep(0.02)


@contextmanager
def socat_process(upstream: str) -> Iterator[str | None]:
    if shutil.which("socat") is None:
        print("socat: skipped, not installed (apt-get install socat)", file=sys.stderr)
        yield None
        return
    port = free_tcp_port()
    process = subprocess.Popen(
        [
            "socat",
            f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,nodelay",
            f"TCP:{upstream},nodelay",
        ]
    )
    try:
        wait_listening(port, process, "socat")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass(frozen=True)
class Toxiproxy:
    listen: str
    pid: int


@contextmanager
def toxiproxy_process(upstream: str, binary: Path) -> Iterator[Toxiproxy | None]:
    """Toxiproxy's server with one proxy to ``upstream`` and no toxics."""
    if not binary.is_file():
        print(f"toxiproxy: skipped, no server at {binary} (make toxiproxy)", file=sys.stderr)
        yield None
        return
    api, port = free_tcp_port(), free_tcp_port()
    with tempfile.TemporaryDirectory(prefix="etcdlab-toxiproxy-") as tmp:
        config = Path(tmp) / "proxies.json"
        proxy = {"name": "etcd", "listen": f"127.0.0.1:{port}", "upstream": upstream}
        config.write_text(json.dumps([proxy]))
        process = subprocess.Popen(
            [str(binary), "-host", "127.0.0.1", "-port", str(api), "-config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(port, process, "toxiproxy")
            yield Toxiproxy(f"127.0.0.1:{port}", process.pid)
        finally:
            process.terminate()
            process.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    """What one path (direct, proxy, ...) did over all rounds of one load."""

    rates: list[float] = field(default_factory=list)
    calls: int = 0
    cpu: dict[str, float] = field(default_factory=dict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--ops", nargs="+", default=["range", "put"])
    parser.add_argument(
        "--toxiproxy",
        type=Path,
        default=Path(os.environ.get("TOXIPROXY_SERVER", TOXIPROXY_DEFAULT)),
        help="Toxiproxy's server binary (default $TOXIPROXY_SERVER, else make toxiproxy's)",
    )
    parser.add_argument(
        "--paths",
        nargs="+",
        choices=PATHS,
        default=list(PATHS),
        help="the paths measured beside direct (default all)",
    )
    parser.add_argument(
        "--base",
        metavar="PYTHON",
        help="another checkout's interpreter: its proxy is measured as 'proxy-base'",
    )
    args = parser.parse_args()
    if args.base and not os.access(args.base, os.X_OK):
        parser.error(f"--base: {args.base} is not an executable")
    print(f"load average before: {load_average()}", flush=True)
    with LocalCluster(1) as cluster:
        direct = cluster.endpoints[0]
        with (
            proxy_process(direct) as proxied,
            proxy_process(direct, "--raw") as raw,
            proxy_process(direct, python=args.base) if args.base else nullcontext() as base,
            socat_process(direct) if "socat" in args.paths else nullcontext() as socat,
            toxiproxy_process(direct, args.toxiproxy)
            if "toxiproxy" in args.paths
            else nullcontext() as toxiproxy,
        ):
            # proxy-raw: the same pump without HTTP/2 tracking, to show its cost.
            targets = {"direct": direct, "proxy": proxied.listen, "proxy-raw": raw.listen}
            proxy_pids = {"proxy": proxied.pid, "proxy-raw": raw.pid}
            if base is not None:
                targets["proxy-base"] = base.listen
                proxy_pids["proxy-base"] = base.pid
            if socat is not None:
                targets["socat"] = socat
            if toxiproxy is not None:
                targets["toxiproxy"] = toxiproxy.listen
                proxy_pids["toxiproxy"] = toxiproxy.pid
            targets = {
                n: t for n, t in targets.items() if n in ("direct", "proxy-base") or n in args.paths
            }
            # socat forks a process per connection: its CPU is not counted.
            etcd_pid = cluster.pids()[0]
            for op in args.ops:
                for clients in args.clients:
                    measured = {name: Measured() for name in targets}
                    names = list(targets)
                    for round_number in range(args.rounds):
                        # Each round starts one path later: no path always runs
                        # right after the same other one (etcd's state, the caches).
                        turn = round_number % len(names)
                        for name in names[turn:] + names[:turn]:
                            target = targets[name]
                            pids = {"client": os.getpid(), "etcd": etcd_pid}
                            if name in proxy_pids:
                                pids["proxy"] = proxy_pids[name]
                            before = {who: cpu_seconds(pid) for who, pid in pids.items()}
                            calls, took = asyncio.run(load(target, clients, op, args.seconds))
                            m = measured[name]
                            m.rates.append(calls / took)
                            m.calls += calls
                            for who, pid in pids.items():
                                used = cpu_seconds(pid) - before[who]
                                m.cpu[who] = m.cpu.get(who, 0.0) + used
                    report(f"{op} c{clients}", measured)
    print(f"load average after: {load_average()}", flush=True)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(load_name: str, measured: dict[str, Measured]) -> None:
    medians = {name: statistics.median(m.rates) for name, m in measured.items()}
    line = " ".join(
        f"{name}={rate:.0f}/s ({rate / medians['direct']:.2f}x)" for name, rate in medians.items()
    )
    print(f"{load_name}: {line}", flush=True)
    cpu = " | ".join(
        f"{name} "
        + " ".join(f"{who} {seconds / m.calls * 1e6:.0f}" for who, seconds in m.cpu.items())
        for name, m in measured.items()
        if m.calls
    )
    print(f"{load_name} CPU us per call: {cpu}", flush=True)


if __name__ == "__main__":
    main()
