"""Throughput through the proxy against direct and socat, in the same run.

Starts one real etcd member, the proxy (``etcdlab proxy``, a separate process,
faults off, HTTP/2 parsing on), the proxy as a raw TCP pump (``--raw``) and
``socat`` (fork, nodelay) when installed, then drives back-to-back
linearizable Range or Put from C clients, one gRPC channel (one TCP
connection) each. Modes are interleaved round by round so
machine noise hits them alike; the median of the rounds is reported, with
each path's ratio to direct.

    .venv/bin/python -m bench.proxy_overhead --seconds 3 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from bench.proxy_process import proxy_process
from emulator.cluster import LocalCluster, free_tcp_port
from protos import rpc_pb2, rpc_pb2_grpc

# grpc shares one connection among channels with equal arguments unless each
# channel keeps its own subchannel pool: one TCP connection per client.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


async def load(target: str, clients: int, op: str, seconds: float) -> float:
    """Calls per second of ``clients`` channels doing ``op`` back to back."""
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
        return sum(counts) / (time.perf_counter() - started)
    finally:
        for channel in channels:
            await channel.close()


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """socat prints nothing when ready: poll until its port accepts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"socat exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"socat did not listen on {port} within {timeout} s") from None
            time.sleep(0.02)


@contextmanager
def socat_process(upstream: str) -> Iterator[str | None]:
    if shutil.which("socat") is None:
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
        wait_listening(port, process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--ops", nargs="+", default=["range", "put"])
    args = parser.parse_args()
    with LocalCluster(1) as cluster:
        direct = cluster.endpoints[0]
        with (
            proxy_process(direct) as proxied,
            proxy_process(direct, "--raw") as raw,
            socat_process(direct) as socat,
        ):
            # proxy-raw: the same pump without HTTP/2 tracking, to show its cost.
            targets = {"direct": direct, "proxy": proxied.listen, "proxy-raw": raw.listen}
            if socat is not None:
                targets["socat"] = socat
            for op in args.ops:
                for clients in args.clients:
                    rates: dict[str, list[float]] = {name: [] for name in targets}
                    for _ in range(args.rounds):
                        for name, target in targets.items():
                            rates[name].append(asyncio.run(load(target, clients, op, args.seconds)))
                    medians = {name: statistics.median(r) for name, r in rates.items()}
                    line = " ".join(
                        f"{name}={rate:.0f}/s ({rate / medians['direct']:.2f}x)"
                        for name, rate in medians.items()
                    )
                    print(f"{op} c{clients}: {line}", flush=True)


if __name__ == "__main__":
    main()
