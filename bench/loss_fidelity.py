"""The proxy's TCP-faithful loss against real kernel packet loss, same workload.

Both sides run the same path, client -> etcdlab proxy -> etcd, so both pay the
proxy's hop and only the loss differs:

- kernel: in a fresh network namespace, the proxy has no fault and nftables
  drops each packet to or from the etcd client port (the proxy-etcd leg) with
  probability p, on the input hook (a drop on the output hook is reported to
  the sending socket as local congestion, which is not wire loss);
- proxy: the same proxy with its ``loss`` fault p in both directions.

Latency mode (default): C gRPC channels (one TCP connection each) make
back-to-back calls for S seconds after a loss-free warm-up: linearizable
Range, Put (through raft and the WAL's fsync), or a mix of the two on every
connection (each call a Put with probability one half, seeded). Every
(workload, C, loss) cell gets R runs per side, kernel and proxy in turn (ABBA:
the order flips every run), each on a fresh etcd, so a busy machine weighs on
both alike; the proxy's seed is the run's number. Prints calls/s, mean,
p50/p90/p99 and the share of calls over 100 ms of all runs pooled and, in
brackets, the lowest and highest value of single runs (the run-to-run spread
the target has to be judged against), then the proxy's figures over the
kernel's, marked where they leave +-25%.

Stream mode (``--workload stream``): C one-way streams shaped like etcd's
rafthttp (bench/raftstream.py: the receiver dials, the sender writes each
raft message as it comes, heartbeats every 100 ms and appends), each offered
``--rate`` messages/s for S seconds; the kernel drops on the sender-proxy leg
(both ways, so the sender's ACKs too), the proxy is a raw TCP link as on a
peer link. Every message carries its send time; per cell: offered and
delivered messages/s, the one-way delay's p50/p90/p99/max, the share over
1 s, the backlog when the run ends (sent, not yet received) and the longest
silence at a receiver (etcd drops a stream silent for 5 s). What is still on
the way at the end is waited for up to DRAIN seconds more, with the loss on.
With ``--heal W`` the loss is removed instead after S seconds (kernel: the
nftables table deleted; proxy: the fault deleted through its control API, as
the scenario engine's driver does) and the senders go on at the rate for up to
W seconds, until each stream has delivered its first message written after the
heal. Per cell, over its runs: the receiver's backlog at the heal and the
seconds after it until everything written before it had arrived ("drained")
and until the first message written after it had ("first"), as median, p90
and max; a run that did not get there within W counts as never.

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
  sudo .venv/bin/python -m etcdlab.bench.loss_fidelity --workload range put mixed \\
      --clients 1 8 32 --loss 0.1 0.2 0.3 --save grid.json
  python -m etcdlab.bench.loss_fidelity --table grid.json   (the saved grid as a Markdown table)
  sudo .venv/bin/python -m etcdlab.bench.loss_fidelity --base /work/old/.venv/bin/python \\
      --workload range put --clients 1 32 --loss 0.3 --runs 1 --seconds 10
      (a third side, "base": another checkout's proxy, to measure a model change)
  sudo .venv/bin/python -m etcdlab.bench.loss_fidelity --workload put --clients 8 --loss 0.3 \\
      --variant nocwnd '{"congestion_window": false}'   (a side per rule switched off)
  sudo .venv/bin/python -m etcdlab.bench.loss_fidelity --workload stream --rate 10 30 100 \\
      --loss 0.1 0.2 0.3 --runs 3 --seconds 20 --save stream.json
  sudo .venv/bin/python -m etcdlab.bench.loss_fidelity --workload stream --rate 10 100 \\
      --loss 0.2 0.3 --runs 8 --seconds 20 --heal 60 --save heal.json
      (20 s of loss, then the heal: how long the streams take to recover)
  sudo .venv/bin/python -m etcdlab.bench.loss_fidelity --keepalive-trials 20 --loss 0.5 0.7 1 \\
      --time-scale 0.1
  sudo .venv/bin/python -m etcdlab.bench.loss_fidelity --loss 0.3 --runs 1 --capture /tmp/kernel
      (also writes /tmp/kernel-0.3.pcap: how the kernel recovered each loss)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from etcdlab.bench import raftstream
from etcdlab.bench.proxy_process import RunningProxy, proxy_process
from etcdlab.client.config import keepalive_options
from etcdlab.cluster.childproc import first_line
from etcdlab.cluster.local import LocalCluster, ServerFlags
from etcdlab.common.argtypes import time_scale
from etcdlab.common.stopping import Stopped
from etcdlab.common.timescale import TimeScale
from etcdlab.protos import rpc_pb2, rpc_pb2_grpc
from etcdlab.scenario.kernel import CONGESTION, MTU, tune_loopback_routes

# grpc shares one connection among channels with equal arguments unless each
# channel keeps its own subchannel pool: one TCP connection per client.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
KEEPALIVE = 2.0  # client keepalive time at time scale 1; the timeout is half of it
TRIAL_LIMIT = 300.0  # a keepalive trial gives up after this many keepalive periods
CALL_LIMIT = 120.0  # seconds a call may take before it is cut (and counted as that long)
CALLS = ("range", "put", "mixed")
STREAM = "stream"
WORKLOADS = (*CALLS, STREAM)
DRAIN = 15.0  # seconds a stream run waits, after the last send, for what is on the way
MIXED_WRITES = 0.5  # the share of Puts in the mixed workload
TARGET = 0.25  # the proxy's figures within +-25% of the kernel's


@dataclass(frozen=True)
class Job:
    loss: float
    workload: str
    clients: int
    seconds: float
    keepalive_trials: int
    time_scale: float
    direct: bool  # kernel side only: no proxy hop (the comparison before 2026-11-25)
    attributes: tuple[tuple[str, object], ...] = ()  # extra attributes of the proxy's loss
    capture: str | None = None  # kernel side: tcpdump of the proxy-etcd leg to this file
    rate: float = 0.0  # stream workload: messages per second offered on each stream
    seed: int = 1  # the proxy's seed: run n of a cell has seed n, on every proxy side
    heal: float = 0.0  # stream workload: seconds to wait for recovery after the heal (0: no heal)


async def one_run(
    target: str, job: Job, arm: Callable[[], None], disarm: Callable[[], None]
) -> list[float]:
    """Latencies of every call of one run."""
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

        async def worker(stub: rpc_pb2_grpc.KVAsyncStub, index: int) -> None:
            writes = {"range": 0.0, "put": 1.0, "mixed": MIXED_WRITES}[job.workload]
            put = rpc_pb2.PutRequest(key=b"fidelity", value=b"v")
            read = rpc_pb2.RangeRequest(key=b"fidelity")
            rng = random.Random(index)
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    if rng.random() < writes:
                        await stub.Put(put, timeout=CALL_LIMIT)
                    else:
                        await stub.Range(read, timeout=CALL_LIMIT)
                except grpc.aio.AioRpcError as error:
                    # A run of losses can hold a call for minutes (the kernel's RTO
                    # doubles up to 120 s): it counts, as at least this long.
                    if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                        raise
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker(stub, index) for index, stub in enumerate(stubs)))
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
    keepalive = TimeScale(job.time_scale).scaled(KEEPALIVE)
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
    return ServerFlags(grpc_keepalive_min_time_s=TimeScale(job.time_scale).scaled(KEEPALIVE) / 2)


@contextmanager
def hop(
    job: Job, upstream: str, *extra: str, python: str = sys.executable
) -> Iterator[RunningProxy]:
    with proxy_process(
        upstream,
        "--control",
        "127.0.0.1:0",
        "--time-scale",
        str(job.time_scale),
        *extra,
        python=python,
    ) as proxy:
        yield proxy


@contextmanager
def upstream(job: Job) -> Iterator[tuple[str, socket.socket | None]]:
    """What the proxy forwards to: one etcd member, or for streams the senders'
    listening socket (and the socket)."""
    if job.workload != STREAM:
        with LocalCluster(1, flags=server_flags(job)) as cluster:
            yield cluster.endpoints[0], None
        return
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"127.0.0.1:{listener.getsockname()[1]}", listener


def run_kernel_inner(job: Job) -> object:
    """Runs inside the namespace: etcd, a fault-free proxy, nftables loss, workload."""
    # A real network's packet size, as the scenario oracle has it: on a 64 KB
    # loopback the bytes a stall piles up would leave as one packet, one roll
    # of the dice, where the model (and a network) cuts them into segments.
    mtu = str(MTU)
    subprocess.run(["ip", "link", "set", "lo", "up", "mtu", mtu, "gso_max_size", mtu], check=True)
    # Linux's default congestion control, as the scenario oracle has it, not the
    # host's (BBR here): the model stands for a default kernel.
    tune_loopback_routes(job.time_scale, CONGESTION)
    with upstream(job) as (address, listener):
        port = int(address.rsplit(":", 1)[1])

        def arm() -> None:
            nft_drop(port, job.loss)

        with capture(job.capture, port):
            if job.direct:
                return measure(address, job, arm, nft_clear, listener)
            with hop(job, address, *raw(job)) as proxy:
                return measure(proxy.listen, job, arm, nft_clear, listener)


def raw(job: Job) -> tuple[str, ...]:
    """The proxy's flags for the workload: streams cross a raw TCP link, as peer links do."""
    return ("--raw",) if job.workload == STREAM else ()


