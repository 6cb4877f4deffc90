"""N client-go electors against a real cluster, each on its own connection.

Candidate ``i`` talks to member ``i % members`` first, so a fault on one member
cuts off the candidates that prefer it and nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import grpc

from emulator.clock import MonotonicClock
from emulator.cluster import LocalCluster
from emulator.election.config import LeaderElectionConfig
from emulator.election.elector import LeaderCallbacks, LeaderElector
from emulator.election.lock import EtcdLeaseLock, TxnKV
from emulator.election.safety import SafetyChecker
from tests.etcd_kv import StubKV

KVFactory = Callable[[LocalCluster, int], AbstractAsyncContextManager[TxnKV]]


@contextlib.asynccontextmanager
async def pinned_kv(cluster: LocalCluster, member: int) -> AsyncIterator[TxnKV]:
    """A connection to one member only: when it fails, this candidate is cut off."""
    async with grpc.aio.insecure_channel(cluster.endpoints[member]) as channel:
        yield StubKV(channel)


@dataclass
class Candidate:
    identity: str
    member: int
    elector: LeaderElector
    lock: EtcdLeaseLock
    task: asyncio.Task[None] | None = None
    leaders_seen: list[str] = field(default_factory=list)


@dataclass
class Election:
    cluster: LocalCluster
    config: LeaderElectionConfig
    checker: SafetyChecker
    candidates: list[Candidate]

    def leader(self) -> Candidate | None:
        leading = [c for c in self.candidates if c.elector.leading]
        return leading[0] if len(leading) == 1 else None


async def _lead_forever() -> None:
    await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def election(
    cluster: LocalCluster,
    config: LeaderElectionConfig,
    *,
    candidates: int = 5,
    seed: int = 1,
    kv_factory: KVFactory = pinned_kv,
) -> AsyncIterator[Election]:
    clock = MonotonicClock()
    checker = SafetyChecker(clock)
    made: list[Candidate] = []
    async with contextlib.AsyncExitStack() as stack:
        for index in range(candidates):
            member = index % len(cluster.members)
            kv = await stack.enter_async_context(kv_factory(cluster, member))
            identity = f"candidate-{index}"
            lock = EtcdLeaseLock(
                kv, name=config.name, namespace=config.namespace, timeout=config.renew_deadline
            )
            seen: list[str] = []
            elector = LeaderElector(
                dataclasses.replace(config, identity=identity),
                lock,
                LeaderCallbacks(_lead_forever, lambda: None, seen.append),
                clock=clock,
                rng=random.Random(seed * 1000 + index),
                listener=checker,
            )
            made.append(Candidate(identity, member, elector, lock, leaders_seen=seen))
        for candidate in made:
            candidate.task = asyncio.create_task(candidate.elector.run())
        try:
            yield Election(cluster, config, checker, made)
        finally:
            tasks = [c.task for c in made if c.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
