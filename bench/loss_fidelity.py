"""The proxy's TCP-faithful loss against real kernel packet loss, same workload.

Both sides run the same path, client -> etcdlab proxy -> etcd, so both pay the
proxy's hop and only the loss differs:

- kernel: in a fresh network namespace, the proxy has no fault and nftables
  drops each packet to or from the etcd client port (the proxy-etcd leg) with
  probability p, on the input hook (a drop on the output hook is reported to
  the sending socket as local congestion, which is not wire loss);
- proxy: the same proxy with its ``loss`` fault p in both directions.

Latency mode (default): C gRPC channels (one TCP connection each) do
back-to-back linearizable Range for S seconds after a loss-free warm-up, R
runs per side and loss level. Prints p50/p90/p99 of all runs pooled and, in
brackets, the lowest and highest value of single runs (the run-to-run spread
the target has to be judged against).

Keepalive mode (``--keepalive-trials N``): an idle Watch on a channel with
keepalive K and timeout K/2; loss p is switched on and the seconds until the
Watch fails with UNAVAILABLE are timed, N trials per side. ``--time-scale``
shrinks everything together: the keepalive timings, the proxy's loss model
(``--time-scale`` of etcdlab proxy) and the kernel's RTO floor (``rto_min`` on
the namespace's loopback routes, with ``quickack`` so the 40 ms delayed ACK,
which does not scale, stays out of the way). p = 1 is a partition (proxy:
``blackhole``).

Needs root, ``ip`` and ``nft`` for the kernel side; skips it (and says so)
otherwise. Results: docs/BENCHMARKS.md, "Loss fidelity".

examples:
  sudo .venv/bin/python -m etcdlab.bench.loss_fidelity --loss 0.1 0.2 0.3 --seconds 20 --runs 3
  sudo .venv/bin/python -m etcdlab.bench.loss_fidelity --keepalive-trials 20 --loss 0.5 0.7 1 \\
      --time-scale 0.1
  sudo .venv/bin/python -m etcdlab.bench.loss_fidelity --loss 0.3 --runs 1 --capture /tmp/kernel
      (also writes /tmp/kernel-0.3.pcap: how the kernel recovered each loss)
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc

from etcdlab.bench.proxy_process import RunningProxy, proxy_process
from etcdlab.client.config import keepalive_options
from etcdlab.cluster.childproc import first_line
from etcdlab.cluster.local import LocalCluster, ServerFlags
from etcdlab.common.argtypes import time_scale
from etcdlab.protos import rpc_pb2, rpc_pb2_grpc
from etcdlab.scenario.kernel import scale_loopback_rto

# grpc shares one connection among channels with equal arguments unless each
# channel keeps its own subchannel pool: one TCP connection per client.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
KEEPALIVE = 2.0  # client keepalive time at time scale 1; the timeout is half of it
TRIAL_LIMIT = 300.0  # a keepalive trial gives up after this many keepalive periods


@dataclass(frozen=True)
class Job:
    loss: float
    clients: int
    seconds: float
    runs: int
    keepalive_trials: int
    time_scale: float
    direct: bool  # kernel side only: no proxy hop (the comparison before 2026-11-25)
    attributes: tuple[tuple[str, object], ...] = ()  # extra attributes of the proxy's loss
    capture: str | None = None  # kernel side: tcpdump of the proxy-etcd leg to this file


async def workload(
    target: str, job: Job, arm: Callable[[], None], disarm: Callable[[], None]
) -> list[list[float]]:
    """Latencies of every Range call, one list per run."""
    return [await one_run(target, job, arm, disarm) for _ in range(job.runs)]


async def one_run(
    target: str, job: Job, arm: Callable[[], None], disarm: Callable[[], None]
) -> list[float]:
    channels = [
        grpc.aio.insecure_channel(target, options=OWN_CONNECTION) for _ in range(job.clients)
    ]
    latencies: list[float] = []
    try:
        stubs = [rpc_pb2_grpc.KVStub(channel) for channel in channels]
        for stub in stubs:
            await stub.Put(rpc_pb2.PutRequest(key=b"fidelity", value=b"v"))
        arm()
        deadline = time.perf_counter() + job.seconds

        async def worker(stub: rpc_pb2_grpc.KVAsyncStub) -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await stub.Range(rpc_pb2.RangeRequest(key=b"fidelity"), timeout=120)
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker(stub) for stub in stubs))
    finally:
        disarm()
        for channel in channels:
            await channel.close()
    return latencies


async def keepalive_detection(
    target: str, job: Job, arm: Callable[[], None], disarm: Callable[[], None]
) -> list[float]:
    """Seconds from "loss on" until keepalive fails an idle Watch, one per trial;
    a trial that outlasts TRIAL_LIMIT keepalive periods counts as infinity."""
    keepalive = KEEPALIVE * job.time_scale
    options = [*OWN_CONNECTION, *keepalive_options(keepalive, keepalive / 2)]
    times = []
    for _ in range(job.keepalive_trials):
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            watch = rpc_pb2_grpc.WatchStub(channel).Watch()
            create = rpc_pb2.WatchCreateRequest(key=b"fidelity")
            await watch.write(rpc_pb2.WatchRequest(create_request=create))
            await watch.read()
            arm()
            started = time.perf_counter()
            try:
                await asyncio.wait_for(watch.read(), TRIAL_LIMIT * keepalive)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                times.append(time.perf_counter() - started)
            except TimeoutError:
                times.append(float("inf"))
            else:
                raise RuntimeError("the idle watch got an event nobody wrote")
            finally:
                disarm()
    return times


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


def server_flags(job: Job) -> ServerFlags:
    # etcd must tolerate the clients' keepalive pings (default minimum 5 s).
    return ServerFlags(grpc_keepalive_min_time_s=KEEPALIVE * job.time_scale / 2)


@contextmanager
def hop(job: Job, upstream: str, *extra: str) -> Iterator[RunningProxy]:
    with proxy_process(
        upstream, "--control", "127.0.0.1:0", "--time-scale", str(job.time_scale), *extra
    ) as proxy:
        yield proxy


def run_kernel_inner(job: Job) -> object:
    """Runs inside the namespace: etcd, a fault-free proxy, nftables loss, workload."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    if job.time_scale != 1:
        scale_loopback_rto(job.time_scale)
    with LocalCluster(1, flags=server_flags(job)) as cluster:
        upstream = cluster.endpoints[0]
        port = int(upstream.rsplit(":", 1)[1])

        def arm() -> None:
            nft_drop(port, job.loss)

        with capture(job.capture, port):
            if job.direct:
                return measure(upstream, job, arm, nft_clear)
            with hop(job, upstream) as proxy:
                return measure(proxy.listen, job, arm, nft_clear)


