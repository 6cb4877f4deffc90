"""The proxy's TCP-faithful loss against real kernel packet loss, same workload.

Kernel: the workload runs in a fresh network namespace where nftables drops
every packet to or from the etcd client port with probability p (``numgen
random``), both directions. Proxy: the same workload through ``etcdlab proxy``
with ``loss`` p. Workload: C gRPC channels (one TCP connection each) doing
back-to-back linearizable Range for S seconds after a warm-up without loss.
Prints p50/p90/p99/max latency and calls/s per mode and loss level. Needs
root, ``ip`` and ``nft`` for the kernel side; skips it (and says so) otherwise.

    sudo .venv/bin/python -m bench.loss_fidelity --loss 0.1 0.2 0.3 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any

import grpc

from emulator.cluster import LocalCluster
from protos import rpc_pb2, rpc_pb2_grpc

# grpc shares one connection among channels with equal arguments unless each
# channel keeps its own subchannel pool: one TCP connection per client.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


async def workload(target: str, clients: int, seconds: float, arm: Any) -> dict[str, float]:
    channels = [grpc.aio.insecure_channel(target, options=OWN_CONNECTION) for _ in range(clients)]
    try:
        stubs = [rpc_pb2_grpc.KVStub(channel) for channel in channels]
        for stub in stubs:
            await stub.Put(rpc_pb2.PutRequest(key=b"fidelity", value=b"v"))
        arm()
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def worker(stub: rpc_pb2_grpc.KVAsyncStub) -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await stub.Range(rpc_pb2.RangeRequest(key=b"fidelity"), timeout=60)
                latencies.append(time.perf_counter() - started)

        begun = time.perf_counter()
        await asyncio.gather(*(worker(stub) for stub in stubs))
        elapsed = time.perf_counter() - begun
    finally:
        for channel in channels:
            await channel.close()
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return {
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": latencies[-1],
        "rate": len(latencies) / elapsed,
        "slow": sum(latency > 0.1 for latency in latencies) / len(latencies),
        "calls": len(latencies),
    }


def nft_drop(port: int, loss: float) -> None:
    percent = round(loss * 100)
    rules = f"""
table inet etcdlab {{
  chain in {{
    type filter hook input priority 0; policy accept;
    tcp dport {port} numgen random mod 100 < {percent} drop
    tcp sport {port} numgen random mod 100 < {percent} drop
  }}
}}
"""
    subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True)


def run_kernel_inner(loss: float, clients: int, seconds: float) -> dict[str, float]:
    """Runs inside the namespace: etcd, nftables loss, workload."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with LocalCluster(1) as cluster:
        target = cluster.endpoints[0]
        port = int(target.rsplit(":", 1)[1])
        return asyncio.run(workload(target, clients, seconds, lambda: nft_drop(port, loss)))


def run_proxy(loss: float, clients: int, seconds: float) -> dict[str, float]:
    with LocalCluster(1) as cluster:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "emulator",
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                cluster.endpoints[0],
                "--control",
                "127.0.0.1:0",
                "--seed",
                "1",
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            ready = json.loads(process.stdout.readline())

            def arm() -> None:
                toxic = {"type": "loss", "stream": "both", "attributes": {"probability": loss}}
                request = urllib.request.Request(
                    f"http://{ready['control']}/proxies/proxy/toxics",
                    data=json.dumps(toxic).encode(),
                    method="POST",
                )
                urllib.request.urlopen(request, timeout=10).close()

            return asyncio.run(workload(ready["listen"], clients, seconds, arm))
        finally:
            process.terminate()
            process.wait(timeout=10)


def run_kernel(loss: float, clients: int, seconds: float) -> dict[str, float] | None:
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"):
        print("kernel side skipped: needs root, ip and nft", file=sys.stderr)
        return None
    namespace = f"etcdlab-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        done = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                namespace,
                sys.executable,
                "-m",
                "bench.loss_fidelity",
                "--inner",
                "--loss",
                str(loss),
                "--clients",
                str(clients),
                "--seconds",
                str(seconds),
            ],
            check=True,
            capture_output=True,
        )
        result: dict[str, float] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return result
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)


def show(name: str, loss: float, stats: dict[str, float]) -> None:
    print(
        f"{name:6} loss={loss:.2f} p50={stats['p50'] * 1000:7.1f}ms "
        f"p90={stats['p90'] * 1000:7.1f}ms p99={stats['p99'] * 1000:7.1f}ms "
        f"max={stats['max'] * 1000:7.1f}ms >100ms={stats['slow']:6.1%} "
        f"rate={stats['rate']:7.1f}/s n={stats['calls']:.0f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loss", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(run_kernel_inner(args.loss[0], args.clients, args.seconds)))
        return
    for loss in args.loss:
        kernel = run_kernel(loss, args.clients, args.seconds)
        if kernel is not None:
            show("kernel", loss, kernel)
        show("proxy", loss, run_proxy(loss, args.clients, args.seconds))


if __name__ == "__main__":
    main()
