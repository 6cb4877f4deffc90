"""The plugin's ``faults`` scopes (:class:`~etcdlab.testing.fault_proxy.Faults`) on
real etcd: ``faults.reset`` resets connections while it lasts, and a scope left
by cancellation removes its fault as any other exit does."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest

from etcdlab.cluster.local import LocalCluster
from etcdlab.protos import rpc_pb2, rpc_pb2_grpc
from etcdlab.testing.fault_proxy import FaultProxy, Faults
from tests.waiting import eventually

LOCAL = [("grpc.use_local_subchannel_pool", 1)]


async def read(address: str, timeout: float = 5.0) -> rpc_pb2.RangeResponse:
    """One Range over a fresh channel: its own connection, so no reconnect
    backoff carried over from grpc's shared pool of connections."""
    async with grpc.aio.insecure_channel(address, options=LOCAL) as channel:
        stub = rpc_pb2_grpc.KVStub(channel)
        reply: rpc_pb2.RangeResponse = await stub.Range(
            rpc_pb2.RangeRequest(key=b"/scopes"), timeout=timeout
        )
        return reply


async def test_reset_resets_open_and_new_connections_while_it_lasts(
    shared_cluster: LocalCluster,
) -> None:
    with FaultProxy(shared_cluster.endpoints, seed=0) as proxy:
        faults = Faults(proxy)
        first, counters = proxy.addresses[0], proxy.links[0].counters
        async with grpc.aio.insecure_channel(first, options=LOCAL) as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            await kv.Range(rpc_pb2.RangeRequest(key=b"/scopes"), timeout=5)
            with faults.reset(0):
                # The open connection is reset when the fault comes...
                await eventually(
                    lambda: counters.connections_reset == 1, 5, "the open connection reset"
                )
                # ...and every new one as it is accepted.
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await read(first)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                assert counters.connections_rejected > 0
                # Only member 0's link is reset.
                try:
                    await read(proxy.addresses[1])
                except grpc.aio.AioRpcError as error:
                    # Seen once in CI (a reset while connecting), not reproduced:
                    # the link's counters tell a close by the proxy (bad HTTP/2, an
                    # upstream it could not reach) from a reset by etcd.
                    pytest.fail(
                        f"member 1's link failed a read: {error.details()}; "
                        f"its counters: {proxy.links[1].counters}"
                    )
        assert proxy.links[0].faults == ()
        await read(first)


async def test_a_cancelled_scope_removes_its_fault(shared_cluster: LocalCluster) -> None:
    with FaultProxy(shared_cluster.endpoints, seed=0) as proxy:
        faults = Faults(proxy)
        entered = asyncio.Event()

        async def hold() -> None:
            async with faults.blackhole(0):
                entered.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(hold())
        await asyncio.wait_for(entered.wait(), 5)
        assert [f.kind for f in proxy.links[0].faults] == ["blackhole"]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await read(proxy.addresses[0], timeout=0.5)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert proxy.links[0].faults == ()
        await read(proxy.addresses[0])
