"""N client-go electors against a real cluster, each on its own connection.

Candidate ``i`` prefers member ``i % members``: a connection factory decides
whether it can fail over to the others (``rotating``), is stuck with that one
member (``pinned``), or reaches it through its own fault proxy (``proxied``),
so a fault on one member or one link cuts off those candidates and nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from emulator.client import EtcdClient
from emulator.client_config import ClientConfig
from emulator.clock import MonotonicClock
from emulator.cluster import LocalCluster
from emulator.election.config import LeaderElectionConfig
from emulator.election.elector import LeaderCallbacks, LeaderElector
from emulator.election.lock import EtcdLeaseLock
from emulator.election.safety import SafetyChecker
from proxy.link import ProxyLink


@dataclass
class Connection:
    client: EtcdClient
    link: ProxyLink | None = None


ConnectionFactory = Callable[[LocalCluster, int, float], AbstractAsyncContextManager[Connection]]


def preferred_first(cluster: LocalCluster, member: int) -> list[str]:
    return cluster.endpoints[member:] + cluster.endpoints[:member]


@contextlib.asynccontextmanager
async def rotating(
    cluster: LocalCluster, member: int, time_scale: float
) -> AsyncIterator[Connection]:
    """Prefers ``member``, fails over to the others like the apiserver's client."""
    config = ClientConfig().scaled(time_scale)
    async with EtcdClient(preferred_first(cluster, member), config, name=f"m{member}") as client:
        yield Connection(client)


@contextlib.asynccontextmanager
async def pinned(
    cluster: LocalCluster, member: int, time_scale: float
) -> AsyncIterator[Connection]:
    """Knows one member only: when it fails, this candidate is cut off."""
    config = ClientConfig().scaled(time_scale)
    async with EtcdClient([cluster.endpoints[member]], config, name=f"m{member}") as client:
        yield Connection(client)


@contextlib.asynccontextmanager
async def proxied(
    cluster: LocalCluster, member: int, time_scale: float
) -> AsyncIterator[Connection]:
    """Reaches one member through a link of its own (faults hit only this candidate)."""
    upstream = cluster.members[member]
    config = ClientConfig().scaled(time_scale)
    async with (
        ProxyLink(
            f"to-{upstream.name}",
            (upstream.host, upstream.client_port),
            time_scale=time_scale,
            seed=member,
        ) as link,
        EtcdClient([f"{link.address[0]}:{link.address[1]}"], config) as client,
    ):
        yield Connection(client, link)


@dataclass
class Candidate:
    identity: str
    member: int
    elector: LeaderElector
    connection: Connection
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
    time_scale: float,
    connect: ConnectionFactory = rotating,
    candidates: int = 5,
    seed: int = 1,
) -> AsyncIterator[Election]:
    """Runs the candidates until the block ends, then cancels them all."""
    clock = MonotonicClock()
    checker = SafetyChecker(clock)
    made: list[Candidate] = []
    async with contextlib.AsyncExitStack() as stack:
        for index in range(candidates):
            member = index % len(cluster.members)
            connection = await stack.enter_async_context(connect(cluster, member, time_scale))
            identity = f"candidate-{index}"
            lock = EtcdLeaseLock(
                connection.client,
                name=config.name,
                namespace=config.namespace,
                timeout=config.renew_deadline,
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
            made.append(Candidate(identity, member, elector, connection, leaders_seen=seen))
        for candidate in made:
            candidate.task = asyncio.create_task(candidate.elector.run())
        try:
            yield Election(cluster, config, checker, made)
        finally:
            tasks = [c.task for c in made if c.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
