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
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any

import grpc

from bench.proxy_process import proxy_process
from emulator.cluster import LocalCluster, ServerFlags
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


KEEPALIVE, KEEPALIVE_TIMEOUT = 2.0, 1.0


async def keepalive_detection(target: str, trials: int, arm: Any, disarm: Any) -> dict[str, float]:
    """Seconds from "everything is dropped" until keepalive fails an idle Watch."""
    options = [
        *OWN_CONNECTION,
        ("grpc.keepalive_time_ms", int(KEEPALIVE * 1000)),
        ("grpc.keepalive_timeout_ms", int(KEEPALIVE_TIMEOUT * 1000)),
        ("grpc.http2.ping_timeout_ms", int(KEEPALIVE_TIMEOUT * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    times = []
    for _ in range(trials):
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            watch = rpc_pb2_grpc.WatchStub(channel).Watch()
            create = rpc_pb2.WatchCreateRequest(key=b"fidelity")
            await watch.write(rpc_pb2.WatchRequest(create_request=create))
            await watch.read()
            arm()
            started = time.perf_counter()
            try:
                await watch.read()
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
            else:
                raise RuntimeError("the watch got an answer through a partition")
            times.append(time.perf_counter() - started)
            disarm()
    times.sort()
    return {"min": times[0], "median": statistics.median(times), "max": times[-1]}


def nft_drop(port: int, loss: float) -> None:
    percent = round(loss * 100)
    # numgen's range is 0..99: "< 100" is rejected, so total loss is a plain drop.
    odds = "" if percent >= 100 else f"numgen random mod 100 < {percent} "
    rules = f"""
table inet etcdlab {{
  chain in {{
    type filter hook input priority 0; policy accept;
    tcp dport {port} {odds}drop
    tcp sport {port} {odds}drop
  }}
}}
"""
    subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True)


def nft_clear() -> None:
    subprocess.run(["nft", "delete", "table", "inet", "etcdlab"], check=True)


# etcd must tolerate the clients' 2 s keepalive pings (default minimum 5 s).
SERVER_FLAGS = ServerFlags(grpc_keepalive_min_time_s=1.0)


def run_kernel_inner(
    loss: float, clients: int, seconds: float, keepalive_trials: int
) -> dict[str, float]:
    """Runs inside the namespace: etcd, nftables loss, workload."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with LocalCluster(1, flags=SERVER_FLAGS) as cluster:
        target = cluster.endpoints[0]
        port = int(target.rsplit(":", 1)[1])
        if keepalive_trials:
            return asyncio.run(
                keepalive_detection(
                    target, keepalive_trials, lambda: nft_drop(port, 1.0), nft_clear
                )
            )
        return asyncio.run(workload(target, clients, seconds, lambda: nft_drop(port, loss)))


def run_proxy(
    loss: float, clients: int, seconds: float, keepalive_trials: int = 0
) -> dict[str, float]:
    with (
        LocalCluster(1, flags=SERVER_FLAGS) as cluster,
        proxy_process(cluster.endpoints[0], "--control", "127.0.0.1:0", "--seed", "1") as proxy,
    ):
        toxics = f"http://{proxy.control}/proxies/proxy/toxics"

        def arm() -> None:
            toxic = {"type": "loss", "stream": "both", "attributes": {"probability": loss}}
            if keepalive_trials:  # everything dropped: a partition
                toxic = {"name": "cut", "type": "blackhole", "stream": "both"}
            request = urllib.request.Request(toxics, data=json.dumps(toxic).encode(), method="POST")
            urllib.request.urlopen(request, timeout=10).close()

        def disarm() -> None:
            request = urllib.request.Request(f"{toxics}/cut", method="DELETE")
            urllib.request.urlopen(request, timeout=10).close()

        if keepalive_trials:
            return asyncio.run(keepalive_detection(proxy.listen, keepalive_trials, arm, disarm))
        return asyncio.run(workload(proxy.listen, clients, seconds, arm))


def run_kernel(
    loss: float, clients: int, seconds: float, keepalive_trials: int = 0
) -> dict[str, float] | None:
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
                "--keepalive-trials",
                str(keepalive_trials),
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
    parser.add_argument(
        "--keepalive-trials",
        type=int,
        default=0,
        help="instead: drop everything N times and time keepalive's detection",
    )
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        result = run_kernel_inner(args.loss[0], args.clients, args.seconds, args.keepalive_trials)
        print(json.dumps(result))
        return
    if args.keepalive_trials:
        print(f"keepalive {KEEPALIVE:g}s + timeout {KEEPALIVE_TIMEOUT:g}s, idle Watch:")
        for name, run in (("kernel", run_kernel), ("proxy", run_proxy)):
            stats = run(1.0, 1, 0.0, args.keepalive_trials)
            if stats is not None:
                print(
                    f"{name:6} detection min={stats['min']:.2f}s "
                    f"median={stats['median']:.2f}s max={stats['max']:.2f}s",
                    flush=True,
                )
        return
    for loss in args.loss:
        kernel = run_kernel(loss, args.clients, args.seconds)
        if kernel is not None:
            show("kernel", loss, kernel)
        show("proxy", loss, run_proxy(loss, args.clients, args.seconds))


if __name__ == "__main__":
    main()
