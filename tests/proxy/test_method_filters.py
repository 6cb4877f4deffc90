"""Latency and loss filtered to one gRPC method, in front of a real etcd member."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from etcdlab.protos import rpc_pb2, rpc_pb2_grpc
from etcdlab.proxy.control import format_address
from etcdlab.proxy.faults.latency import Latency
from etcdlab.proxy.faults.loss import Loss
from etcdlab.proxy.link import ProxyLink
from tests.conftest import PROXY_TIME_SCALE as TIME_SCALE
from tests.conftest import scaled

KEEPALIVE = "etcdserverpb.Lease/LeaseKeepAlive"


async def test_latency_on_keepalive_leaves_range_on_the_same_connection_alone(
    link: ProxyLink,
) -> None:
    latency = 5.0
    fault = link.add(scaled(Latency(latency, method=KEEPALIVE)))  # both ways
    delay = latency * TIME_SCALE  # 0.5 s each way
    async with grpc.aio.insecure_channel(format_address(link.address)) as channel:
        lease = rpc_pb2_grpc.LeaseStub(channel)
        kv = rpc_pb2_grpc.KVStub(channel)
        granted = await lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60))
        stream = lease.LeaseKeepAlive()
        ping = rpc_pb2.LeaseKeepAliveRequest(ID=granted.ID)
        # The first round also carries the stream's header blocks, which later
        # header blocks (those of Range calls) may not pass.
        await stream.write(ping)
        await stream.read()
        for _ in range(2):
            started = time.monotonic()
            await stream.write(ping)
            pending = asyncio.ensure_future(stream.read())
            ranges: list[float] = []
            while not pending.done():
                called = time.monotonic()
                await kv.Range(rpc_pb2.RangeRequest(key=b"method/a"), timeout=10)
                ranges.append(time.monotonic() - called)
            answer = await pending
            elapsed = time.monotonic() - started
            assert isinstance(answer, rpc_pb2.LeaseKeepAliveResponse) and answer.TTL > 0
            # Request and response each waited the latency...
            assert elapsed >= 2 * delay - 0.005
            # ...while Range calls on the same connection went by, several of
            # them: one delayed too would have taken the whole round.
            assert len(ranges) >= 3 and max(ranges) < 2 * delay
        stream.cancel()
    assert link.counters.faults_applied[(fault.name, "frame_delayed")] >= 6


async def test_loss_filtered_to_keepalive_hits_only_its_segments(link: ProxyLink) -> None:
    fault = link.add(scaled(Loss(0.4, method=KEEPALIVE)))
    key = (fault.name, "segment_lost")
    async with grpc.aio.insecure_channel(format_address(link.address)) as channel:
        lease = rpc_pb2_grpc.LeaseStub(channel)
        kv = rpc_pb2_grpc.KVStub(channel)
        granted = await lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60))
        for _ in range(20):
            await kv.Put(rpc_pb2.PutRequest(key=b"method/l", value=b"v" * 3000), timeout=10)
            await kv.Range(rpc_pb2.RangeRequest(key=b"method/l"), timeout=10)
        assert link.counters.faults_applied.get(key, 0) == 0
        stream = lease.LeaseKeepAlive()
        ping = rpc_pb2.LeaseKeepAliveRequest(ID=granted.ID)
        for _ in range(20):
            await stream.write(ping)
            answer = await stream.read()
            assert isinstance(answer, rpc_pb2.LeaseKeepAliveResponse) and answer.TTL > 0
        assert link.counters.faults_applied.get(key, 0) > 0
        # (Once the stream is open, a segment of another call may also carry
        # one of its frames, a WINDOW_UPDATE say, and be lost with it: that is
        # what a real wire does, so nothing is asserted about those.)
        stream.cancel()


async def test_method_filters_need_an_http2_link(member: tuple[str, int]) -> None:
    async with ProxyLink("raw", member, http2=False) as raw:
        with pytest.raises(ValueError, match="method"):
            raw.add(Latency(0.1, method=KEEPALIVE))
        with pytest.raises(ValueError, match="method"):
            raw.add(Loss(0.1, method="etcdserverpb.Lease"))
