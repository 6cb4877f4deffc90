"""The loss model's send buffer: Linux's charge per skb, freed by the cumulative
ACK, and the writer woken at two thirds (sans-IO, scripted dice); then on a
link: the sender stops being read while it is full, and the upstream server's
write deadline ends the connection as etcd's peer listener does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from etcdlab.proxy.faults.base import Fault, Piece, ShapeContext
from etcdlab.proxy.faults.loss import Loss, TcpState, Unacked
from etcdlab.proxy.faults.sndbuf import SKB_OVERHEAD, charge, frees_at, queued, wakes_at
from etcdlab.proxy.link import ProxyLink
from tests.proxy.faults.test_loss import Dice
from tests.proxy.links import OVERRIDE, both_loops, event_loop_policy  # noqa: F401
from tests.waiting import eventually

pytestmark = OVERRIDE


def unacked(ack_at: float, size: int, segments: int = 1) -> Unacked:
    write = Unacked(0.0, 0.0, 0.0, ack_at, False, size=size)
    write.segments = segments
    return write


def test_each_skb_costs_its_bytes_and_linux_overhead() -> None:
    assert charge(unacked(1.0, 70)) == 70 + SKB_OVERHEAD
    assert charge(unacked(1.0, 3000, segments=3)) == 3000 + 3 * SKB_OVERHEAD
    # A write that joined the unsent skb at the tail adds its bytes only.
    assert charge(unacked(1.0, 70, segments=0)) == 70


def test_only_the_cumulative_ack_frees_the_buffer() -> None:
    first, sacked, last = unacked(5.0, 100), unacked(1.0, 200), unacked(6.0, 300, segments=0)
    state = TcpState(0.0)
    state.buffered.extend([first, sacked, last])
    everything = charge(first) + charge(sacked) + charge(last)
    # When the charge falls to a level, as the ACKs stand.
    assert frees_at(state, 0.5, everything) == 0.5
    assert frees_at(state, 0.5, charge(last)) == 5.0
    assert frees_at(state, 0.5, 0) == 6.0
    # The second write's SACK at 1 s frees nothing while the first is unacked;
    # what the cumulative ACK passed is freed for good.
    assert queued(state, 0.5) == queued(state, 2.0) == everything
    assert queued(state, 5.0) == charge(last) == 300
    assert queued(state, 6.0) == 0
    assert not state.buffered
    assert wakes_at(69_120) == 46_080


def test_writes_held_behind_a_lost_one_join_its_skb_and_stay_charged() -> None:
    loss = Loss(0.5, ack_loss=False, send_buffer=10_000)
    state: dict[Fault, Any] = {}
    # The first write is lost three times: its probe at 0.2 s, its RTO at
    # 0.4 s (a timeout: a window of one) and 0.8 s; the next gets through.
    context = ShapeContext(now=0.0, rng=Dice([0.1, 0.1, 0.1, 0.9, 0.9]), state=state)
    for at in (0.0, 0.5, 0.6):
        loss.shape([Piece(100, at)], context)
    sender = state[loss]
    assert isinstance(sender, TcpState)
    lost, held, joined = sender.buffered
    # The window held the second write back; the third joined its segment.
    assert (lost.segments, held.segments, joined.segments) == (1, 1, 0)
    assert queued(sender, 0.6) == 300 + 2 * SKB_OVERHEAD
    # Nothing is freed before the lost write's ACK: the writes behind it wait.
    # (The held bytes go with its retransmission at 0.8 s, the round trip 0.)
    assert lost.ack_at == frees_at(sender, 0.6, 0) == pytest.approx(0.8)
    assert queued(sender, 0.79) == 300 + 2 * SKB_OVERHEAD


def test_send_buffer_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="send_buffer"):
        Loss(0.1, send_buffer=-1)
    with pytest.raises(ValueError, match="write_deadline"):
        ProxyLink("l", ("127.0.0.1", 1), write_deadline=0)


async def _server(writes: int, gone: asyncio.Event) -> tuple[asyncio.Server, int]:
    """A server writing 70-byte messages every 10 ms until its connection fails."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(writes):
                # (uvloop refuses a write on a transport already reset.)
                if writer.is_closing():
                    gone.set()
                    return
                writer.write(b"m" * 70)
                await writer.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            gone.set()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@both_loops
@pytest.mark.parametrize("deadline", [None, 0.5])
async def test_a_sender_blocked_past_its_write_deadline_loses_the_connection(
    deadline: float | None,
) -> None:
    gone = asyncio.Event()
    server, port = await _server(3000, gone)
    loss = Loss(0.5, send_buffer=4 * (70 + SKB_OVERHEAD), name="cut")
    async with server, ProxyLink("l", ("127.0.0.1", port), http2=False, seed=3,
                                 write_deadline=deadline) as link:  # fmt: skip
        reader, writer = await asyncio.open_connection(*link.address)
        # A peer link connects upstream once it has read the request's head.
        writer.write(b"GET /raft/stream/message/1 HTTP/1.1\r\n\r\n")
        await asyncio.wait_for(reader.readexactly(70), 10)
        link.add(loss)
        key = ("cut", "write_blocked")
        await eventually(lambda: key in link.counters.faults_applied, 10, "the sender blocked")
        if deadline is None:
            # Blocked, and only blocked: no deadline ends it.
            assert ("cut", "write_timeout") not in link.counters.faults_applied
            link.remove(loss)
            # Healed: the sender is read again and the bytes flow.
            assert await asyncio.wait_for(reader.readexactly(70 * 20), 10) == b"m" * 70 * 20
        else:
            # The server's next write fails, and the client gets what the
            # model carried, then EOF (bytes, never garbage).
            await asyncio.wait_for(gone.wait(), 10)
            assert ("cut", "write_timeout") in link.counters.faults_applied
            link.remove(loss)
            received = await asyncio.wait_for(reader.read(), 30)
            assert received == b"m" * len(received)
        writer.close()