@contextmanager
def capture(path: str | None, port: int) -> Iterator[None]:
    """Record every packet to or from etcd's port (dropped ones too: the capture
    sees them before the input hook drops them) while the workload runs."""
    if path is None:
        yield
        return
    # Immediate mode: else the last packets, still in the capture buffer when
    # tcpdump is stopped, were missing (up to 13 s of a healed stream run).
    command = [
        "tcpdump",
        "-i",
        "lo",
        "-s",
        "200",
        "-U",
        "--immediate-mode",
        "-Z",
        "root",
        "-w",
        path,
    ]
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


def measure(
    target: str,
    job: Job,
    arm: Callable[[], None],
    disarm: Callable[[], None],
    listener: socket.socket | None = None,
) -> object:
    if listener is not None:
        return asyncio.run(
            raftstream.run(
                listener, target, job.clients, job.rate, job.seconds, arm, disarm, DRAIN, job.heal
            )
        )
    if job.keepalive_trials:
        return asyncio.run(keepalive_detection(target, job, arm, disarm))
    return asyncio.run(one_run(target, job, arm, disarm))


def run_proxy(
    job: Job, python: str = sys.executable, attributes: dict[str, object] | None = None
) -> object:
    """The proxy's side: its loss with ``job``'s attributes, or ``attributes``
    instead (a variant)."""
    attributes = dict(job.attributes) if attributes is None else attributes
    with (
        upstream(job) as (address, listener),
        hop(job, address, "--seed", str(job.seed), *raw(job), python=python) as proxy,
    ):
        toxics = f"http://{proxy.control}/proxies/proxy/toxics"

        def arm() -> None:
            toxic: dict[str, object] = {
                "name": "cut",
                "type": "loss",
                "stream": "both",
                "attributes": {"probability": job.loss, **attributes},
            }
            if job.loss >= 1:
                toxic = {"name": "cut", "type": "blackhole", "stream": "both"}
            request = urllib.request.Request(toxics, data=json.dumps(toxic).encode(), method="POST")
            urllib.request.urlopen(request, timeout=10).close()

        def disarm() -> None:
            request = urllib.request.Request(f"{toxics}/cut", method="DELETE")
            urllib.request.urlopen(request, timeout=10).close()

        return measure(proxy.listen, job, arm, disarm, listener)


