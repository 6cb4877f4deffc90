"""The MTU black hole: on bytes (sans-IO), through a link (both loops), before real etcd."""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import grpc
import pytest

from etcdlab.common.timescale import TimeScale
from etcdlab.protos import rpc_pb2, rpc_pb2_grpc
from etcdlab.proxy.control import format_address
from etcdlab.proxy.faults import registry
from etcdlab.proxy.faults.base import Piece, ShapeContext
from etcdlab.proxy.faults.mtu import NEVER, Held, MtuBlackhole
from etcdlab.proxy.link import Address, ProxyLink
from tests.proxy.links import OVERRIDE, both_loops, event_loop_policy  # noqa: F401
from tests.waiting import eventually

pytestmark = OVERRIDE


def ctx() -> ShapeContext:
    return ShapeContext(now=0.0, rng=random.Random(1))


def plain(pieces: list[Piece]) -> list[tuple[int, float, bool]]:
    return [(p.size, p.release, p.late is not None) for p in pieces]


def test_a_write_is_cut_into_segments_and_those_above_the_mtu_are_held() -> None:
    # 1000-byte packets: payloads up to 948 bytes pass (52 bytes of IP and TCP headers).
    mtu = MtuBlackhole(mtu=1000)
    assert mtu.largest_payload == 948
    # 2000 bytes are a 1448-byte segment (held) and a 552-byte one (passes, but
    # waits behind the first: the link keeps bytes in order).
    assert plain(mtu.shape([Piece(2000, 5.0)], ctx())) == [
        (1448, 5.0 + NEVER, True),
        (552, 5.0, False),
    ]
    assert plain(mtu.shape([Piece(948, 5.0)], ctx())) == [(948, 5.0, False)]
    assert plain(mtu.shape([Piece(949, 5.0)], ctx())) == [(949, 5.0 + NEVER, True)]
    # Three segments: big, big, small.
    out = mtu.shape([Piece(3000, 1.0)], ctx())
    assert [(p.size, p.late is not None) for p in out] == [(1448, True), (1448, True), (104, False)]


def test_the_edge_is_the_ip_packet_size() -> None:
    mtu = MtuBlackhole(mtu=600, headers=40, mss=1000)
    assert plain(mtu.shape([Piece(560, 0.0)], ctx())) == [(560, 0.0, False)]
    assert plain(mtu.shape([Piece(561, 0.0)], ctx())) == [(561, NEVER, True)]
    # Segments no larger than the MSS can never exceed a path MTU above it.
    wide = MtuBlackhole(mtu=1500)
    assert plain(wide.shape([Piece(100_000, 0.0)], ctx())) == [(100_000, 0.0, False)]


def test_a_held_segment_stays_held_whatever_follows() -> None:
    mtu = MtuBlackhole(mtu=1000)
    context = ctx()
    (held, _) = mtu.shape([Piece(2000, 0.0)], context)
    assert isinstance(held.late, Held)
    # A later write's SACK reveals the hole, an ACK of other data rearms nothing:
    # each retransmission is as big as the first send, and lost like it.
    assert held.late.revealed(held.release, 0.5) == (held.release, held.late)
    assert held.late.rearmed(held.release, 0.5) == (held.release, held.late)
    # The pipe heals what the faults in its state hold.
    assert mtu in context.state
    counted = context.applied[(mtu, "segment_dropped")]
    assert counted == 1


def test_once_the_rule_goes_the_next_retransmission_gets_through() -> None:
    mtu = MtuBlackhole(mtu=1000)
    (held, _) = mtu.shape([Piece(2000, 10.0)], ctx())
    assert isinstance(held.late, Held)
    # Sent again 0.2, 0.6, 1.4, 3.0 s ... after the first send (RTO doubling).
    assert held.late.healed(10.1) == pytest.approx(10.2)
    assert held.late.healed(10.3) == pytest.approx(10.6)
    assert held.late.healed(11.0) == pytest.approx(11.4)
    # Capped at max_rto: after ten minutes the sends come two minutes apart.
    late = held.late.healed(10.0 + 600)
    assert 10.0 + 600 <= late <= 10.0 + 600 + 120
    with_rtt = MtuBlackhole(mtu=1000, rtt=0.1)
    # The first timeout is min_rto plus the round trip; the send takes half of it.
    assert with_rtt.next_send(0.0, 0.0) == pytest.approx(0.35)


