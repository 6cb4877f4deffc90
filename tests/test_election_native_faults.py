"""etcd-native Election under member faults: five candidates, each with its own
client preferring member i % 3 and able to fail over (the apiserver-like client).

A leader's belief ends when its lease's local deadline passes without an answered
keep-alive; etcd deletes its key only when the server-side lease expires, which
is never earlier, so the successor's campaign (a watch on the predecessor's
key) can only finish after the old leader stopped believing.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from emulator.client import EtcdClient
from emulator.clock import MonotonicClock
from emulator.cluster import LocalCluster
from emulator.election.concurrency import Election
from emulator.election.safety import FencedWriter, SafetyChecker
from proxy.faults import Blackhole, Fault, Loss
from tests.election_harness import Connection, ConnectionFactory, proxied, rotating
from tests.waiting import eventually

TIME_SCALE = 0.2
# etcd leases are whole seconds; 2 s is the shortest that survives a loaded machine.
TTL = 2
SLACK = 1.0


@dataclass
class Campaigner:
    identity: str
    member: int
    connection: Connection
    election: Election
    task: asyncio.Task[None]

    @property
    def client(self) -> EtcdClient:
        return self.connection.client


@contextlib.asynccontextmanager
async def campaigners(
    cluster: LocalCluster,
    checker: SafetyChecker,
    connect: ConnectionFactory,
    count: int = 5,
) -> AsyncIterator[list[Campaigner]]:
    prefix = f"/election/{uuid.uuid4().hex}".encode()
    made: list[Campaigner] = []
    async with contextlib.AsyncExitStack() as stack:
        for index in range(count):
            member = index % len(cluster.members)
            connection = await stack.enter_async_context(connect(cluster, member, TIME_SCALE))
            lease = await connection.client.grant_lease(TTL, timeout=5)
            identity = f"c{index}"
            election = Election(
                connection.client, prefix, lease, identity=identity, listener=checker
            )
            task = asyncio.create_task(election.campaign(identity.encode()))
            made.append(Campaigner(identity, member, connection, election, task))
        try:
            yield made
        finally:
            for campaigner in made:
                campaigner.task.cancel()
            await asyncio.gather(*(c.task for c in made), return_exceptions=True)


def leading(made: list[Campaigner]) -> Campaigner | None:
    leaders = [c for c in made if c.election.leading]
    return leaders[0] if len(leaders) == 1 else None


async def run_fault(cluster: LocalCluster, fault: str) -> None:
    checker = SafetyChecker(MonotonicClock())
    connect = proxied if fault == "blackhole" else rotating
    async with campaigners(cluster, checker, connect) as made:
        await eventually(lambda: leading(made) is not None, 10, "a first leader")
        old = leading(made)
        assert old is not None
        old_fence = old.election.fence()
        fault_at = checker.mark_fault(fault)
        link = old.connection.link
        blackhole: Fault | None = None
        if fault == "kill":
            cluster.kill(old.member)
        elif fault == "pause":
            cluster.pause(old.member)
        else:
            assert link is not None
            blackhole = link.add(Blackhole())
        try:
            lease = old.election.lease

            def decided() -> bool:
                # Kept: a keep-alive sent after the fault was answered.
                return not old.election.leading or lease.deadline > fault_at + TTL

            await eventually(decided, 3 * TTL + 10, "the old leader to lose or keep its lease")
            kept = old.election.leading
            if not kept:
                await eventually(
                    lambda: leading(made) not in (None, old), 3 * TTL + 10, "a new leader"
                )
                new = leading(made)
                assert new is not None
                # The deposed leader's write arrives late: over its own connection
                # once the blackhole lifts, else relayed by a live member.
                writer_client = new.client
                if link is not None and blackhole is not None:
                    link.remove(blackhole)
                    writer_client = old.client
                writer = FencedWriter(writer_client, old.identity, checker=checker, timeout=5)
                assert not await writer.put(old_fence, b"/fenced" + old_fence.key, b"stale")
        finally:
            if fault == "pause":
                cluster.resume(old.member)
        report = checker.report()
    assert report.overlaps == (), f"two leaders at once: {report.overlaps}"
    (failover,) = report.failovers
    print(f"\nnative election, {fault}: old leader {'kept' if kept else 'lost'} its lease", end="")
    if not kept:
        assert failover.since_fault is not None
        # The server forgets the lease at most TTL after the last keep-alive it saw
        # (before the fault), plus a raft election if the member led raft.
        assert failover.since_fault <= TTL + SLACK + 1
        assert report.stale_writes_blocked == 1 and report.stale_writes_accepted == 0
        print(
            f"; stepped down {failover.step_down_after_fault:.2f}s and successor elected "
            f"{failover.since_fault:.2f}s after the fault (TTL {TTL}s)",
            end="",
        )


async def test_kill_the_leaders_member(cluster: LocalCluster) -> None:
    await run_fault(cluster, "kill")


async def test_pause_the_leaders_member(cluster: LocalCluster) -> None:
    await run_fault(cluster, "pause")


async def test_blackhole_only_the_leaders_connection(cluster: LocalCluster) -> None:
    await run_fault(cluster, "blackhole")


async def test_thirty_percent_loss_on_the_leaders_member(cluster: LocalCluster) -> None:
    checker = SafetyChecker(MonotonicClock())
    async with campaigners(cluster, checker, proxied) as made:
        await eventually(lambda: leading(made) is not None, 10, "a first leader")
        old = leading(made)
        assert old is not None
        checker.mark_fault("loss 30%")
        for campaigner in made:
            if campaigner.member == old.member and campaigner.connection.link is not None:
                campaigner.connection.link.add(Loss(probability=0.3))
        # An observation window, not a wait for a condition.
        await asyncio.sleep(4 * TTL)
        report = checker.report()
    assert report.overlaps == (), f"two leaders at once: {report.overlaps}"
    print(
        f"\nnative election, 30% loss on the leader's member for {4 * TTL}s: "
        f"{report.transitions} transitions, {report.leaderless_seconds:.2f}s without leader"
    )
