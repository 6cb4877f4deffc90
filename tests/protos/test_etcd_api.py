"""The generated stubs against real etcd: KV, txn, watch, leases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc

from etcdlab.protos import rpc_pb2, rpc_pb2_grpc


def unique_key(prefix: str) -> bytes:
    return f"/test/{prefix}/{uuid.uuid4().hex}".encode()


async def test_put_range_delete(channel: grpc.aio.Channel) -> None:
    kv = rpc_pb2_grpc.KVStub(channel)
    key = unique_key("kv")
    put = await kv.Put(rpc_pb2.PutRequest(key=key, value=b"one"), timeout=5)
    got = await kv.Range(rpc_pb2.RangeRequest(key=key), timeout=5)
    assert [(item.key, item.value) for item in got.kvs] == [(key, b"one")]
    assert got.kvs[0].mod_revision == put.header.revision
    deleted = await kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key, prev_kv=True), timeout=5)
    assert deleted.deleted == 1 and deleted.prev_kvs[0].value == b"one"
    assert (await kv.Range(rpc_pb2.RangeRequest(key=key), timeout=5)).count == 0


async def test_txn_compare_and_swap(channel: grpc.aio.Channel) -> None:
    kv = rpc_pb2_grpc.KVStub(channel)
    key = unique_key("txn")
    first = await kv.Put(rpc_pb2.PutRequest(key=key, value=b"a"), timeout=5)

    def swap(expected_revision: int, value: bytes) -> rpc_pb2.TxnRequest:
        return rpc_pb2.TxnRequest(
            compare=[
                rpc_pb2.Compare(
                    key=key,
                    target=rpc_pb2.Compare.MOD,
                    result=rpc_pb2.Compare.EQUAL,
                    mod_revision=expected_revision,
                )
            ],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))],
        )

    won = await kv.Txn(swap(first.header.revision, b"b"), timeout=5)
    assert won.succeeded
    lost = await kv.Txn(swap(first.header.revision, b"c"), timeout=5)
    assert not lost.succeeded
    assert lost.responses[0].response_range.kvs[0].value == b"b"


async def test_watch_from_revision_replays_history(channel: grpc.aio.Channel) -> None:
    kv = rpc_pb2_grpc.KVStub(channel)
    prefix = unique_key("watch")
    revisions = []
    for index in range(3):
        reply = await kv.Put(rpc_pb2.PutRequest(key=prefix + b"/%d" % index, value=b"x"), timeout=5)
        revisions.append(reply.header.revision)

    async def requests() -> AsyncIterator[rpc_pb2.WatchRequest]:
        yield rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(
                key=prefix + b"/",
                range_end=prefix + b"0",  # "/" + 1
                start_revision=revisions[1],
            )
        )
        await asyncio.Event().wait()  # keep the request side open

    call = rpc_pb2_grpc.WatchStub(channel).Watch(requests())
    seen: list[int] = []
    async with asyncio.timeout(5):
        async for response in call:
            seen.extend(event.kv.mod_revision for event in response.events)
            if len(seen) >= 2:
                break
    call.cancel()
    assert seen == revisions[1:]


async def test_lease_grant_keepalive_revoke(channel: grpc.aio.Channel) -> None:
    lease = rpc_pb2_grpc.LeaseStub(channel)
    kv = rpc_pb2_grpc.KVStub(channel)
    granted = await lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=5)
    assert granted.ID != 0 and granted.TTL == 30
    key = unique_key("lease")
    await kv.Put(rpc_pb2.PutRequest(key=key, value=b"v", lease=granted.ID), timeout=5)

    async def one_keepalive() -> AsyncIterator[rpc_pb2.LeaseKeepAliveRequest]:
        yield rpc_pb2.LeaseKeepAliveRequest(ID=granted.ID)

    responses = [r async for r in lease.LeaseKeepAlive(one_keepalive(), timeout=5)]
    assert [(r.ID, r.TTL) for r in responses] == [(granted.ID, 30)]
    ttl = await lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=granted.ID, keys=True))
    assert list(ttl.keys) == [key]
    await lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=granted.ID), timeout=5)
    assert (await kv.Range(rpc_pb2.RangeRequest(key=key), timeout=5)).count == 0