@contextmanager
def capture(path: str | None, port: int) -> Iterator[None]:
    """Record every packet to or from etcd's port (dropped ones too: the capture
    sees them before the input hook drops them) while the workload runs."""
    if path is None:
        yield
        return
    command = ["tcpdump", "-i", "lo", "-s", "200", "-U", "-Z", "root", "-w", path]
    # Unbuffered: each line is read as it comes, so the deadline sees every one.
    tcpdump = subprocess.Popen(
        [*command, "tcp", "port", str(port)], stderr=subprocess.PIPE, bufsize=0
    )
    try:
        assert tcpdump.stderr is not None
        # tcpdump says "listening on lo" once it captures, maybe after warnings;
        # it exits on bad input.
        said: list[bytes] = []
        while b"listening" not in (line := first_line(tcpdump.stderr, 10, "tcpdump")):
            if not line:
                raise RuntimeError(f"tcpdump did not start: {b''.join(said).decode().strip()}")
            said.append(line)
        yield
    finally:
        tcpdump.terminate()
        tcpdump.wait(timeout=10)


def measure(target: str, job: Job, arm: Callable[[], None], disarm: Callable[[], None]) -> object:
    if job.keepalive_trials:
        return asyncio.run(keepalive_detection(target, job, arm, disarm))
    return asyncio.run(workload(target, job, arm, disarm))


def run_proxy(job: Job) -> object:
    with (
        LocalCluster(1, flags=server_flags(job)) as cluster,
        hop(job, cluster.endpoints[0], "--seed", "1") as proxy,
    ):
        toxics = f"http://{proxy.control}/proxies/proxy/toxics"

        def arm() -> None:
            toxic: dict[str, object] = {
                "name": "cut",
                "type": "loss",
                "stream": "both",
                "attributes": {"probability": job.loss, **dict(job.attributes)},
            }
            if job.loss >= 1:
                toxic = {"name": "cut", "type": "blackhole", "stream": "both"}
            request = urllib.request.Request(toxics, data=json.dumps(toxic).encode(), method="POST")
            urllib.request.urlopen(request, timeout=10).close()

        def disarm() -> None:
            request = urllib.request.Request(f"{toxics}/cut", method="DELETE")
            urllib.request.urlopen(request, timeout=10).close()

        return measure(proxy.listen, job, arm, disarm)


def can_run_kernel() -> bool:
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"):
        print("kernel side skipped: needs root, ip and nft", file=sys.stderr)
        return False
    return True


def run_kernel(job: Job) -> object:
    namespace = f"etcdlab-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        inner = (
            f"--inner --loss {job.loss} --clients {job.clients} --seconds {job.seconds} "
            f"--runs {job.runs} --keepalive-trials {job.keepalive_trials} "
            f"--time-scale {job.time_scale}"
            + (" --direct" if job.direct else "")
            + (f" --capture {job.capture}" if job.capture else "")
        )
        exec_in = [
            "ip",
            "netns",
            "exec",
            namespace,
            sys.executable,
            "-m",
            "etcdlab.bench.loss_fidelity",
        ]
        done = subprocess.run(
            [*exec_in, *inner.split()],
            check=True,
            stdout=subprocess.PIPE,
        )
        return json.loads(done.stdout.decode().strip().splitlines()[-1])
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)