def can_run_kernel() -> bool:
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"):
        print("kernel side skipped: needs root, ip and nft", file=sys.stderr)
        return False
    return True


def run_kernel(job: Job) -> object:
    namespace = f"etcdlab-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        exec_in = [
            "ip",
            "netns",
            "exec",
            namespace,
            sys.executable,
            "-m",
            "etcdlab.bench.loss_fidelity",
        ]
        with subprocess.Popen([*exec_in, *inner_arguments(job)], stdout=subprocess.PIPE) as inner:
            try:
                out, _ = inner.communicate()
            except Stopped:
                # Its own SIGTERM handler stops its etcd and proxy, and the
                # namespace goes only once nothing runs in it.
                inner.terminate()
                inner.wait(timeout=60)
                raise
        if inner.returncode:
            raise subprocess.CalledProcessError(inner.returncode, inner.args)
        return json.loads(out.decode().strip().splitlines()[-1])
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)


def inner_arguments(job: Job) -> list[str]:
    """The command line of ``job``'s run inside the namespace."""
    inner = (
        f"--inner --loss {job.loss} --workload {job.workload} --clients {job.clients} "
        f"--seconds {job.seconds} --keepalive-trials {job.keepalive_trials} "
        f"--time-scale {job.time_scale}"
        + (f" --rate {job.rate}" if job.workload == STREAM else "")
        + (f" --heal {job.heal}" if job.heal else "")
        + (" --direct" if job.direct else "")
        + (f" --capture {job.capture}" if job.capture else "")
    )
    return inner.split()