def test_scaling_shrinks_the_timers_not_the_sizes() -> None:
    mtu = MtuBlackhole(mtu=1000).scaled(TimeScale(0.1))
    assert (mtu.mtu, mtu.mss, mtu.headers) == (1000, 1448, 52)
    assert (mtu.min_rto, mtu.max_rto) == pytest.approx((0.02, 12.0))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mtu:mtu=52", "mtu must exceed headers (52 bytes)"),
        ("mtu:mtu=big", "mtu: must be a whole number"),
        ("mtu:mss=0", "mss must be at least 1 byte"),
        ("mtu:headers=-1", "headers must be 0 or more"),
        ("mtu:min_rto=1s,max_rto=100ms", "max_rto must be at least min_rto"),
        ("mtu:size=1000", "unknown attribute(s) for mtu: size"),
    ],
)
def test_bad_settings_name_the_field(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        registry.from_text(spec)


def test_every_way_of_writing_it_gives_the_same_fault() -> None:
    text = registry.from_text("mtu:mtu=1000,min_rto=200ms")
    toxic = registry.from_toxic({"type": "mtu", "attributes": {"mtu": 1000, "min_rto": 200}})
    table = registry.from_table({"type": "mtu", "mtu": 1000})
    keywords = registry.from_keywords("mtu", {"mtu": 1000, "direction": "upstream"})
    for fault in (text, toxic, table, keywords):
        assert isinstance(fault, MtuBlackhole) and fault.mtu == 1000 and fault.min_rto == 0.2
    assert keywords.direction == "upstream"
    shown = registry.to_toxic(toxic)
    assert shown["type"] == "mtu" and shown["attributes"]["mtu"] == 1000
    assert shown["attributes"]["min_rto"] == 200
    assert registry.from_toxic(shown).to_json() == toxic.to_json()


def test_the_command_line_flag() -> None:
    parser = argparse.ArgumentParser()
    registry.add_flags(parser)
    (fault,) = registry.from_flags(parser.parse_args(["--mtu", "1000"]))
    assert isinstance(fault, MtuBlackhole) and fault.mtu == 1000
    with pytest.raises(ValueError, match="--mtu: must exceed headers"):
        registry.from_flags(parser.parse_args(["--mtu", "10"]))


# -- through a link: real sockets, an echo server upstream ---------------------------


@both_loops
async def test_a_link_holds_big_writes_until_the_rule_goes(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False) as link:
        reader, writer = await asyncio.open_connection(*link.address)
        fault = link.add(MtuBlackhole(mtu=1000, name="mtu").scaled(TimeScale(0.1)))
        # Small writes pass both ways.
        writer.write(b"s" * 900)
        assert await asyncio.wait_for(reader.readexactly(900), 5) == b"s" * 900
        # A big one does not, and neither does a small one behind it.
        writer.write(b"B" * 3000)
        key = ("mtu", "segment_dropped")
        await eventually(lambda: key in link.counters.faults_applied, 5, "big segment dropped")
        writer.write(b"after")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(1), 0.3)
        link.remove(fault)
        healed = time.monotonic()
        assert await asyncio.wait_for(reader.readexactly(3005), 5) == b"B" * 3000 + b"after"
        # The next retransmission: well within a few scaled timeouts of the heal.
        assert time.monotonic() - healed < 3.0
        writer.close()


# -- in front of real etcd ------------------------------------------------------------


async def test_in_front_of_etcd_small_calls_pass_and_a_large_value_stalls(link: ProxyLink) -> None:
    big = b"v" * 4000
    # A subchannel of its own per channel: grpc would otherwise share one TCP
    # connection between the two channels, and the second would find it stalled.
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(format_address(link.address), options=options) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        await kv.Put(rpc_pb2.PutRequest(key=b"mtu/big", value=big))
        link.add(MtuBlackhole(mtu=1000, name="mtu"))
        # A small Range passes: request and answer fit in one small packet each.
        await kv.Put(rpc_pb2.PutRequest(key=b"mtu/small", value=b"1"))
        reply = await kv.Range(rpc_pb2.RangeRequest(key=b"mtu/small"), timeout=5)
        assert reply.kvs[0].value == b"1"
        # Reading the large value stalls: its answer never reaches the client.
        with pytest.raises(grpc.aio.AioRpcError) as stalled:
            await kv.Range(rpc_pb2.RangeRequest(key=b"mtu/big"), timeout=1.0)
        assert stalled.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert link.counters.faults_applied[("mtu", "segment_dropped")] >= 1
    # A new connection: writing the large value stalls the same way, upstream.
    async with grpc.aio.insecure_channel(format_address(link.address), options=options) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        await kv.Range(rpc_pb2.RangeRequest(key=b"mtu/small"), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as stalled:
            await kv.Put(rpc_pb2.PutRequest(key=b"mtu/big", value=big + b"2"), timeout=1.0)
        assert stalled.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
