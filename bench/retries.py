"""``etcdlab bench retries``: client retry strategies compared under the same faults.

One real local cluster sits behind a :class:`FaultProxy`. For every fault and
every strategy a fresh set of clients runs the same open-loop workload:
operations arrive at a fixed, seeded Poisson rate (so retries add load instead
of slowing the arrivals, the way retry storms happen), 70% linearizable reads
and 30% compare-guarded writes (a txn on the key's last known mod revision,
safe to repeat), each with a per-attempt timeout and an overall deadline. The
run starts clean; the fault begins after a third of it and lasts a third (the
outages are short: ``SHORT_FAULTS``).

The retry loop lives here, around a client configured not to retry, so every
strategy is applied the same way and every RPC attempt is counted here.
Strategies and faults are described in :data:`STRATEGIES` and :data:`FAULTS`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import random
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etcdlab.bench.retry_metrics import OperationRecord, StrategyResult, summarize
from etcdlab.client.config import ClientConfig
from etcdlab.client.errors import ClusterUnavailableError, ContextError, EtcdError
from etcdlab.client.etcd import EtcdClient
from etcdlab.client.retry import (
    DecorrelatedJitter,
    Exponential,
    ExponentialFullJitter,
    FixedDelay,
    NoRetry,
    RetryBudget,
    RetryPolicy,
    ThrottledRetry,
)
from etcdlab.cluster.local import LocalCluster, ServerFlags
from etcdlab.common import stopping
from etcdlab.common.argtypes import positive_float, positive_int
from etcdlab.common.clock import MonotonicClock
from etcdlab.protos import rpc_pb2
from etcdlab.proxy.faults import Bandwidth, Blackhole, Fault, Latency, Loss, Reset
from etcdlab.testing.fault_proxy import FaultProxy

# Retry timings in real seconds (multiplied by the time scale), AWS-blog shaped.
MAX_ATTEMPTS = 6
BACKOFF_BASE = 0.05
BACKOFF_CAP = 2.0
FIXED_DELAY = 0.2
HEDGE_DELAY = 0.05
BUDGET_WINDOW = 10.0
# Outages last this long (real seconds, capped at a third of the run): shorter
# than an operation's deadline, so a retry strategy can ride them out.
SHORT_FAULTS = {"outage": 2.0, "partition": 2.0}
# Faults at whose start every client also begins one contended write (HerdResult).
HERD_FAULTS = frozenset({"outage"})
# Resolution at which bunched retries are looked for (the first backoff step).
DISPERSION_BUCKET = BACKOFF_BASE


@dataclass(frozen=True)
class Strategy:
    name: str
    description: str
    policy: Callable[[int, float, int], RetryPolicy]
    """``policy(seed, time_scale, max_attempts)``: a fresh policy for one client."""
    hedge: bool = False


def _budget(seed: int, scale: float, attempts: int) -> RetryPolicy:
    inner = ExponentialFullJitter(
        BACKOFF_BASE * scale, BACKOFF_CAP * scale, max_attempts=attempts, seed=seed
    )
    window = BUDGET_WINDOW * scale
    # Floor of one retry per window, so an idle client can still retry once.
    return RetryBudget(inner, MonotonicClock(), ratio=0.1, min_per_second=1 / window, window=window)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy(
            "none", "no retry: the first failure is final", lambda seed, ts, attempts: NoRetry()
        ),
        Strategy(
            "immediate",
            f"retry at once, up to {MAX_ATTEMPTS} attempts",
            lambda seed, ts, attempts: FixedDelay(0.0, max_attempts=attempts),
        ),
        Strategy(
            "fixed",
            f"retry after {FIXED_DELAY * 1000:g} ms each time",
            lambda seed, ts, attempts: FixedDelay(FIXED_DELAY * ts, max_attempts=attempts),
        ),
        Strategy(
            "exponential",
            f"{BACKOFF_BASE * 1000:g} ms doubling, cap {BACKOFF_CAP:g} s, no jitter",
            lambda seed, ts, attempts: Exponential(
                BACKOFF_BASE * ts, BACKOFF_CAP * ts, max_attempts=attempts
            ),
        ),
        Strategy(
            "full-jitter",
            "exponential ceiling, wait uniform in [0, ceiling]",
            lambda seed, ts, attempts: ExponentialFullJitter(
                BACKOFF_BASE * ts, BACKOFF_CAP * ts, max_attempts=attempts, seed=seed
            ),
        ),
        Strategy(
            "decorrelated",
            "wait uniform in [base, 3 x previous wait], capped",
            lambda seed, ts, attempts: DecorrelatedJitter(
                BACKOFF_BASE * ts, BACKOFF_CAP * ts, max_attempts=attempts, seed=seed
            ),
        ),
        Strategy(
            "throttled",
            "full jitter behind a gRFC A6 token bucket (10 tokens, ratio 0.1)",
            lambda seed, ts, attempts: ThrottledRetry(
                ExponentialFullJitter(
                    BACKOFF_BASE * ts, BACKOFF_CAP * ts, max_attempts=attempts, seed=seed
                )
            ),
        ),
        Strategy(
            "budget",
            f"full jitter within a 10% retry budget per client ({BUDGET_WINDOW:g} s window)",
            _budget,
        ),
        Strategy(
            "hedged",
            f"reads hedged to a second client after {HEDGE_DELAY * 1000:g} ms "
            "(or at once on a failure); no retries",
            lambda seed, ts, attempts: NoRetry(),
            hedge=True,
        ),
    )
}

FAULTS: dict[str, str] = {
    "kill": "the leader is SIGKILLed, restarted when the fault ends",
    "loss": "30% TCP-faithful packet loss on member 0's client link",
    "outage": "for 2 s every client link resets all connections, old and new (members "
    "down: attempts fail fast)",
    "partition": "for 2 s every client link is blackholed (nothing passes, connections "
    "stay open: attempts hang until their timeout)",
    "overload": "every link slow (latency 0.4 +/- 0.3 s each way) and bandwidth-capped "
    "at 1.5x the load measured before the fault",
}


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark's settings. Durations are real seconds, multiplied by
    ``time_scale``; ``rate`` is operations per wall-clock second."""

    time_scale: float = 1.0
    seed: int = 0
    duration: float = 30.0
    """Length of one run: the fault starts after a third of it and lasts a third
    (outages: ``SHORT_FAULTS``)."""
    rate: float = 100.0
    clients: int = 16
    members: int = 3
    write_ratio: float = 0.3
    attempt_timeout: float = 1.0
    """Deadline of one RPC attempt."""
    op_timeout: float = 6.0
    """Deadline of one operation across all its attempts."""
    recovery_window: float = 2.0
    """Recovered = this long without a failed operation after the fault ended."""
    keys: int = 32
    strategies: tuple[str, ...] = tuple(STRATEGIES)
    faults: tuple[str, ...] = tuple(FAULTS)

    def __post_init__(self) -> None:
        for name in ("time_scale", "duration", "rate", "attempt_timeout", "op_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number")
        if not math.isfinite(self.recovery_window) or self.recovery_window <= 0:
            raise ValueError("recovery_window must be a positive finite number")
        if self.clients < 2:
            raise ValueError("clients must be at least 2 (hedged reads use a second one)")
        if self.members < 3:
            raise ValueError("members must be at least 3 (a member kill must keep quorum)")
        if not 0 <= self.write_ratio <= 1:
            raise ValueError("write_ratio must be within [0, 1]")
        if self.keys < 1:
            raise ValueError("keys must be at least 1")
        if not self.strategies:
            raise ValueError("strategies must not be empty")
        if not self.faults:
            raise ValueError("faults must not be empty")
        for name in self.strategies:
            if name not in STRATEGIES:
                raise ValueError(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")
        for name in self.faults:
            if name not in FAULTS:
                raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")

    def wall(self, seconds: float) -> float:
        return seconds * self.time_scale


@dataclass(frozen=True)
class HerdResult:
    """The AWS-style anchor: every client starts one contended write when the outage begins."""

    clients: int
    succeeded: int
    calls: int
    """RPCs sent by the herd (a read and a compare-guarded write per try)."""
    finished_s: float | None
    """From the outage's start until the last herd write succeeded (None: none did)."""
    dispersion: float | None
    """Of the herd's RPC send times, from the outage's start until the op deadline."""
    bucket: float
    timeline: list[int]
    """The herd's RPCs started per ``bucket`` seconds from the outage's start."""


@dataclass(frozen=True)
class RunResult:
    fault: str
    result: StrategyResult
    """From :func:`summarize`, except ``fault_rpc_rate_ratio``: RPCs per arriving
    operation during the fault over the same before it, so the noise of a short
    fault's Poisson arrivals (the same for every strategy) is divided out."""
    raw_rpc_rate_ratio: float | None
    """:func:`summarize`'s RPC rate during the fault over the rate before it."""
    fault_start: float
    fault_end: float
    bucket: float
    sent: list[int]
    """RPC attempts started per ``bucket`` seconds, from the run's start."""
    dispersion: float | None
    """Variance over mean of the attempts started per ``DISPERSION_BUCKET`` during
    the fault: about 1 for independent (Poisson) sends, well above 1 when
    retries bunch together."""
    herd: HerdResult | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            **dataclasses.asdict(self.result),
            "raw_rpc_rate_ratio": self.raw_rpc_rate_ratio,
            "storm": self.result.storm,
            "herd": None if self.herd is None else dataclasses.asdict(self.herd),
            "fault_start_s": round(self.fault_start, 4),
            "fault_end_s": round(self.fault_end, 4),
            "dispersion": self.dispersion,
            "timeline": {"bucket_s": self.bucket, "attempts": self.sent},
        }


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
            self.applied = self.proxy.add(None, Reset())
        elif self.kind == "partition":
            self.applied = self.proxy.add(None, Blackhole())
        else:
            connections = max(1, sum(link.connections for link in self.proxy.links))
            bytes_per_s = (self._downstream_bytes() - self.down_bytes_at_start) / elapsed
            # Link bandwidth is scaled by time_scale like every duration, so undo it.
            rate_kb = 1.5 * bytes_per_s / connections / 1024 * self.cfg.time_scale
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


