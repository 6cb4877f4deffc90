"""Many concurrent HTTP/2 connections through one proxy process: memory and lag.

Opens N raw connections through ``etcdlab proxy`` to a real etcd member, each
doing the HTTP/2 handshake (preface + SETTINGS, etcd's SETTINGS back), keeps
them open while a gRPC client measures Range latency through the same proxy,
then closes them all. Reports the proxy's RSS before, while open and after,
and the active connection count the proxy reports when everything is closed.

    .venv/bin/python -m etcdlab.bench.proxy_connections --connections 1000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc

from etcdlab.bench.proxy_process import proxy_process
from etcdlab.cluster.local import LocalCluster
from etcdlab.protos import rpc_pb2, rpc_pb2_grpc
from etcdlab.proxy.h2frames import PREFACE

SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def metric(control: str, prefix: str) -> float:
    with urllib.request.urlopen(f"http://{control}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
    raise RuntimeError(f"no metric {prefix}")


def active_connections(control: str) -> float:
    return metric(control, "etcdlab_proxy_connections_active{")


@dataclass
class Cycle:
    idle: list[float]  # Range latencies, seconds, before the connections open
    loaded: list[float]  # ... while they are open
    loaded_lag: float  # worst sampled loop lag while they are open
    connect_lag: float  # worst sampled loop lag while they open, 100 at a time


async def handshake(host: str, port: int) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(PREFACE + SETTINGS)
    header = await asyncio.wait_for(reader.readexactly(9), 30)
    if header[3] != 0x4:
        raise RuntimeError(f"expected SETTINGS first, got frame type {header[3]}")
    return writer


async def range_latencies(target: str, calls: int) -> list[float]:
    async with grpc.aio.insecure_channel(target) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        await kv.Put(rpc_pb2.PutRequest(key=b"conns", value=b"v"))
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            await kv.Range(rpc_pb2.RangeRequest(key=b"conns"))
            latencies.append(time.perf_counter() - started)
        return latencies


async def sampled_lag(control: str, done: asyncio.Event) -> float:
    """The worst of the proxy's latest loop lag, read every 50 ms until ``done``."""
    worst = 0.0
    while not done.is_set():
        last = await asyncio.to_thread(
            metric, control, 'etcdlab_proxy_loop_lag_seconds{which="last"}'
        )
        worst = max(worst, last)
        await asyncio.sleep(0.05)
    return worst


async def run(listen: str, control: str, count: int) -> Cycle:
    host, port = listen.rsplit(":", 1)
    idle = await range_latencies(listen, 200)
    writers = []
    connecting = asyncio.Event()
    connect_lag = asyncio.create_task(sampled_lag(control, connecting))
    for start in range(0, count, 100):
        batch = [handshake(host, int(port)) for _ in range(min(100, count - start))]
        writers += await asyncio.gather(*batch)
    connecting.set()
    serving = asyncio.Event()
    loaded_lag = asyncio.create_task(sampled_lag(control, serving))
    loaded = await range_latencies(listen, 200)
    serving.set()
    for writer in writers:
        writer.close()
    return Cycle(idle, loaded, await loaded_lag, await connect_lag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=3, help="open/close rounds")
    args = parser.parse_args()
    with (
        LocalCluster(1) as cluster,
        proxy_process(cluster.endpoints[0], "--control", "127.0.0.1:0") as proxy,
    ):
        before = rss_mib(proxy.pid)
        peak_holder: list[float] = []

        async def measured() -> Cycle:
            cycle = await run(proxy.listen, proxy.control, args.connections)
            peak_holder.append(rss_mib(proxy.pid))
            return cycle

        after: list[float] = []
        cycles: list[Cycle] = []
        for _ in range(args.cycles):
            cycles.append(asyncio.run(measured()))
            deadline = time.monotonic() + 30
            while active_connections(proxy.control) > 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            left = active_connections(proxy.control)
            after.append(rss_mib(proxy.pid))
        lag = metric(proxy.control, 'etcdlab_proxy_loop_lag_seconds{which="max"}')
    print(
        f"connections={args.connections} rss_before={before:.1f}MiB "
        f"rss_open_per_cycle={[round(r, 1) for r in peak_holder]}MiB "
        f"rss_after_close_per_cycle={[round(r, 1) for r in after]}MiB "
        f"active_after_close={left:.0f}"
    )
    loaded_lag = max(c.loaded_lag for c in cycles)
    connect_lag = max(c.connect_lag for c in cycles)
    print(
        f"loop lag: worst sampled while {args.connections} open and serving Range "
        f"{loaded_lag * 1000:.1f}ms; while connecting 100 at a time "
        f"{connect_lag * 1000:.1f}ms; worst over the whole run (closing 1000 at "
        f"once included) {lag * 1000:.1f}ms"
    )
    last = cycles[-1]
    for name, values in (("idle", last.idle), (f"with {args.connections} open", last.loaded)):
        values.sort()
        print(
            f"Range through proxy {name}: p50={statistics.median(values) * 1000:.2f}ms "
            f"p99={values[int(0.99 * len(values))] * 1000:.2f}ms max={values[-1] * 1000:.2f}ms"
        )


if __name__ == "__main__":
    main()
