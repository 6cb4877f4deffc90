"""EtcdClient against a healthy real cluster: KV, txn, leases, watch, the etcd checks."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from etcdlab.client.connection import ConnectivityState
from etcdlab.client.errors import CompactedError, ContextError, ResponseError
from etcdlab.client.etcd import (
    EtcdClient,
    delete_op,
    get_op,
    mod_revision_is,
    prefix_end,
    put_op,
    value_is,
)
from etcdlab.client.health import LIVEZ, NOT_ESTABLISHED, EtcdCheck
from etcdlab.client.watch import WatchBatch
from etcdlab.cluster.local import LocalCluster
from etcdlab.common.clock import FakeClock
from tests.waiting import eventually


def unique_key(prefix: str) -> bytes:
    return f"/test/client/{prefix}/{uuid.uuid4().hex}".encode()


def test_prefix_end() -> None:
    assert prefix_end(b"/a") == b"/b"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


async def test_put_get_delete_txn_status(shared_cluster: LocalCluster) -> None:
    async with EtcdClient(shared_cluster.endpoints) as client:
        key = unique_key("kv")
        put = await client.put(key, b"one", timeout=5)
        got = await client.get(key, timeout=5)
        assert [(kv.key, kv.value) for kv in got.kvs] == [(key, b"one")]
        assert got.kvs[0].mod_revision == put.header.revision
        swap = await client.txn(
            [mod_revision_is(key, put.header.revision), value_is(key, b"one")],
            [put_op(key, b"two")],
            [get_op(key)],
        )
        assert swap.succeeded
        again = await client.txn([mod_revision_is(key, put.header.revision)], [delete_op(key)])
        assert not again.succeeded
        listed = await client.get(key, range_end=prefix_end(key), serializable=True)
        assert listed.kvs[0].value in (b"one", b"two")
        deleted = await client.delete(key, prev_kv=True)
        assert deleted.deleted == 1 and deleted.prev_kvs[0].value == b"two"
        status = await client.status()
        assert status.header.member_id != 0
        assert client.stats.calls["put"] == 1 and client.stats.attempts >= 6
        assert client.stats.served.total() == client.stats.attempts
        # Every member is dialled in the background; the calls above need only one.
        await eventually(
            lambda: all(c.state is ConnectivityState.READY for c in client.connections),
            10,
            "a ready connection to every member",
        )


async def test_deadline_and_server_errors(shared_cluster: LocalCluster) -> None:
    async with EtcdClient(shared_cluster.endpoints) as client:
        with pytest.raises(ContextError) as context:
            await client.get(b"/k", timeout=1e-6)
        assert context.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(ResponseError) as response:
            await client.get(b"/k", revision=10**12, timeout=5)
        assert response.value.code == grpc.StatusCode.OUT_OF_RANGE
        assert client.stats.errors == {"ContextError": 1, "ResponseError": 1}


async def test_cancellation_propagates(shared_cluster: LocalCluster) -> None:
    async with EtcdClient(shared_cluster.endpoints) as client:
        key = unique_key("cancel")
        watch = client.watch(key)
        waiter = asyncio.create_task(watch.__anext__())
        await asyncio.wait_for(watch.created.wait(), 5)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await watch.cancel()
        assert [batch async for batch in watch] == []


async def test_lease_grant_keepalive_revoke(shared_cluster: LocalCluster) -> None:
    async with EtcdClient(shared_cluster.endpoints) as client:
        lease = await client.grant_lease(2)
        key = unique_key("lease")
        await client.put(key, b"v", lease=lease.id)
        # Outlive the TTL twice: only keep-alives keep the key.
        await asyncio.sleep(4)
        assert lease.alive and lease.keepalives_answered >= 2
        assert (await client.get(key)).count == 1
        await lease.revoke()
        assert (await client.get(key)).count == 0
        kept = await client.grant_lease(5)
    # Closing the client revokes its live leases.
    async with EtcdClient(shared_cluster.endpoints) as other:
        assert (await other.lease_time_to_live(kept.id)).TTL == -1


async def test_watch_delivers_in_order_and_compaction(shared_cluster: LocalCluster) -> None:
    async with EtcdClient(shared_cluster.endpoints) as client:
        prefix = unique_key("watch")
        first = await client.put(prefix + b"/0", b"0")
        watch = client.watch(
            prefix, range_end=prefix_end(prefix), start_revision=first.header.revision
        )
        for index in range(1, 4):
            await client.put(prefix + b"/%d" % index, b"%d" % index)
        seen: list[bytes] = []
        async for batch in watch:
            assert isinstance(batch, WatchBatch) and not batch.is_progress_notify
            seen.extend(event.kv.value for event in batch.events)
            if len(seen) == 4:
                break
        await watch.cancel()
        assert seen == [b"0", b"1", b"2", b"3"]

        latest = await client.put(prefix + b"/x", b"x")
        await client.compact(latest.header.revision)
        old = client.watch(
            prefix, range_end=prefix_end(prefix), start_revision=first.header.revision
        )
        with pytest.raises(CompactedError) as compacted:
            await asyncio.wait_for(old.__anext__(), 5)
        assert compacted.value.compact_revision >= latest.header.revision


async def test_etcd_check_probes_at_most_once_per_half_timeout(
    shared_cluster: LocalCluster,
) -> None:
    clock = FakeClock()
    async with EtcdClient(shared_cluster.endpoints, clock=clock, name="livez") as client:
        check = EtcdCheck(LIVEZ, client, timeout=2.0, key=b"/registry/health")
        # Its client has not connected yet: the apiserver answers that at once.
        assert await check.check() == NOT_ESTABLISHED
        await client.connect()
        assert await check.check() is None and check.probes == 1
        # Until a second (half the timeout) has passed the limiter answers the
        # last result without probing.
        await clock.advance(0.99)
        assert await check.check() is None and check.probes == 1
        await clock.advance(0.01)
        assert await check.check() is None and check.probes == 2