def capture_file(prefix: str | None, loss: float, inner: bool) -> str | None:
    """The capture's file: the inner run is handed the full path."""
    if prefix is None or inner:
        return prefix
    return os.path.abspath(f"{prefix}-{loss:g}.pcap")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def show_latency(name: str, loss: float, runs: list[list[float]], seconds: float) -> None:
    pooled = [latency for run in runs for latency in run]
    cells = []
    for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        each = [percentile(run, q) for run in runs]
        cells.append(
            f"{label}={percentile(pooled, q) * 1000:7.1f}ms "
            f"[{min(each) * 1000:.1f}-{max(each) * 1000:.1f}]"
        )
    slow = sum(latency > 0.1 for latency in pooled) / len(pooled)
    print(
        f"{name:6} loss={loss:.2f} {' '.join(cells)} max={max(pooled):6.2f}s "
        f">100ms={slow:6.1%} rate={len(pooled) / (seconds * len(runs)):6.1f}/s "
        f"n={len(pooled)} load={os.getloadavg()[0]:.2f}",
        flush=True,
    )


def show_keepalive(name: str, loss: float, times: list[float]) -> None:
    done = sorted(t for t in times if t != float("inf"))
    summary = "none detected"
    if done:
        summary = (
            f"p10={percentile(done, 0.1):.2f}s median={statistics.median(done):.2f}s "
            f"p90={percentile(done, 0.9):.2f}s mean={statistics.fmean(done):.2f}s"
        )
    print(
        f"{name:6} loss={loss:.2f} detected {len(done)}/{len(times)}: {summary} "
        f"load={os.getloadavg()[0]:.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m etcdlab.bench.loss_fidelity",
        description=__doc__.split("\n\n", 1)[1].split("\n\nNeeds root")[0],
        epilog=__doc__.split("\n\nNeeds root", 1)[1].join(("Needs root", "")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--loss",
        type=float,
        nargs="+",
        default=[0.1, 0.2, 0.3],
        help="loss probabilities to compare, each in (0, 1] (default 0.1 0.2 0.3)",
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent channels (default 8)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per run (default 20)")
    parser.add_argument("--runs", type=int, default=3, help="runs per side and loss (default 3)")
    parser.add_argument(
        "--keepalive-trials",
        type=int,
        default=0,
        help="instead of latency: time keepalive's detection N times per side and loss",
    )
    parser.add_argument(
        "--time-scale",
        type=time_scale,
        default=1.0,
        help="shrink every timing, both sides (default 1)",
    )
    parser.add_argument(
        "--direct",
        action="store_true",
        help="kernel side without the proxy hop (compares the hop as well as the loss)",
    )
    parser.add_argument(
        "--proxy-only", action="store_true", help="skip the kernel side (to try model variants)"
    )
    parser.add_argument(
        "--attributes",
        type=json.loads,
        default={},
        metavar="JSON",
        help="extra attributes of the proxy's loss, e.g. '{\"ack_loss\": false}'",
    )
    parser.add_argument("--save", metavar="PATH", help="also write every raw measurement as JSON")
    parser.add_argument(
        "--capture",
        metavar="PREFIX",
        help="kernel side: tcpdump the proxy-etcd leg to PREFIX-<loss>.pcap (needs tcpdump)",
    )
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not isinstance(args.attributes, dict):
        parser.error("--attributes must be a JSON object")
    if min(args.loss) <= 0 or max(args.loss) > 1:
        parser.error("--loss values must be in (0, 1]")
    if args.capture and not shutil.which("tcpdump"):
        parser.error("--capture needs tcpdump (apt-get install tcpdump)")
    if args.runs < 1 or args.clients < 1 or args.seconds <= 0 or args.time_scale > 1:
        parser.error("--runs, --clients, --seconds must be positive, --time-scale in (0, 1]")
    saved: dict[str, dict[str, object]] = {}
    for loss in args.loss:
        job = Job(
            loss,
            args.clients,
            args.seconds,
            args.runs,
            args.keepalive_trials,
            args.time_scale,
            args.direct,
            tuple(args.attributes.items()),
            capture_file(args.capture, loss, args.inner),
        )
        if args.inner:
            print(json.dumps(run_kernel_inner(job)))
            return
        sides = [("proxy", run_proxy)]
        if not args.proxy_only and can_run_kernel():
            sides.insert(0, ("kernel", run_kernel))
        for name, run in sides:
            result = run(job)
            saved.setdefault(name, {})[str(loss)] = result
            if job.keepalive_trials:
                show_keepalive(name, loss, result)  # type: ignore[arg-type]
            else:
                show_latency(name, loss, result, job.seconds)  # type: ignore[arg-type]
        if args.save:
            with open(args.save, "w") as file:
                json.dump(saved, file)


if __name__ == "__main__":
    main()