@dataclass
class _Workload:
    cfg: BenchConfig
    strategy: Strategy
    clients: list[EtcdClient]
    policies: list[RetryPolicy]
    rng: random.Random
    t0: float
    records: list[OperationRecord] = field(default_factory=list)
    sends: list[float] = field(default_factory=list)
    revisions: dict[bytes, int] = field(default_factory=dict)
    herd_sends: list[float] = field(default_factory=list)
    herd_done: list[float | None] = field(default_factory=list)

    def now(self) -> float:
        return asyncio.get_running_loop().time() - self.t0

    async def operation(self, index: int, write: bool, key: bytes) -> None:
        policy = self.policies[index]
        start = self.now()
        deadline = start + self.cfg.wall(self.cfg.op_timeout)
        policy.record_call()
        attempts = 0
        attempt = 0
        previous = 0.0
        ok = False
        while True:
            attempt += 1
            left = deadline - self.now()
            if left <= 0:
                break
            timeout = min(self.cfg.wall(self.cfg.attempt_timeout), left)
            try:
                if write:
                    attempts += 1
                    await self._write(self.clients[index], key, timeout)
                elif self.strategy.hedge:
                    attempts += await self._hedged_read(index, key, timeout)
                else:
                    attempts += 1
                    await self._read(self.clients[index], key, timeout)
            except (ContextError, ClusterUnavailableError) as error:
                policy.record_result(False)
                if isinstance(error, HedgeFailed):
                    attempts += error.attempts
                wait = policy.delay(attempt, previous)
                if wait is None or self.now() + wait >= deadline:
                    break
                previous = wait
                await asyncio.sleep(wait)
                continue
            except EtcdError:
                break
            policy.record_result(True)
            ok = True
            break
        self.records.append(OperationRecord(start, self.now(), ok, attempts))

    async def herd_write(self, index: int, policy: RetryPolicy) -> None:
        """Increment one shared counter: read it, write it back if unchanged (optimistic
        concurrency, as in AWS's backoff experiment); a conflict or failure retries
        after the policy's wait, until the policy gives up or the deadline passes."""
        client = self.clients[index]
        key = b"/bench/herd"
        deadline = self.now() + self.cfg.wall(self.cfg.op_timeout)
        policy.record_call()
        attempt = 0
        previous = 0.0
        while True:
            attempt += 1
            try:
                timeout = min(self.cfg.wall(self.cfg.attempt_timeout), deadline - self.now())
                if timeout <= 0:
                    break
                self.herd_sends.append(self.now())
                reply = await client.get(key, timeout=timeout)
                kv = reply.kvs[0] if reply.kvs else None
                self.herd_sends.append(self.now())
                txn = await client.txn(
                    [
                        rpc_pb2.Compare(
                            key=key,
                            result=rpc_pb2.Compare.EQUAL,
                            target=rpc_pb2.Compare.MOD,
                            mod_revision=kv.mod_revision if kv else 0,
                        )
                    ],
                    [
                        rpc_pb2.RequestOp(
                            request_put=rpc_pb2.PutRequest(
                                key=key, value=str(int(kv.value) + 1 if kv else 1).encode()
                            )
                        )
                    ],
                    timeout=timeout,
                )
                if txn.succeeded:
                    policy.record_result(True)
                    self.herd_done.append(self.now())
                    return
            except (ContextError, ClusterUnavailableError):
                pass
            except EtcdError:
                break
            policy.record_result(False)
            wait = policy.delay(attempt, previous)
            if wait is None or self.now() + wait >= deadline:
                break
            previous = wait
            await asyncio.sleep(wait)
        self.herd_done.append(None)

    async def _read(self, client: EtcdClient, key: bytes, timeout: float) -> None:
        self.sends.append(self.now())
        reply = await client.get(key, timeout=timeout)
        if reply.kvs:
            self.revisions[key] = reply.kvs[0].mod_revision

    async def _write(self, client: EtcdClient, key: bytes, timeout: float) -> None:
        self.sends.append(self.now())
        known = self.revisions.get(key, 0)
        reply = await client.txn(
            [
                rpc_pb2.Compare(
                    key=key,
                    result=rpc_pb2.Compare.EQUAL,
                    target=rpc_pb2.Compare.MOD,
                    mod_revision=known,
                )
            ],
            [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=b"v"))],
            [rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))],
            timeout=timeout,
        )
        if reply.succeeded:
            self.revisions[key] = reply.header.revision
        else:
            kvs = reply.responses[0].response_range.kvs
            self.revisions[key] = kvs[0].mod_revision if kvs else 0

    async def _hedged_read(self, index: int, key: bytes, timeout: float) -> int:
        """Reads sent (1 or 2); raises HedgeFailed when both copies failed.

        The hedge goes to the next client (which starts on another member) after
        ``HEDGE_DELAY``, or at once when the first copy fails sooner.
        """
        started = self.now()
        copies = [asyncio.create_task(self._read(self.clients[index], key, timeout))]

        def won() -> bool:
            return any(c.done() and not c.cancelled() and c.exception() is None for c in copies)

        try:
            await asyncio.wait(copies, timeout=self.cfg.wall(HEDGE_DELAY))
            if won():
                return 1
            left = max(timeout - (self.now() - started), 0.001)
            other = self.clients[(index + 1) % len(self.clients)]
            copies.append(asyncio.create_task(self._read(other, key, left)))
            pending = {c for c in copies if not c.done()}
            while pending and not won():
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if won():
                return 2
        finally:
            for copy in copies:
                copy.cancel()
            # Also collects the losing copy's error, so none goes unretrieved.
            outcomes = await asyncio.gather(*copies, return_exceptions=True)
        raise HedgeFailed(f"both copies failed; last: {outcomes[-1]}", attempts=2)