def capture_file(prefix: str | None, loss: float, inner: bool) -> str | None:
    """The capture's file: the inner run is handed the full path."""
    if prefix is None or inner:
        return prefix
    return os.path.abspath(f"{prefix}-{loss:g}.pcap")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# The figures compared, each of one run's latencies and its length in seconds.
FIGURES: dict[str, Callable[[list[float], float], float]] = {
    "calls/s": lambda run, seconds: len(run) / seconds,
    "mean": lambda run, _: statistics.fmean(run),
    "p50": lambda run, _: percentile(run, 0.5),
    "p90": lambda run, _: percentile(run, 0.9),
    "p99": lambda run, _: percentile(run, 0.99),
    "> 100 ms": lambda run, _: sum(latency > 0.1 for latency in run) / len(run),
}


# The figures of a stream run (raftstream.summary), or of several pooled (pool).
STREAM_FIGURES: dict[str, Callable[[dict[str, Any]], float]] = {
    "offered/s": lambda run: len(run["delays"]) / run["seconds"],
    "delivered/s": lambda run: run["delivered"] / run["seconds"],
    "p50": lambda run: percentile(run["delays"], 0.5),
    "p90": lambda run: percentile(run["delays"], 0.9),
    "p99": lambda run: percentile(run["delays"], 0.99),
    "max": lambda run: max(run["delays"]),
    "> 1 s": lambda run: sum(delay > 1 for delay in run["delays"]) / len(run["delays"]),
    "backlog": lambda run: run["backlog"] / run.get("runs", 1),
    "silence": lambda run: run["silence"],
}


