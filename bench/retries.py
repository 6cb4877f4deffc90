"""``etcdlab bench retries``: client retry strategies compared under the same faults.

One real local cluster sits behind a :class:`FaultProxy`. For every fault and
every strategy a fresh set of clients runs the same open-loop workload
(:mod:`etcdlab.bench.retry_workload`): operations arrive at a fixed, seeded
Poisson rate (so retries add load instead of slowing the arrivals, the way
retry storms happen), 70% linearizable reads and 30% compare-guarded writes (a
txn on the key's last known mod revision, safe to repeat), each with a
per-attempt timeout and an overall deadline. The run starts clean; the fault
begins after a third of it and lasts a third (the outages are short:
``SHORT_FAULTS``).

This module runs that timeline; the strategies are in
:mod:`~etcdlab.bench.retry_strategies`, the settings in
:mod:`~etcdlab.bench.retry_config`, the measures in
:mod:`~etcdlab.bench.retry_metrics` and the table and plot in
:mod:`~etcdlab.bench.retry_report`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any

from etcdlab.bench.retry_config import (
    DISPERSION_BUCKET,
    HERD_FAULTS,
    SHORT_FAULTS,
    BenchConfig,
)
from etcdlab.bench.retry_metrics import RunResult, herd_result, run_result, summarize
from etcdlab.bench.retry_report import row
from etcdlab.bench.retry_strategies import STRATEGIES, Strategy
from etcdlab.bench.retry_workload import Workload
from etcdlab.cluster.local import LocalCluster, ServerFlags
from etcdlab.proxy.faults import Fault
from etcdlab.proxy.faults.bandwidth import Bandwidth
from etcdlab.proxy.faults.blackhole import Blackhole
from etcdlab.proxy.faults.frames import FrameLoss
from etcdlab.proxy.faults.latency import Latency
from etcdlab.proxy.faults.loss import Loss
from etcdlab.testing.fault_proxy import FaultProxy


class _Fault:
    """Starts and stops one fault kind on the cluster or the proxy."""

    def __init__(self, kind: str, cluster: LocalCluster, proxy: FaultProxy, cfg: BenchConfig):
        self.kind = kind
        self.cluster = cluster
        self.proxy = proxy
        self.cfg = cfg
        self.killed: int | None = None
        self.applied: list[tuple[int, Fault]] = []
        self.down_bytes_at_start = 0

    def mark_run_start(self) -> None:
        self.down_bytes_at_start = self._downstream_bytes()

    def _downstream_bytes(self) -> int:
        return sum(link.counters.bytes["downstream"] for link in self.proxy.links)

    async def start(self, elapsed: float) -> None:
        if self.kind == "kill":
            leader = await asyncio.to_thread(self.cluster.leader)
            self.killed = 0 if leader is None else leader
            await asyncio.to_thread(self.cluster.kill, self.killed)
        elif self.kind == "loss":
            self.applied = self.proxy.add(0, Loss(0.3))
        elif self.kind == "outage":
            # Not a refused or reset connection: clientv3 waits for a ready
            # connection (WaitForReady), so that would hold calls back, not fail
            # them, and no strategy would have anything to retry.
            self.applied = self.proxy.add(None, FrameLoss(1.0, pings=False, streams=True))
        elif self.kind == "partition":
            self.applied = self.proxy.add(None, Blackhole())
        else:
            connections = max(1, sum(link.connections for link in self.proxy.links))
            # Faults are written in real seconds: the load measured over
            # ``elapsed`` run seconds stands for that many unscaled ones.
            real = self.cfg.time_scale.unscaled(elapsed)
            bytes_per_s = (self._downstream_bytes() - self.down_bytes_at_start) / real
            rate_kb = 1.5 * bytes_per_s / connections / 1024
            self.applied = self.proxy.add(None, Latency(0.4, 0.3))
            self.applied += self.proxy.add(None, Bandwidth(max(rate_kb, 0.1)))

    async def stop(self) -> None:
        if self.killed is not None:
            killed, self.killed = self.killed, None
            # The fault's end is when the member is started again; restart() then
            # waits for it to be healthy, so the next run starts on a full cluster.
            await asyncio.to_thread(self.cluster.restart, killed)
        applied, self.applied = self.applied, []
        self.proxy.remove(applied)


async def run_one(
    cfg: BenchConfig,
    strategy: Strategy,
    fault: _Fault,
    proxy: FaultProxy,
    seed: int,
) -> RunResult:
    """One strategy under one fault; the cluster must be healthy on entry."""
    rng = random.Random(seed)
    herding = fault.kind in HERD_FAULTS
    work = Workload(cfg, strategy, proxy.addresses, seed, herding)
    duration = cfg.wall(cfg.duration)
    fault_start = duration / 3
    short = SHORT_FAULTS.get(fault.kind)
    fault_end = (
        2 * duration / 3 if short is None else fault_start + min(cfg.wall(short), duration / 3)
    )
    keys = [f"/bench/key{k:03d}".encode() for k in range(cfg.keys)]
    tasks: set[asyncio.Task[None]] = set()
    fault.mark_run_start()

    async def timeline() -> tuple[float, float]:
        await asyncio.sleep(max(0.0, fault_start - work.now()))
        started = work.now()
        await fault.start(started)
        if herding:
            for index in range(cfg.clients):
                spawn(work.herd_write(index))
        await asyncio.sleep(max(0.0, fault_end - work.now()))
        ended = work.now()
        await fault.stop()
        return started, ended

    def spawn(job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    faulting = asyncio.create_task(timeline())
    try:
        at = 0.0
        while True:
            at += rng.expovariate(cfg.rate)
            if at >= duration:
                break
            await asyncio.sleep(max(0.0, at - work.now()))
            spawn(
                work.operation(
                    rng.randrange(cfg.clients), rng.random() < cfg.write_ratio, rng.choice(keys)
                )
            )
        started, ended = await faulting
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        faulting.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(faulting, *tasks, return_exceptions=True)
        await work.close()
    records = [r for r in work.records if r.start < duration]
    result = summarize(
        strategy.name,
        records,
        duration=duration,
        fault_start=started,
        fault_end=ended,
        recovery_window=cfg.wall(cfg.recovery_window),
    )
    herd = None
    if work.herd_done:
        herd = herd_result(
            work.herd_done,
            work.herd_sends,
            start=started,
            deadline=cfg.wall(cfg.op_timeout),
            bucket=cfg.wall(DISPERSION_BUCKET),
        )
    return run_result(
        fault.kind,
        result,
        records,
        work.sends,
        duration=duration,
        fault_start=started,
        fault_end=ended,
        dispersion_bucket=cfg.wall(DISPERSION_BUCKET),
        herd=herd,
    )


async def run_bench(
    cfg: BenchConfig, progress: Callable[[str], None] = lambda line: None
) -> list[RunResult]:
    """Every selected strategy under every selected fault, on one cluster."""
    results: list[RunResult] = []
    flags = ServerFlags.scaled(cfg.time_scale)
    async with (
        LocalCluster(cfg.members, flags=flags) as cluster,
        FaultProxy(cluster.endpoints, seed=cfg.seed, time_scale=cfg.time_scale) as proxy,
    ):
        for fault_index, kind in enumerate(cfg.faults):
            for name in cfg.strategies:
                await cluster.await_healthy()
                await asyncio.to_thread(cluster.wait_leader)
                # Same seed for every strategy of a fault: same arrivals, keys, faults.
                seed = cfg.seed * 10_000 + fault_index
                fault = _Fault(kind, cluster, proxy, cfg)
                try:
                    run = await run_one(cfg, STRATEGIES[name], fault, proxy, seed)
                finally:
                    await fault.stop()
                results.append(run)
                progress(f"{kind:>9} {name:<13} {row(run.result)}")
    return results