class HedgeFailed(ContextError):
    """Both copies of a hedged read failed; ``attempts`` RPCs were sent."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


async def run_one(
    cfg: BenchConfig,
    strategy: Strategy,
    fault: _Fault,
    proxy: FaultProxy,
    seed: int,
) -> RunResult:
    """One strategy under one fault; the cluster must be healthy on entry."""
    rng = random.Random(seed)
    addresses = proxy.addresses
    config = ClientConfig(seed=seed).scaled(cfg.time_scale)
    clients = [
        EtcdClient(
            addresses[i % len(addresses) :] + addresses[: i % len(addresses)],
            config,
            retry=NoRetry(),
            name=f"bench{i}",
        )
        for i in range(cfg.clients)
    ]
    policies = [
        strategy.policy(seed * 1000 + i, cfg.time_scale, MAX_ATTEMPTS) for i in range(cfg.clients)
    ]
    duration = cfg.wall(cfg.duration)
    fault_start = duration / 3
    short = SHORT_FAULTS.get(fault.kind)
    fault_end = (
        2 * duration / 3 if short is None else fault_start + min(cfg.wall(short), duration / 3)
    )
    loop = asyncio.get_running_loop()
    work = _Workload(cfg, strategy, clients, policies, rng, loop.time())
    keys = [f"/bench/key{k:03d}".encode() for k in range(cfg.keys)]
    tasks: set[asyncio.Task[None]] = set()
    fault.mark_run_start()

    async def timeline() -> tuple[float, float]:
        await asyncio.sleep(max(0.0, fault_start - work.now()))
        started = work.now()
        await fault.start(started)
        if fault.kind in HERD_FAULTS:
            for index in range(cfg.clients):
                # Bounded by the operation deadline, not an attempt count, as in AWS's runs.
                herd_policy = strategy.policy(seed * 1000 + 500 + index, cfg.time_scale, 1000)
                spawn(work.herd_write(index, herd_policy))
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
        for client in clients:
            await client.close()
    records = [r for r in work.records if r.start < duration]
    result = summarize(
        strategy.name,
        records,
        duration=duration,
        fault_start=started,
        fault_end=ended,
        recovery_window=cfg.wall(cfg.recovery_window),
    )
    arrivals_before = sum(1 for r in records if r.start < started) / started
    arrivals_during = sum(1 for r in records if started <= r.start < ended) / (ended - started)
    raw = result.fault_rpc_rate_ratio
    per_op = None
    if raw is not None and arrivals_during > 0:
        per_op = raw / (arrivals_during / arrivals_before)
    herd = None
    if work.herd_done:
        done = [at for at in work.herd_done if at is not None]
        herd_bucket = cfg.wall(DISPERSION_BUCKET)
        herd_timeline = [0] * math.ceil(cfg.op_timeout / DISPERSION_BUCKET)
        for at in work.herd_sends:
            slot = math.floor((at - started) / herd_bucket)
            if 0 <= slot < len(herd_timeline):
                herd_timeline[slot] += 1
        herd = HerdResult(
            clients=len(work.herd_done),
            succeeded=len(done),
            calls=len(work.herd_sends),
            finished_s=round(max(done) - started, 4) if done else None,
            dispersion=dispersion(
                work.herd_sends, started, started + cfg.wall(cfg.op_timeout), herd_bucket
            ),
            bucket=herd_bucket,
            timeline=herd_timeline,
        )
    bucket = duration / 60
    sent = [0] * 60
    for at in work.sends:
        if at < duration:
            sent[min(59, int(at / bucket))] += 1
    return RunResult(
        fault.kind,
        dataclasses.replace(result, fault_rpc_rate_ratio=per_op),
        raw,
        started,
        ended,
        bucket,
        sent,
        dispersion(work.sends, started, ended, cfg.wall(DISPERSION_BUCKET)),
        herd,
    )


def dispersion(times: Sequence[float], start: float, end: float, bucket: float) -> float | None:
    """Index of dispersion (variance / mean) of event counts per ``bucket`` in [start, end)."""
    slots = int((end - start) / bucket)
    if slots < 2:
        return None
    counts = [0] * slots
    for at in times:
        slot = math.floor((at - start) / bucket)
        if 0 <= slot < slots:
            counts[slot] += 1
    mean = sum(counts) / slots
    if mean == 0:
        return None
    variance = sum((c - mean) ** 2 for c in counts) / (slots - 1)
    return round(variance / mean, 3)


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
                progress(f"{kind:>9} {name:<13} {_row(run.result)}")
    return results


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row(r: StrategyResult) -> str:
    ok = 100 * r.succeeded / r.operations if r.operations else 0.0
    return (
        f"goodput {r.goodput:7.1f}/s  ok {ok:5.1f}%  p50 {_fmt(r.p50_ms):>7} ms  "
        f"p99 {_fmt(r.p99_ms):>7} ms  amp {_fmt(r.amplification, 2):>5}  "
        f"recovery {_fmt(r.recovery_s, 2):>5} s  storm {'yes' if r.storm else 'no'}"
    )


def table(results: Sequence[RunResult]) -> str:
    header = (
        f"{'fault':<9} {'strategy':<13} {'goodput/s':>9} {'ok%':>6} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'amp':>5} {'recov s':>7} {'rpc x':>6} {'disp':>6} storm"
    )
    lines = [header, "-" * len(header)]
    for run in results:
        r = run.result
        ok = 100 * r.succeeded / r.operations if r.operations else 0.0
        lines.append(
            f"{run.fault:<9} {r.strategy:<13} {r.goodput:9.1f} {ok:6.1f} "
            f"{_fmt(r.p50_ms):>8} {_fmt(r.p99_ms):>8} {_fmt(r.amplification, 2):>5} "
            f"{_fmt(r.recovery_s, 2):>7} {_fmt(r.fault_rpc_rate_ratio, 2):>6} "
            f"{_fmt(run.dispersion, 2):>6} {'YES' if r.storm else 'no'}"
        )
    herds = [run for run in results if run.herd is not None]
    if herds:
        lines += [
            "",
            "herd at the outage's start: every client increments one shared counter "
            "(read + compare-guarded write)",
            f"{'strategy':<13} {'done':>7} {'RPCs':>6} {'RPCs/done':>9} {'finished s':>10} "
            f"{'disp':>6}",
        ]
        for run in herds:
            h = run.herd
            assert h is not None
            per = h.calls / h.succeeded if h.succeeded else None
            lines.append(
                f"{run.result.strategy:<13} {f'{h.succeeded}/{h.clients}':>7} {h.calls:6d} "
                f"{_fmt(per, 1):>9} {_fmt(h.finished_s, 2):>10} {_fmt(h.dispersion, 2):>6}"
            )
    return "\n".join(lines)


_COLOURS = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
)


def svg_plot(results: Sequence[RunResult]) -> str:
    """Per fault: goodput and amplification bars per strategy, and RPC attempts over time."""
    faults = list(dict.fromkeys(run.fault for run in results))
    strategies = list(dict.fromkeys(run.result.strategy for run in results))
    colour = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(strategies)}
    panel_w, panel_h, pad = 300, 170, 40
    width = 3 * (panel_w + pad) + pad
    rows = len(faults) + any(run.herd is not None for run in results)
    height = rows * (panel_h + 2 * pad) + 60
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for i, name in enumerate(strategies):
        x = pad + i * 105
        out.append(f'<rect x="{x}" y="12" width="10" height="10" fill="{colour[name]}"/>')
        out.append(f'<text x="{x + 14}" y="21">{name}</text>')

    def bars(x0: float, y0: float, title: str, values: list[tuple[str, float | None]]) -> None:
        top = max((v for _, v in values if v is not None), default=0.0) or 1.0
        out.append(f'<text x="{x0}" y="{y0 - 6}" font-weight="bold">{title}</text>')
        out.append(
            f'<line x1="{x0}" y1="{y0 + panel_h}" x2="{x0 + panel_w}" '
            f'y2="{y0 + panel_h}" stroke="#333"/>'
        )
        step = panel_w / max(1, len(values))
        for j, (name, value) in enumerate(values):
            h = 0.0 if value is None else value / top * (panel_h - 14)
            x = x0 + j * step + 2
            out.append(
                f'<rect x="{x:.1f}" y="{y0 + panel_h - h:.1f}" width="{step - 4:.1f}" '
                f'height="{h:.1f}" fill="{colour[name]}"/>'
            )
            label = "n/a" if value is None else f"{value:.3g}"
            out.append(
                f'<text x="{x + (step - 4) / 2:.1f}" y="{y0 + panel_h - h - 3:.1f}" '
                f'text-anchor="middle" font-size="9">{label}</text>'
            )

    def curves(
        x0: float,
        y0: float,
        title: str,
        series: list[tuple[str, list[int]]],
        bucket: float,
        shade: tuple[float, float] | None,
    ) -> None:
        out.append(f'<text x="{x0}" y="{y0 - 6}" font-weight="bold">{title}</text>')
        if not series:
            return
        top = max((max(counts) / bucket for _, counts in series if counts), default=1.0) or 1.0
        slots = len(series[0][1])
        if shade is not None:
            total = bucket * slots
            out.append(
                f'<rect x="{x0 + shade[0] / total * panel_w:.1f}" y="{y0}" '
                f'width="{(shade[1] - shade[0]) / total * panel_w:.1f}" height="{panel_h}" '
                'fill="#eee"/>'
            )
        out.append(
            f'<text x="{x0 + panel_w}" y="{y0 + 10}" text-anchor="end" font-size="9">'
            f"peak {top:.0f}/s</text>"
        )
        for name, counts in series:
            points = " ".join(
                f"{x0 + (k + 0.5) / slots * panel_w:.1f},"
                f"{y0 + panel_h - count / bucket / top * panel_h:.1f}"
                for k, count in enumerate(counts)
            )
            out.append(
                f'<polyline points="{points}" fill="none" stroke="{colour[name]}" '
                'stroke-width="1.2"/>'
            )
        out.append(
            f'<line x1="{x0}" y1="{y0 + panel_h}" x2="{x0 + panel_w}" '
            f'y2="{y0 + panel_h}" stroke="#333"/>'
        )

    for row, kind in enumerate(faults):
        runs = [run for run in results if run.fault == kind]
        y0 = 60 + row * (panel_h + 2 * pad) + pad
        bars(
            pad,
            y0,
            f"{kind}: goodput (ok ops/s)",
            [(r.result.strategy, r.result.goodput) for r in runs],
        )
        bars(
            2 * pad + panel_w,
            y0,
            f"{kind}: RPCs per successful op",
            [(r.result.strategy, r.result.amplification) for r in runs],
        )
        fs, fe = runs[0].fault_start, runs[0].fault_end
        curves(
            3 * pad + 2 * panel_w,
            y0,
            f"{kind}: RPCs/s over the run",
            [(r.result.strategy, r.sent) for r in runs],
            runs[0].bucket,
            (fs, fe),
        )
    herds = [(r.result.strategy, r.herd) for r in results if r.herd is not None]
    if herds:
        y0 = 60 + len(faults) * (panel_h + 2 * pad) + pad
        bars(
            pad,
            y0,
            "outage herd: increments done (of each client's one)",
            [(name, float(h.succeeded)) for name, h in herds],
        )
        bars(
            2 * pad + panel_w,
            y0,
            "outage herd: RPCs per increment done",
            [(name, h.calls / h.succeeded if h.succeeded else None) for name, h in herds],
        )
        curves(
            3 * pad + 2 * panel_w,
            y0,
            "outage herd: RPCs/s from the outage's start",
            # Immediate retry would flatten every other curve; it has its own bars.
            [
                (name, h.timeline)
                for name, h in herds
                if h.calls > h.clients and name != "immediate"
            ],
            herds[0][1].bucket,
            None,
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_outputs(cfg: BenchConfig, results: Sequence[RunResult], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "config": dataclasses.asdict(cfg),
        "strategies": {name: STRATEGIES[name].description for name in cfg.strategies},
        "faults": {name: FAULTS[name] for name in cfg.faults},
        "runs": [run.as_json() for run in results],
    }
    (out / "bench.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "bench.svg").write_text(svg_plot(results))


def _names(known: Sequence[str], what: str, singular: str) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(part.strip() for part in text.split(",") if part.strip())
        if not names:
            raise argparse.ArgumentTypeError(f"no {what} given")
        for name in names:
            if name not in known:
                raise argparse.ArgumentTypeError(
                    f"unknown {singular} {name!r} (known: {', '.join(known)})"
                )
        return names

    return parse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="benchmarks against a real local cluster",
        description="Benchmarks that run against a real local etcd cluster.",
    )
    kinds = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    strategies = "; ".join(f"{s.name}: {s.description}" for s in STRATEGIES.values())
    faults = "; ".join(f"{name}: {text}" for name, text in FAULTS.items())
    retries = kinds.add_parser(
        "retries",
        help="compare client retry strategies under the same seeded faults",
        description=(
            "Start a local etcd cluster behind the fault proxy and, for each fault and "
            "each strategy, run the same open-loop workload (seeded Poisson arrivals over "
            "many clients; reads and compare-guarded writes) for --duration: the fault "
            "starts after a third of it and lasts a third (outages: 2 s). Prints a "
            "table and writes bench.json and bench.svg to --out. "
            f"Strategies: {strategies}. Faults: {faults}. When the outage starts, every "
            "client also begins one increment of a shared counter (read, then a "
            "compare-guarded write, retried until the deadline): the 'herd', AWS's "
            "backoff-and-jitter experiment."
        ),
        epilog=(
            "Columns: goodput (ok ops/s), ok%, p50/p99 of successful ops, amp (RPCs per "
            "success), recov (s after the fault until 2 s x scale pass without a failure), "
            "rpc x (RPCs per arriving op during the fault over before), disp (variance/mean "
            "of RPCs per 50 ms x scale: 1 = independent, more = bunched), storm (rpc x "
            "> 1.2). Example: etcdlab bench retries --faults outage --strategies "
            "exponential,full-jitter --duration 20"
        ),
    )
    retries.add_argument(
        "--time-scale",
        type=positive_float,
        default=0.25,
        help="multiply every duration (run, timeouts, backoff, etcd timings) (default 0.25)",
    )
    retries.add_argument(
        "--seed", type=int, default=0, help="seed of everything random (default 0)"
    )
    retries.add_argument(
        "--duration",
        type=positive_float,
        default=24.0,
        help="seconds per run before scaling (default 24: 6 s of wall time at scale 0.25)",
    )
    retries.add_argument(
        "--rate",
        type=positive_float,
        default=100.0,
        help="operations per wall second (default 100)",
    )
    retries.add_argument("--clients", type=positive_int, default=16, help="clients (default 16)")
    retries.add_argument(
        "--strategies",
        type=_names(tuple(STRATEGIES), "strategies", "strategy"),
        default=tuple(STRATEGIES),
        help=f"comma-separated subset of: {', '.join(STRATEGIES)} (default all)",
    )
    retries.add_argument(
        "--faults",
        type=_names(tuple(FAULTS), "faults", "fault"),
        default=tuple(FAULTS),
        help=f"comma-separated subset of: {', '.join(FAULTS)} (default all)",
    )
    retries.add_argument(
        "--out",
        type=Path,
        default=Path("bench-retries"),
        help="output directory (default bench-retries)",
    )
    retries.set_defaults(handler=run_retries)


def run_retries(args: argparse.Namespace) -> int:
    cfg = BenchConfig(
        time_scale=args.time_scale,
        seed=args.seed,
        duration=args.duration,
        rate=args.rate,
        clients=args.clients,
        strategies=args.strategies,
        faults=args.faults,
    )
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} exists and is not a directory")

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    results = stopping.run(run_bench(cfg, progress))
    print(table(results))
    write_outputs(cfg, results, args.out)
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.svg'}")
    return 0
