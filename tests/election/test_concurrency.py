"""etcd-native Election (concurrency.Election semantics) against real etcd."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from etcdlab.client.etcd import EtcdClient, prefix_end
from etcdlab.cluster.local import LocalCluster
from etcdlab.common.clock import MonotonicClock
from etcdlab.election.concurrency import Election, LeaseLostError, NoLeaderError, NotLeaderError
from etcdlab.election.safety import FencedWriter, SafetyChecker
from tests.waiting import eventually


@contextlib.asynccontextmanager
async def candidates(
    cluster: LocalCluster, count: int, prefix: bytes, checker: SafetyChecker, ttl: int = 5
) -> AsyncIterator[list[tuple[EtcdClient, Election]]]:
    async with contextlib.AsyncExitStack() as stack:
        made = []
        for index in range(count):
            endpoints = cluster.endpoints[index:] + cluster.endpoints[:index]
            client = await stack.enter_async_context(EtcdClient(endpoints, name=f"c{index}"))
            lease = await client.grant_lease(ttl, timeout=5)
            made.append(
                (client, Election(client, prefix, lease, identity=f"c{index}", listener=checker))
            )
        yield made


def new_prefix() -> bytes:
    return f"/election/{uuid.uuid4().hex}".encode()


async def keys_under(client: EtcdClient, prefix: bytes) -> int:
    return (await client.get(prefix + b"/", range_end=prefix_end(prefix + b"/"))).count


async def test_queue_by_create_revision_and_hand_over_on_resign(
    shared_cluster: LocalCluster,
) -> None:
    prefix, checker = new_prefix(), SafetyChecker(MonotonicClock())
    async with candidates(shared_cluster, 3, prefix, checker) as made:
        (c0, first), (_, second), (_, third) = made
        with pytest.raises(NoLeaderError):
            await first.leader()
        await first.campaign(b"c0")
        assert first.leading and first.key.startswith(prefix + b"/")
        # Queue order is create order: let each key land before the next campaigns.
        waiting = asyncio.create_task(second.campaign(b"c1"))
        await eventually(lambda: _count_is(c0, prefix, 2), 5, "the second candidate queued")
        also_waiting = asyncio.create_task(third.campaign(b"c2"))
        await eventually(lambda: _count_is(c0, prefix, 3), 5, "the third candidate queued")
        assert not waiting.done() and not also_waiting.done()
        assert (await second.leader()).value == b"c0"
        old_fence = first.fence()
        await first.resign()
        assert not first.leading
        async with asyncio.timeout(5):
            await waiting
        assert second.leading and not also_waiting.done()
        assert second.rev > old_fence.revision  # the fencing token grows

        writer = FencedWriter(c0, checker=checker, timeout=5)
        assert not await writer.put(old_fence, prefix + b"-data", b"stale")
        with pytest.raises(NotLeaderError):
            first.fence()
        await second.resign()
        async with asyncio.timeout(5):
            await also_waiting
    report = checker.report()
    assert report.overlaps == () and report.transitions == 2
    assert (report.stale_writes_attempted, report.stale_writes_blocked) == (1, 1)


async def _count_is(client: EtcdClient, prefix: bytes, count: int) -> bool:
    return await keys_under(client, prefix) == count


async def test_observe_follows_leaders_and_proclaimed_values(
    shared_cluster: LocalCluster,
) -> None:
    prefix, checker = new_prefix(), SafetyChecker(MonotonicClock())
    async with candidates(shared_cluster, 3, prefix, checker) as made:
        (_, first), (_, second), (_, watcher) = made
        seen: list[bytes] = []
        observer = watcher.observe()

        async def collect() -> None:
            async for kv in observer:
                seen.append(kv.value)

        collecting = asyncio.create_task(collect())
        try:
            await first.campaign(b"first")
            await eventually(lambda: seen == [b"first"], 5, "the first leader observed")
            await first.proclaim(b"first, again")
            await eventually(lambda: seen[-1] == b"first, again", 5, "the proclaimed value")
            follower = asyncio.create_task(second.campaign(b"second"))
            await first.resign()
            async with asyncio.timeout(5):
                await follower
            await eventually(lambda: seen[-1] == b"second", 5, "the next leader observed")
            with pytest.raises(NotLeaderError):
                await first.proclaim(b"not mine")
        finally:
            collecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collecting
            await observer.aclose()


async def test_lost_lease_ends_leadership_and_elects_the_next(
    shared_cluster: LocalCluster,
) -> None:
    prefix, checker = new_prefix(), SafetyChecker(MonotonicClock())
    async with candidates(shared_cluster, 2, prefix, checker) as made:
        (c0, first), (_, second) = made
        await first.campaign(b"c0")
        follower = asyncio.create_task(second.campaign(b"c1"))
        await eventually(lambda: _count_is(c0, prefix, 2), 5, "both keys written")
        # As when keep-alives go unanswered: the owner's local deadline passes
        # first, then the server expires the lease and deletes its keys.
        first.lease._mark_lost("test: keep-alive deadline passed")
        assert not first.leading
        await first.lease.revoke()
        async with asyncio.timeout(5):
            await follower
        assert second.leading
    assert checker.report().overlaps == ()


async def test_cancelled_campaign_withdraws_its_key(shared_cluster: LocalCluster) -> None:
    prefix, checker = new_prefix(), SafetyChecker(MonotonicClock())
    async with candidates(shared_cluster, 2, prefix, checker) as made:
        (c0, first), (_, second) = made
        await first.campaign(b"c0")
        follower = asyncio.create_task(second.campaign(b"c1"))
        await eventually(lambda: _count_is(c0, prefix, 2), 5, "both keys written")
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower
        assert await keys_under(c0, prefix) == 1
        assert second.key == b"" and not second.leading


async def test_campaign_fails_when_the_lease_is_lost_while_waiting(
    shared_cluster: LocalCluster,
) -> None:
    prefix, checker = new_prefix(), SafetyChecker(MonotonicClock())
    async with candidates(shared_cluster, 2, prefix, checker) as made:
        (c0, first), (_, second) = made
        await first.campaign(b"c0")
        follower = asyncio.create_task(second.campaign(b"c1"))
        await eventually(lambda: _count_is(c0, prefix, 2), 5, "both keys written")
        second.lease._mark_lost("test: keep-alive deadline passed")
        with pytest.raises(LeaseLostError):
            async with asyncio.timeout(5):
                await follower