def pool(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Stream runs as one: their messages together, the backlog per run, the
    longest silence of any."""
    return {
        "seconds": sum(run["seconds"] for run in runs),
        "delays": [delay for run in runs for delay in run["delays"]],
        "delivered": sum(run["delivered"] for run in runs),
        "backlog": sum(run["backlog"] for run in runs),
        "silence": max(run["silence"] for run in runs),
        "runs": len(runs),
    }


def healing(runs: list[Any], key: str) -> list[float]:
    """Each run's ``key`` of its recovery after the heal (raftstream.recovery),
    a run that never got there as infinitely long."""
    return [math.inf if run["heal"][key] is None else run["heal"][key] for run in runs]


def heal_figures(runs: list[dict[str, Any]]) -> dict[str, float]:
    """How a cell's stream runs recovered after the heal, over its runs: the
    backlog at the heal, the seconds until it had drained and until the first
    message written after the heal arrived, and the runs where that never did."""
    backlogs = healing(runs, "backlog")
    shown = {"backlog p50": statistics.median(backlogs), "backlog max": max(backlogs)}
    for key in ("drained", "first"):
        values = healing(runs, key)
        shown[f"{key} p50"] = statistics.median(values)
        # The nearest rank over a few runs (of 10, the 9th), not the highest.
        shown[f"{key} p90"] = sorted(values)[math.ceil(0.9 * len(values)) - 1]
        shown[f"{key} max"] = max(values)
    shown["never"] = sum(math.isinf(value) for value in healing(runs, "first"))
    return shown


def heal_ratios(kernel: list[Any], proxy: list[Any]) -> dict[str, float]:
    """The proxy's recovery figures over the kernel's (1 where both are 0 or never)."""
    ours, theirs = heal_figures(proxy), heal_figures(kernel)
    return {name: quotient(ours[name], theirs[name]) for name in ours}


def quotient(ours: float, theirs: float) -> float:
    if ours == theirs:
        return 1.0
    return ours / theirs if theirs else math.inf


def is_stream(runs: list[Any]) -> bool:
    return isinstance(runs[0], dict)


def names(runs: list[Any]) -> list[str]:
    return list(STREAM_FIGURES if is_stream(runs) else FIGURES)


def figures(runs: list[Any], seconds: float) -> dict[str, tuple[float, float, float]]:
    """Each figure of all runs pooled, and its lowest and highest single run."""
    if is_stream(runs):
        pooled = pool(runs)
        return {
            name: (
                figure(pooled),
                min(figure(run) for run in runs),
                max(figure(run) for run in runs),
            )
            for name, figure in STREAM_FIGURES.items()
        }
    everything = [latency for run in runs for latency in run]
    return {
        name: (
            figure(everything, seconds * len(runs)),
            min(figure(run, seconds) for run in runs),
            max(figure(run, seconds) for run in runs),
        )
        for name, figure in FIGURES.items()
    }


def count(runs: list[Any]) -> int:
    """Calls made, or messages sent, in all runs."""
    return sum(len(run["delays"]) if isinstance(run, dict) else len(run) for run in runs)


def words(name: str, value: float) -> str:
    if math.isinf(value):
        return "never"
    if name in ("calls/s", "never"):
        return f"{value:.0f}"
    if name in ("offered/s", "delivered/s") or name.startswith("backlog"):
        return f"{value:.1f}"
    if name in ("> 100 ms", "> 1 s"):
        return f"{value:.1%}"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def show_latency(name: str, cell: str, runs: list[Any], seconds: float, load: str) -> None:
    shown = figures(runs, seconds)
    cells = " ".join(
        f"{figure}={words(figure, pooled)} [{words(figure, low)}-{words(figure, high)}]"
        for figure, (pooled, low, high) in shown.items()
    )
    print(f"{name:6} {cell} {cells} n={count(runs)} load={load}", flush=True)


def ratios(kernel: list[Any], proxy: list[Any], seconds: float) -> dict[str, float]:
    """The proxy's pooled figures over the kernel's (1 where both are 0)."""
    ours, theirs = figures(proxy, seconds), figures(kernel, seconds)
    return {name: quotient(ours[name][0], theirs[name][0]) for name in ours}


def show_ratios(side: str, cell: str, ratio: dict[str, float]) -> None:
    marked = " ".join(
        f"{name}={value:.2f}{'' if abs(value - 1) <= TARGET else ' (!)'}"
        for name, value in ratio.items()
    )
    print(f"{side}/kernel {cell} {marked}", flush=True)


def marked(ratio: dict[str, float]) -> str:
    """A table row's ratios, bold beyond +-25%."""
    return " | ".join(
        f"{v:.2f}" if abs(v - 1) <= TARGET else f"**{v:.2f}**" for v in ratio.values()
    )


def show_heal(name: str, cell: str, runs: list[Any]) -> None:
    shown = " ".join(f"{figure}={words(figure, v)}" for figure, v in heal_figures(runs).items())
    print(f"{name:6} {cell} after the heal: {shown} runs={len(runs)}", flush=True)


def compared(runs: dict[str, Any]) -> list[str]:
    """The sides set against the kernel's (none if it did not run)."""
    return [side for side in runs if side != "kernel"] if "kernel" in runs else []


def table(saved: dict[str, Any]) -> str:
    """A saved grid as Markdown: per cell the pooled figures of both sides, with the
    spread of single runs, and the proxy's over the kernel's (bold beyond +-25%)."""
    seconds = saved["seconds"]
    lines: list[str] = []
    last_head = ""
    for cell in saved["cells"]:
        runs = cell["runs"]
        shown_names = names(next(iter(runs.values())))
        # Calls and streams have figures of their own: a table each.
        head = "| workload | C | loss | | " + " | ".join(shown_names) + " | load |"
        if head != last_head:
            lines += [""] * bool(lines) + [head, "|" + " --- |" * (len(shown_names) + 5)]
            last_head = head
        workload = cell["workload"]
        if workload == STREAM:
            workload = f"stream {cell['rate']:g}/s"
        key = f"| {workload} | {cell['clients']} | {cell['loss']:.0%} |"
        for side in runs:
            shown = figures(runs[side], seconds)
            values = " | ".join(
                f"{words(n, v)} [{words(n, lo)}-{words(n, hi)}]" for n, (v, lo, hi) in shown.items()
            )
            loads = cell["loads"][side]
            lines.append(f"{key} {side} | {values} | {min(loads):.1f}-{max(loads):.1f} |")
            key = "| | | |"
        for side in compared(runs):
            values = marked(ratios(runs["kernel"], runs[side], seconds))
            lines.append(f"| | | | {side} / kernel | {values} | |")
    healed = [cell for cell in saved["cells"] if cell.get("heal")]
    return "\n".join(lines + (heal_table(healed) if healed else []))


def heal_table(cells: list[dict[str, Any]]) -> list[str]:
    """The recovery after the heal of the stream cells that had one, a row per side."""
    shown_names = list(heal_figures(next(iter(cells[0]["runs"].values()))))
    lines = [
        "",
        "| rate | C | loss | wait | runs | | " + " | ".join(shown_names) + " | load |",
        "|" + " --- |" * (len(shown_names) + 7),
    ]
    for cell in cells:
        runs = cell["runs"]
        rate, loss, wait = cell["rate"], cell["loss"], cell["heal"]
        key = f"| {rate:g}/s | {cell['clients']} | {loss:.0%} | {wait:g} s |"
        for side in runs:
            shown = heal_figures(runs[side])
            values = " | ".join(words(n, v) for n, v in shown.items())
            loads = cell["loads"][side]
            lines.append(
                f"{key} {len(runs[side])} | {side} | {values} | {min(loads):.1f}-{max(loads):.1f} |"
            )
            key = "| | | | |"
        for side in compared(runs):
            values = marked(heal_ratios(runs["kernel"], runs[side]))
            lines.append(f"| | | | | | {side} / kernel | {values} | |")
    return lines


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


def parse() -> argparse.Namespace:
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
    parser.add_argument(
        "--workload",
        nargs="+",
        choices=WORKLOADS,
        default=["range"],
        help="calls made back to back: range, put, mixed (half each); or stream: "
        "rafthttp-shaped one-way streams (default range)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        nargs="+",
        help="concurrent channels (default 8), or streams (default 1)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[10.0, 30.0, 100.0],
        help="stream: messages/s offered on each stream, heartbeats (10/s) and appends "
        "(default 10 30 100)",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="per run (default 20)")
    parser.add_argument(
        "--heal",
        type=float,
        default=0.0,
        metavar="WAIT",
        help="stream: remove the loss after --seconds and wait up to WAIT seconds for "
        "each stream to recover, sending on at the rate (default: no heal)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per side and cell (default 3)")
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
    parser.add_argument(
        "--base",
        metavar="PYTHON",
        help="also run the proxy of another checkout (its venv's python) as side "
        "'base', interleaved: a model change against the kernel in one run",
    )
    parser.add_argument(
        "--variant",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "JSON"),
        help="also run this proxy with these loss attributes as side NAME, interleaved "
        "(repeatable): each rule of a model change alone, against the same kernel runs",
    )
    parser.add_argument("--save", metavar="PATH", help="also write every raw measurement as JSON")
    parser.add_argument(
        "--table", metavar="PATH", help="print a grid saved with --save as Markdown, run nothing"
    )
    parser.add_argument(
        "--capture",
        metavar="PREFIX",
        help="kernel side: tcpdump the proxy-etcd leg to PREFIX-<loss>.pcap (needs tcpdump)",
    )
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not isinstance(args.attributes, dict):
        parser.error("--attributes must be a JSON object")
    variants: dict[str, dict[str, object]] = {}
    for name, text in args.variant:
        try:
            attributes = json.loads(text)
        except ValueError:
            attributes = None
        if not isinstance(attributes, dict):
            parser.error(f"--variant {name}: attributes must be a JSON object, not {text!r}")
        if name in ("kernel", "proxy", "base", *variants):
            parser.error(f"--variant {name}: that side already exists")
        variants[name] = attributes
    args.variant = variants
    if min(args.loss) <= 0 or max(args.loss) > 1:
        parser.error("--loss values must be in (0, 1]")
    if args.base and not os.access(args.base, os.X_OK):
        parser.error(f"--base: {args.base} is not an executable")
    if args.capture and not shutil.which("tcpdump"):
        parser.error("--capture needs tcpdump (apt-get install tcpdump)")
    if args.runs < 1 or min(args.clients or [1]) < 1 or args.seconds <= 0 or args.time_scale > 1:
        parser.error("--runs, --clients, --seconds must be positive, --time-scale in (0, 1]")
    if min(args.rate) <= 0:
        parser.error("--rate values must be positive")
    if args.heal < 0 or not math.isfinite(args.heal):
        parser.error(f"--heal must be a positive number of seconds, not {args.heal:g}")
    if args.heal and args.workload != [STREAM]:
        parser.error("--heal: only the stream workload heals (--workload stream alone)")
    if STREAM in args.workload and args.keepalive_trials:
        parser.error("--workload stream measures delays: it cannot go with --keepalive-trials")
    return args


