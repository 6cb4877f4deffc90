"""Watches across member failures: every write seen exactly once, in order; a
member without a leader ends the watch (clientv3's WithRequireLeader)."""

from __future__ import annotations

import asyncio

import pytest

from etcdlab.client.config import ClientConfig
from etcdlab.client.errors import ClusterUnavailableError
from etcdlab.client.etcd import EtcdClient, create_revision_is, prefix_end, put_op
from etcdlab.client.retry import ExponentialFullJitter
from etcdlab.cluster.local import LocalCluster, ServerFlags
from etcdlab.protos import kv_pb2

CONFIG = ClientConfig().scaled(0.1)
WRITES = 150


async def create_once(client: EtcdClient, key: bytes, value: bytes) -> None:
    """A put guarded by "key does not exist": safe to retry, never applied twice,
    so the writer marks it idempotent."""
    await client.txn([create_revision_is(key, 0)], [put_op(key, value)], idempotent=True)


@pytest.mark.parametrize("fault", ["kill", "pause"])
async def test_watch_resumes_across_member_failure(cluster: LocalCluster, fault: str) -> None:
    prefix = f"/watch/resume/{fault}/".encode()
    endpoints = cluster.endpoints
    # The writer is patient through an election.
    patient = ExponentialFullJitter(0.01, 0.2, max_attempts=100, seed=1)
    async with (
        EtcdClient(endpoints, CONFIG, name="watcher") as watcher,
        EtcdClient(endpoints, CONFIG, retry=patient, name="writer") as writer,
    ):
        watch = watcher.watch(prefix, range_end=prefix_end(prefix))
        await asyncio.wait_for(watch.created.wait(), 5)
        assert watch.endpoint is not None
        watched = endpoints.index(watch.endpoint)

        async def write_all() -> None:
            for index in range(WRITES):
                await create_once(writer, prefix + b"%05d" % index, b"%d" % index)
                if index == WRITES // 3:
                    (cluster.kill if fault == "kill" else cluster.pause)(watched)

        seen: list[kv_pb2.Event] = []

        async def read_all() -> None:
            async for batch in watch:
                seen.extend(batch.events)
                if len(seen) >= WRITES:
                    return

        keepalive = CONFIG.keepalive_time + CONFIG.keepalive_timeout
        await asyncio.wait_for(asyncio.gather(write_all(), read_all()), 30 + keepalive)
        await watch.cancel()
        keys = [event.kv.key for event in seen]
        assert keys == [prefix + b"%05d" % index for index in range(WRITES)]
        assert all(event.kv.version == 1 for event in seen)
        revisions = [event.kv.mod_revision for event in seen]
        assert revisions == sorted(set(revisions))
        assert watch.resumes >= 1 and watch.endpoint != endpoints[watched]
        if fault == "pause":
            cluster.resume(watched)


async def test_a_watch_from_now_resumes_from_its_creation_before_any_event(
    cluster: LocalCluster,
) -> None:
    """A watch from "now" (start revision 0) that fails before its first event
    resumes from the revision it was created at, not from a new "now": writes
    made while its member was silent still arrive."""
    prefix = b"/watch/now/"
    # Watching through the followers only: pausing one leaves quorum and a
    # leader, so the writes below need no election.
    leader = cluster.wait_leader()
    followers = [e for i, e in enumerate(cluster.endpoints) if i != leader]
    async with EtcdClient(followers, CONFIG, name="watcher") as watcher:
        watch = watcher.watch(prefix, range_end=prefix_end(prefix))
        await asyncio.wait_for(watch.created.wait(), 5)
        assert watch.endpoint is not None and watch.next_revision > 0
        watched = cluster.endpoints.index(watch.endpoint)
        others = [e for e in cluster.endpoints if e != watch.endpoint]
        # Paused, the member holds the stream until keepalive closes it: these
        # writes land (on the others) before the watch resumes elsewhere.
        cluster.pause(watched)
        try:
            async with EtcdClient(others, CONFIG, name="writer") as writer:
                for index in range(5):
                    await writer.put(prefix + b"%d" % index, b"x")
            assert watch.resumes == 0, "resumed before the writes: nothing is tested"
            seen: list[bytes] = []

            async def read_all() -> None:
                async for batch in watch:
                    seen.extend(event.kv.key for event in batch.events)
                    if len(seen) >= 5:
                        return

            keepalive = CONFIG.keepalive_time + CONFIG.keepalive_timeout
            await asyncio.wait_for(read_all(), keepalive + 10)
        finally:
            cluster.resume(watched)
        await watch.cancel()
    assert seen == [prefix + b"%d" % index for index in range(5)]
    assert watch.resumes >= 1 and watch.endpoint != cluster.endpoints[watched]


async def test_progress_notifications_are_bookmarks() -> None:
    flags = ServerFlags(extra_args=("--experimental-watch-progress-notify-interval=200ms",))
    async with (
        LocalCluster(1, flags=flags) as single,
        EtcdClient(single.endpoints, CONFIG) as client,
    ):
        key = b"/watch/progress"
        put = await client.put(key, b"1")
        watch = client.watch(key, start_revision=put.header.revision, progress_notify=True)
        first = await asyncio.wait_for(watch.__anext__(), 5)
        assert [e.kv.value for e in first.events] == [b"1"] and not first.is_progress_notify
        other = await client.put(b"/watch/elsewhere", b"x")
        bookmark = await asyncio.wait_for(watch.__anext__(), 5)
        assert bookmark.is_progress_notify and bookmark.events == ()
        assert bookmark.revision >= other.header.revision
        assert watch.next_revision == bookmark.revision + 1
        await watch.cancel()


async def test_watch_ends_when_its_member_loses_the_leader(cluster: LocalCluster) -> None:
    prefix = b"/watch/quorum/"
    patient = ExponentialFullJitter(0.01, 0.2, max_attempts=100, seed=2)
    async with (
        EtcdClient(cluster.endpoints, CONFIG, name="watcher") as watcher,
        EtcdClient(cluster.endpoints, CONFIG, retry=patient, name="writer") as writer,
    ):
        watch = watcher.watch(prefix, range_end=prefix_end(prefix))
        await asyncio.wait_for(watch.created.wait(), 5)
        for index in range(10):
            await create_once(writer, prefix + b"%02d" % index, b"x")
        seen: list[bytes] = []
        async for batch in watch:
            seen.extend(event.kv.key for event in batch.events)
            if len(seen) == 10:
                break
        # Member 0 alone has no leader: whichever member the stream was on, it
        # ends up on member 0, which ends it ("etcdserver: no leader").
        cluster.kill(1)
        cluster.kill(2)
        with pytest.raises(ClusterUnavailableError, match="no leader"):
            await asyncio.wait_for(watch.__anext__(), 30)
        assert seen == [prefix + b"%02d" % index for index in range(10)]
        # The caller watches again from where it was, as the apiserver does.
        await cluster.arestart(1)
        await cluster.arestart(2)
        for index in range(10, 20):
            await create_once(writer, prefix + b"%02d" % index, b"x")
        again = watcher.watch(
            prefix, range_end=prefix_end(prefix), start_revision=watch.next_revision
        )

        async def read_all() -> None:
            async for batch in again:
                seen.extend(event.kv.key for event in batch.events)
                if len(seen) >= 20:
                    return

        await asyncio.wait_for(read_all(), 30)
        await again.cancel()
        assert seen == [prefix + b"%02d" % index for index in range(20)]
