"""Several candidates against a local cluster, each on its own connection: client-go
electors (:func:`contest`) or etcd-native campaigners (:func:`campaign`).

Candidate ``i`` belongs to member ``i % members``: a connection factory decides
whether it uses every member (``rotating``: round-robin, like the apiserver's
client), is stuck with that one member (``pinned``), or reaches it through a
fault proxy link of its own (``proxied``), so a fault on one member or one link
cuts off those candidates and nobody else. Every candidate reports its beliefs
to one :class:`SafetyChecker`. Faults on the proxied candidates' links go
through ``faults``, a driver of those links by candidate identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from etcdlab.client.config import ClientConfig
from etcdlab.client.etcd import EtcdClient
from etcdlab.cluster.local import LocalCluster
from etcdlab.common.clock import MonotonicClock
from etcdlab.common.timescale import TimeScale
from etcdlab.election.concurrency import Election
from etcdlab.election.config import LeaderElectionConfig
from etcdlab.election.elector import LeaderCallbacks, LeaderElector
from etcdlab.election.lock import EtcdLeaseLock
from etcdlab.election.safety import SafetyChecker
from etcdlab.proxy.driver import LinkFaults
from etcdlab.proxy.link import ProxyLink


@dataclass
class Connection:
    client: EtcdClient
    link: ProxyLink | None = None


ConnectionFactory = Callable[[LocalCluster, int, float], AbstractAsyncContextManager[Connection]]


def preferred_first(cluster: LocalCluster, member: int) -> list[str]:
    """The cluster's endpoints, ``member``'s first."""
    return cluster.endpoints[member:] + cluster.endpoints[:member]


@contextlib.asynccontextmanager
async def rotating(
    cluster: LocalCluster, member: int, time_scale: float
) -> AsyncIterator[Connection]:
    """Every member, ``member``'s first (which only a sticky balancer would heed),
    calls spread over them like the apiserver's client's."""
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
            f"to-{upstream.name}", (upstream.host, upstream.client_port), seed=member
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
class Contest:
    cluster: LocalCluster
    config: LeaderElectionConfig
    checker: SafetyChecker
    candidates: list[Candidate]
    faults: LinkFaults  # the proxied candidates' links, by identity

    def leader(self) -> Candidate | None:
        """The one candidate that believes it leads (None if none or several)."""
        leading = [c for c in self.candidates if c.elector.leading]
        return leading[0] if len(leading) == 1 else None

    async def agreed_leader(self, timeout: float) -> Candidate:
        """Wait until one candidate leads and every candidate has seen it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            leader = self.leader()
            if leader is not None and all(
                c.leaders_seen[-1:] == [leader.identity] for c in self.candidates
            ):
                return leader
            if loop.time() > deadline:
                raise RuntimeError(f"candidates did not agree on a leader within {timeout:g}s")
            await asyncio.sleep(0.05)


async def _lead_forever() -> None:
    await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def contest(
    cluster: LocalCluster,
    config: LeaderElectionConfig,
    *,
    time_scale: float,
    connect: ConnectionFactory = rotating,
    candidates: int = 5,
    seed: int = 1,
) -> AsyncIterator[Contest]:
    """Runs the candidates until the block ends, then cancels them all.

    Candidate ``i`` is ``config`` with identity ``candidate-i``; its only work
    while leading is to lead.
    """
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
                timeout=config.request_timeout,
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
            links = {c.identity: c.connection.link for c in made if c.connection.link}
            yield Contest(cluster, config, checker, made, LinkFaults(links, TimeScale(time_scale)))
        finally:
            tasks = [c.task for c in made if c.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class Campaigner:
    identity: str
    member: int
    connection: Connection
    election: Election
    task: asyncio.Task[None]


@dataclass
class Campaign:
    cluster: LocalCluster
    checker: SafetyChecker
    campaigners: list[Campaigner]
    faults: LinkFaults  # the proxied campaigners' links, by identity

    def leader(self) -> Campaigner | None:
        """The one campaigner that believes it leads (None if none or several)."""
        leading = [c for c in self.campaigners if c.election.leading]
        return leading[0] if len(leading) == 1 else None

    async def agreed_leader(self, timeout: float) -> Campaigner:
        """Wait until one campaigner leads (the others wait on a watch)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (leader := self.leader()) is None:
            if loop.time() > deadline:
                raise RuntimeError(f"no campaigner elected within {timeout:g}s")
            await asyncio.sleep(0.05)
        return leader


@contextlib.asynccontextmanager
async def campaign(
    cluster: LocalCluster,
    *,
    ttl: int,
    time_scale: float,
    connect: ConnectionFactory = rotating,
    candidates: int = 5,
) -> AsyncIterator[Campaign]:
    """etcd-native candidates ``c0``, ``c1``, ... each campaigning with a ``ttl``
    second lease of its own; campaigns are cancelled when the block ends."""
    checker = SafetyChecker(MonotonicClock())
    prefix = f"/etcdlab/election/{uuid.uuid4().hex}".encode()
    made: list[Campaigner] = []
    async with contextlib.AsyncExitStack() as stack:
        try:
            for index in range(candidates):
                member = index % len(cluster.members)
                connection = await stack.enter_async_context(connect(cluster, member, time_scale))
                lease = await connection.client.grant_lease(ttl)
                identity = f"c{index}"
                election = Election(
                    connection.client, prefix, lease, identity=identity, listener=checker
                )
                task = asyncio.create_task(election.campaign(identity.encode()))
                made.append(Campaigner(identity, member, connection, election, task))
            links = {c.identity: c.connection.link for c in made if c.connection.link}
            yield Campaign(cluster, checker, made, LinkFaults(links, TimeScale(time_scale)))
        finally:
            for campaigner in made:
                campaigner.task.cancel()
            await asyncio.gather(*(c.task for c in made), return_exceptions=True)