def stop(signum: int, _frame: object) -> None:
    """SIGTERM (``timeout``, a stopped job) stops a run as Ctrl-C does: the
    ``with`` blocks under way stop its proxies, etcd members, nftables table
    and namespace; a second SIGTERM would cut that short, so it is ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stopped(signum)


def main() -> None:
    signal.signal(signal.SIGTERM, stop)
    try:
        grid(parse())
    except Stopped as stopped:
        sys.exit(stopped.exit_code)


def grid(args: argparse.Namespace) -> None:
    if args.table:
        try:
            with open(args.table) as file:
                print(table(json.load(file)))
        except (OSError, ValueError, KeyError) as error:
            sys.exit(f"--table: {args.table} is not a grid saved with --save: {error!r}")
        return
    cells = [
        Job(
            loss,
            workload,
            clients,
            args.seconds,
            args.keepalive_trials,
            args.time_scale,
            args.direct,
            tuple(args.attributes.items()),
            capture_file(args.capture, loss, args.inner),
            rate if workload == STREAM else 0.0,
            heal=args.heal,
        )
        for workload in args.workload
        for clients in args.clients or ([1] if workload == STREAM else [8])
        for rate in (args.rate if workload == STREAM else [0.0])
        for loss in args.loss
    ]
    if args.inner:
        print(json.dumps(run_kernel_inner(cells[0])))
        return
    sides: dict[str, Callable[[Job], object]] = {"proxy": run_proxy}
    if args.base:
        sides["base"] = functools.partial(run_proxy, python=args.base)
    for name, attributes in args.variant.items():
        sides[name] = functools.partial(run_proxy, attributes=attributes)
    if not args.proxy_only and can_run_kernel():
        sides = {"kernel": run_kernel, **sides}
    if args.keepalive_trials:
        for job in cells:
            for name, run in sides.items():
                result = run(job)
                show_keepalive(name, job.loss, result)  # type: ignore[arg-type]
        return
    saved: dict[str, Any] = {"seconds": args.seconds, "cells": []}
    for job in cells:
        cell = f"{job.workload} c{job.clients} loss={job.loss:.2f}"
        if job.workload == STREAM:
            cell = f"stream {job.rate:g}/s c{job.clients} loss={job.loss:.2f}"
            cell += f" heal={job.heal:g}s" * bool(job.heal)
        runs: dict[str, list[Any]] = {name: [] for name in sides}
        loads: dict[str, list[float]] = {name: [] for name in sides}
        for index in range(args.runs):
            # ABBA: whichever side ran second runs first next time.
            order = list(sides) if index % 2 == 0 else list(reversed(sides))
            # A seed per run: a stream's schedule is fixed, so one seed would
            # repeat the model's run exactly, and its spread would be none.
            seeded = dataclasses.replace(job, seed=index + 1)
            for name in order:
                runs[name].append(sides[name](seeded))
                loads[name].append(os.getloadavg()[0])
        for name in sides:
            shown = f"{min(loads[name]):.1f}-{max(loads[name]):.1f}"
            show_latency(name, cell, runs[name], job.seconds, shown)
        for side in compared(runs):
            show_ratios(side, cell, ratios(runs["kernel"], runs[side], job.seconds))
        if job.heal:
            for name in sides:
                show_heal(name, cell, runs[name])
            for side in compared(runs):
                show_ratios(side, f"{cell} after the heal", heal_ratios(runs["kernel"], runs[side]))
        saved["cells"].append(
            {
                "workload": job.workload,
                "clients": job.clients,
                "rate": job.rate,
                "loss": job.loss,
                "heal": job.heal,
                "runs": runs,
                "loads": loads,
            }
        )
        if args.save:
            with open(args.save, "w") as file:
                json.dump(saved, file)


if __name__ == "__main__":
    main()
