"""Watches across member failures: every write seen exactly once, in order."""

from __future__ import annotations

import asyncio

import pytest

from etcdlab.client.config import ClientConfig
from etcdlab.client.etcd import EtcdClient, create_revision_is, prefix_end, put_op
from etcdlab.client.retry import ExponentialFullJitter
from etcdlab.cluster.local import LocalCluster, ServerFlags
from etcdlab.protos import kv_pb2, rpc_pb2
from tests.waiting import eventually

CONFIG = ClientConfig().scaled(0.1)
WRITES = 150


def create_once(key: bytes, value: bytes) -> tuple[list[rpc_pb2.Compare], list[rpc_pb2.RequestOp]]:
    """A put guarded by "key does not exist": safe to retry, never applied twice."""
    return [create_revision_is(key, 0)], [put_op(key, value)]


@pytest.mark.parametrize("fault", ["kill", "pause"])
async def test_watch_resumes_across_member_failure(cluster: LocalCluster, fault: str) -> None:
    prefix = f"/watch/resume/{fault}/".encode()
    endpoints = cluster.endpoints
    # The writer prefers another member and is patient through an election.
    patient = ExponentialFullJitter(0.01, 0.2, max_attempts=100, seed=1)
    async with (
        EtcdClient(endpoints, CONFIG, name="watcher") as watcher,
        EtcdClient(endpoints[1:] + endpoints[:1], CONFIG, retry=patient, name="writer") as writer,
    ):
        watch = watcher.watch(prefix, range_end=prefix_end(prefix))
        await asyncio.wait_for(watch.created.wait(), 5)
        assert watch.endpoint == endpoints[0]

        async def write_all() -> None:
            for index in range(WRITES):
                await writer.txn(*create_once(prefix + b"%05d" % index, b"%d" % index))
                if index == WRITES // 3:
                    (cluster.kill if fault == "kill" else cluster.pause)(0)

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
        assert watch.resumes >= 1 and watch.endpoint != endpoints[0]
        if fault == "pause":
            cluster.resume(0)


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


async def test_watch_survives_loss_of_quorum(cluster: LocalCluster) -> None:
    prefix = b"/watch/quorum/"
    patient = ExponentialFullJitter(0.01, 0.2, max_attempts=100, seed=2)
    async with (
        EtcdClient(cluster.endpoints, CONFIG, name="watcher") as watcher,
        EtcdClient(cluster.endpoints, CONFIG, retry=patient, name="writer") as writer,
    ):
        watch = watcher.watch(prefix, range_end=prefix_end(prefix))
        await asyncio.wait_for(watch.created.wait(), 5)
        for index in range(10):
            await writer.txn(*create_once(prefix + b"%02d" % index, b"x"))
        cluster.kill(1)
        cluster.kill(2)
        # Member 0 loses its leader and cancels the leader-requiring stream.
        await eventually(
            lambda: watcher.endpoints_state.endpoints[0].failing,
            10,
            "the watch to be canceled for lack of a leader",
        )
        assert "leader" in watcher.endpoints_state.endpoints[0].last_error
        await cluster.arestart(1)
        await cluster.arestart(2)
        for index in range(10, 20):
            await writer.txn(*create_once(prefix + b"%02d" % index, b"x"))
        seen: list[bytes] = []

        async def read_all() -> None:
            async for batch in watch:
                seen.extend(event.kv.key for event in batch.events)
                if len(seen) >= 20:
                    return

        await asyncio.wait_for(read_all(), 30)
        await watch.cancel()
        assert seen == [prefix + b"%02d" % index for index in range(20)]
        assert watch.resumes >= 1
