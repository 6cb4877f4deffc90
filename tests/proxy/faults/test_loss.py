"""TCP-faithful loss: the model on its own (a pure function of bytes, time and
seeded randomness), then on a link (both loops): late bytes, never lost bytes."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from typing import Any, cast

import pytest

from etcdlab.common.timescale import TimeScale
from etcdlab.proxy.faults import DOWNSTREAM, UPSTREAM
from etcdlab.proxy.faults.base import Fault, Late, Piece, ShapeContext
from etcdlab.proxy.faults.loss import (
    Held,
    Loss,
    Recovery,
    Resend,
    TcpState,
    Unacked,
    ack_samples,
    cut,
)
from etcdlab.proxy.link import Address, ProxyLink
from etcdlab.proxy.plan import plan
from etcdlab.proxy.streamlanes import CONNECTION, FrameSpans, FrameTag
from tests.proxy.links import OVERRIDE, both_loops, event_loop_policy  # noqa: F401
from tests.waiting import eventually

pytestmark = OVERRIDE


def ctx(seed: int = 1) -> ShapeContext:
    return ShapeContext(now=0.0, rng=random.Random(seed))


def plain(pieces: list[Piece]) -> list[tuple[int, float]]:
    return [(p.size, p.release) for p in pieces]


def test_no_loss_means_no_delay() -> None:
    assert plain(Loss(0.0).shape([Piece(5000, 1.0)], ctx())) == [(5000, 1.0)]


def timer_delay(loss: Loss, lost: int) -> float:
    """Extra delivery time of a lone segment lost ``lost`` times, by a fresh sender."""
    if not lost:
        return 0.0
    resend, _ = loss.timer_resend(0.0, lost, TcpState(0.0))
    return resend.arrival


def test_lost_segments_wait_for_probe_then_doubling_rto() -> None:
    loss = Loss(0.5)
    rng = random.Random(7)
    # A fresh sender each time: no round trip learnt, no backoff yet.
    delays = [round(timer_delay(loss, loss.losses(rng)), 6) for _ in range(20000)]
    # Tail loss probe at 200 ms, then RTO 200 ms, 400 ms, 800 ms...: 0.2, 0.4, 0.8, 1.6.
    assert {d for d in delays if d < 60} <= {0.0, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2}
    share_lost = sum(d > 0 for d in delays) / len(delays)
    assert 0.48 < share_lost < 0.52
    share_twice = sum(d > 0.3 for d in delays) / len(delays)
    assert 0.23 < share_twice < 0.27
    no_probe = Loss(0.5, tail_loss_probe=False)
    assert no_probe.backoff(3, 0.2) == pytest.approx(1.4)
    assert loss.backoff(3, 0.2, probe=0.2) == pytest.approx(0.8)
    assert loss.backoff(3, 0.2, probe=0.25) == pytest.approx(0.85)


def test_a_scaled_loss_shrinks_every_delay_for_the_same_seed() -> None:
    loss = Loss(0.3)
    fast = loss.scaled(TimeScale(0.1))
    assert (fast.min_rto, fast.syn_rto, fast.delayed_ack) == pytest.approx((0.02, 0.1, 0.004))
    assert fast.probability == 0.3 and fast.as_written is loss
    full, scaled = ctx(seed=3), ctx(seed=3)
    for index in range(200):
        # One write per (scaled) second, so ACKs come back between writes.
        (*_, a) = loss.shape([Piece(100, float(index))], full)
        (*_, b) = fast.shape([Piece(100, index * 0.1)], scaled)
        assert b.release == pytest.approx(a.release * 0.1)
    # The sender learns round trips on the run's clock: the same ones, scaled.
    assert scaled.state[fast].srtt == pytest.approx(full.state[loss].srtt * 0.1)
    assert full.state[loss].srtt > 0, "lost ACKs made some samples long"


class Dice(random.Random):
    """Randomness that returns the given rolls, in order."""

    def __init__(self, rolls: list[float]) -> None:
        super().__init__(0)
        self.rolls = rolls

    def random(self) -> float:
        return self.rolls.pop(0)


def test_syn_loss_costs_one_then_three_seconds() -> None:
    loss = Loss(0.3)
    # The SYN is sent again after 1 s, then 2 s more: the link connects at the
    # last, or at the first of those after the fault is removed.
    assert loss.connect_sends(Dice([0.9])) == []
    assert loss.connect_sends(Dice([0.1, 0.9])) == [1.0]
    assert loss.connect_sends(Dice([0.1, 0.1, 0.9])) == [1.0, 3.0]
    assert loss.scaled(TimeScale(0.5)).connect_sends(Dice([0.1, 0.1, 0.9])) == [0.5, 1.5]
    # A SYN carries no stream: a filtered loss never delays the connect.
    assert Loss(0.3, method="etcdserverpb.KV").connect_sends(Dice([0.1, 0.9])) == []


def test_chunk_is_cut_into_segments() -> None:
    loss = Loss(0.5, mss=100)
    pieces = loss.shape([Piece(1050, 0.0)], ctx(seed=11))
    assert sum(p.size for p in pieces) == 1050
    assert all(p.size % 100 in (0, 50) for p in pieces)
    assert any(p.release > 0 for p in pieces), "seed 11 loses some of eleven segments"
    # Lost segments followed by more of the same write are fast-retransmitted;
    # only the last segment of a write waits for the timer, and may be cut short.
    early = pieces[:-1]
    assert all(p.late is None or (isinstance(p.late, Recovery) and p.late.sacked) for p in early)
    assert all(p.release < 0.2 or p.release >= 0.2 + 0.004 for p in early)


def test_a_later_write_cuts_the_timer_short() -> None:
    loss = Loss(0.3, ack_timers=False)  # one roll per lost ACK
    dice = ctx(seed=0)
    while True:
        (piece,) = loss.shape([Piece(100, 0.0)], dice)
        if piece.release:
            break
    hole = piece.late
    assert isinstance(hole, Recovery) and piece.release >= 0.2
    fast, _ = hole.revealed(piece.release, 0.05)
    retransmissions_lost = hole.losses - 1
    # Sent well after the hole: its SACK marks the hole lost at once.
    assert fast == pytest.approx(0.05 + loss.backoff(retransmissions_lost, hole.rto))


def test_only_a_segment_right_behind_the_hole_waits_for_the_reorder_timer() -> None:
    loss = Loss(0.3, rtt=0.02, recovery=0.002)
    # The same write: the reorder timer, whatever the clock says.
    assert loss.fast_arrival(1.0, 1.0, same_write=True) == pytest.approx(1.0 + 0.022)
    # A later write within the reorder window (a quarter of the round trip):
    # the window's rest, then the timer's tick.
    assert loss.fast_arrival(1.0, 1.004) == pytest.approx(1.004 + 0.02 + 0.001 + 0.002)
    # Beyond it: one round trip after the later segment is sent.
    assert loss.fast_arrival(1.0, 1.006) == pytest.approx(1.006 + 0.02)
    # The window scales with time too.
    fast = loss.scaled(TimeScale(0.1))
    assert fast.fast_arrival(1.0, 1.0006) == pytest.approx(1.0006 + 0.002)
    # Without a round trip a later write is always beyond the window.
    loopback = Loss(0.3)
    assert loopback.fast_arrival(1.0, 1.0) == 1.0
    assert loopback.fast_arrival(1.0, 1.0, same_write=True) == pytest.approx(1.004)


def test_round_trip_estimator_follows_linux() -> None:
    state = TcpState(0.0, backoff=3)
    state.sample(0.2)
    # srtt moves 1/8 of the way; a sample ends the backoff.
    assert (state.srtt, state.backoff) == pytest.approx((0.025, 0))
    state.sample(0.0)
    assert state.srtt == pytest.approx(0.021875)


def test_rto_is_srtt_plus_min_rto_backed_off() -> None:
    loss = Loss(0.3, max_rto=1.0)
    assert loss.rto(TcpState(0.01)) == pytest.approx(0.21)
    assert loss.rto(TcpState(0.01, backoff=2)) == pytest.approx(0.84)
    assert loss.rto(TcpState(0.01, backoff=40)) == 1.0
    # The probe: two round trips plus min_rto, but never after the RTO (which
    # comes first unless backed off); the probe itself is not backed off.
    assert loss.probe_timeout(TcpState(0.01)) == pytest.approx(0.21)
    assert loss.probe_timeout(TcpState(0.1, backoff=1)) == pytest.approx(0.4)
    assert Loss(0.3, tail_loss_probe=False).probe_timeout(TcpState(0.1)) is None


def write(loss: Loss, context: ShapeContext, at: float = 0.0, size: int = 100) -> float:
    """Delay of a one-segment write."""
    (piece,) = loss.shape([Piece(size, at)], context)
    return round(piece.release - at, 6)


def pair(loss: Loss, rolls: list[float]) -> tuple[ShapeContext, ShapeContext]:
    """The two directions of one connection: each one's data carries the other's ACKs."""
    up: dict[Fault, Any] = {}
    down: dict[Fault, Any] = {}
    there = ShapeContext(now=0.0, rng=Dice(rolls), state=up, peer_state=down)
    back = ShapeContext(now=0.0, rng=Dice([0.9] * 10), state=down, peer_state=up)
    return there, back


def test_backoff_counts_timeouts_fired_until_an_ack_brings_a_sample() -> None:
    loss = Loss(0.5, ack_loss=False, mss=100)
    # Full-sized writes (acked at once) lost three times, twice, not at all;
    # no ACK roll without ack_loss.
    rolls = [0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.9, 0.9]
    context = ShapeContext(now=0.0, rng=Dice(rolls))
    # Lost three times: probe at 0.2 s, RTO at 0.4 s, doubled RTO at 0.8 s;
    # the two timeouts enter the backoff when they fire, not before.
    assert write(loss, context) == 0.8
    assert context.state[loss].backoff == 0
    # At 0.5 s one timeout has fired: the backoff is one, and the window one
    # segment, the retransmission in flight.
    state = context.state[loss]
    state.settle(0.5)
    assert (state.backoff, state.cwnd) == (1, 1.0)
    # A write made then waits for that retransmission's ACK (0.8 s), whose
    # sample ends the backoff; it is then alone in flight, lost twice: the
    # probe (200 ms), then the RTO (200 ms).
    assert write(loss, context, at=0.5) == pytest.approx(0.3 + 0.2 + 0.2)
    assert state.backoff == 0
    # Once the ACKs are back their samples (timestamps: retransmitted data
    # too) end the backoff.
    assert write(loss, context, at=5.0) == 0.0
    assert context.state[loss].backoff == 0
    assert context.state[loss].srtt == pytest.approx(0.0)


def test_the_sack_of_a_write_beyond_a_late_one_ends_the_backoff() -> None:
    loss = Loss(0.5, ack_loss=False, mss=100)
    # Lost five times (probe 0.2 s, RTOs 0.2, 0.4, 0.8, 1.6 s: arrives at 3.2 s);
    # the next write gets through at once, the third is lost once.
    rolls = [0.1] * 5 + [0.9, 0.9, 0.1, 0.9]
    context = ShapeContext(now=0.0, rng=Dice(rolls))
    assert write(loss, context) == pytest.approx(3.2)
    state = context.state[loss]
    state.backoff = 3  # as if left by earlier timeouts
    assert write(loss, context, at=0.3) == 0.0
    # Its SACK came back at once although the first write still holds the
    # cumulative ACK back: a sample, which ends the backoff; then the first
    # timeout fired (0.4 s) and the window is down to the retransmission.
    state.settle(0.5)
    assert (state.backoff, state.cwnd) == (1, 1.0)
    assert len(state.unacked) == 2
    # A third write waits for it (3.2 s), then meets the slow probe alone.
    assert write(loss, context, at=0.5) == pytest.approx(2.7 + 0.2)


def test_a_one_way_stream_under_loss_keeps_its_timers_short() -> None:
    """Raft's heartbeats down a peer stream: small writes one way every 100 ms,
    30% loss both ways for ten minutes. Each loss's timeouts enter the backoff
    when they fire and every (S)ACK ends it, so the RTO stays near its floor.
    Before, the backoff grew to the 120 s cap (200 to 400 timeouts) and half
    the writes waited over eight minutes behind one another."""
    loss = Loss(0.3)
    for seed in range(3):
        context = ctx(seed=seed)
        worst_backoff = 0
        delivered = 0.0
        waits = []
        for index in range(6000):
            at = index * 0.1
            pieces = loss.shape([Piece(60, at)], context)
            delivered = max(delivered, *(piece.release for piece in pieces))
            waits.append(delivered - at)
            worst_backoff = max(worst_backoff, context.state[loss].backoff)
        # Every write behind a lost one waits for it (head-of-line), and a
        # segment lost k times in a row costs about 0.2 s x 2^(k-1): a run of
        # 7 or 8 happens in 6000 writes at 30% and blocks the stream for a
        # minute, as in TCP; the median write waits about a second (the
        # kernel's one-way stream at 10/s and 30%: 1.6 s, docs/BENCHMARKS.md,
        # "Raft's peer streams"), not the minutes of a piled-up backoff.
        assert worst_backoff <= 4, seed
        assert sorted(waits)[len(waits) // 2] < 2.0, seed


def test_a_lone_small_write_is_acked_late_unless_more_follows() -> None:
    loss = Loss(0.5)
    # Three writes get through; their ACKs (one roll each) are not lost.
    there, _ = pair(loss, [0.9, 0.9] * 3)
    assert write(loss, there, at=0.0) == 0.0
    (first,) = there.state[loss].unacked
    assert first.ack_at == pytest.approx(0.04), "the receiver delays a lone small write's ACK"
    # A second small write right behind it is acked at once, with the first.
    assert write(loss, there, at=0.001) == 0.0
    assert [w.ack_at for w in there.state[loss].unacked] == pytest.approx([0.001, 0.001])
    # Both ACKs were back by the next write: two short samples.
    assert write(loss, there, at=1.0) == 0.0
    assert there.state[loss].srtt == pytest.approx(0.001 / 8 * 7 / 8)


def test_a_tail_loss_behind_unacked_data_gets_the_fast_probe() -> None:
    loss = Loss(0.5, ack_timers=False)  # one roll per lost ACK
    # A write gets through (its ACK held back: a lone small write); the next
    # one is lost once, then its ACK is lost too.
    there, back = pair(loss, [0.9, 0.9, 0.1, 0.9, 0.1])
    assert write(loss, there, at=0.0) == 0.0
    # Linux's probe with two segments in flight: two round trips plus 2 ms.
    assert write(loss, there, at=0.001) == pytest.approx(0.002)
    # Its ACK was lost: the sender's own probe draws a duplicate ACK ...
    late = there.state[loss].unacked[-1]
    assert late.ack_at == pytest.approx(0.003 + 0.2)
    # ... unless the peer's data carries the ACK first.
    (reply,) = loss.shape([Piece(50, 0.010)], back)
    assert late.ack_at == reply.release == 0.010


def test_an_ack_before_the_fast_probe_rearms_it_for_one_segment() -> None:
    loss = Loss(0.3)
    sends = Resend(loss, 1.002, 2, 0.21)
    fast = Recovery(loss, 1.0, 2, 0.21, sends, fast_probe_at=1.002, slow_probe=0.2)
    # The other data's ACK arrives at 1.001: probe at 1.001 + 0.2, then the RTO.
    release, kept = fast.rearmed(1.212, 1.001)
    assert release == pytest.approx(1.001 + 0.2 + 0.21)
    assert isinstance(kept, Recovery) and kept.fast_probe_at is None
    assert kept.resend.sends == pytest.approx([1.001 + 0.2, 1.001 + 0.2 + 0.21])
    # The timeouts its sender meets move with it.
    state = TcpState(0.01)
    write = loss.acknowledge(state, 1.0, 1.212, 100, True, ctx(), [1.212])
    tracked = dataclasses.replace(fast, write=write, sender=state)
    tracked.rearmed(1.212, 1.001)
    assert write.timeouts == pytest.approx([1.001 + 0.2 + 0.21])
    # After the probe has gone out the ACK changes nothing.
    assert fast.rearmed(1.212, 1.003)[0] == 1.212
    slow = Recovery(loss, 1.0, 1, 0.21, Resend(loss, 1.2, 1, 0.21))
    assert slow.rearmed(1.2, 1.001) == (1.2, slow)


def test_a_revealed_hole_moves_the_writes_behind_it() -> None:
    loss = Loss(0.5, ack_loss=False)
    # A lone write lost once waits for the probe (200 ms); two writes behind it
    # get through but wait for it (head-of-line).
    context = ShapeContext(now=0.0, rng=Dice([0.1, 0.9, 0.9, 0.9]))
    (hole,) = loss.shape([Piece(100, 0.0)], context)
    loss.shape([Piece(100, 0.001)], context)
    state = context.state[loss]
    assert hole.late is not None and state.delivered_at == pytest.approx(0.2)
    # The later write's SACK reveals the hole at once: the writes behind it
    # now arrive, in order, when they were sent.
    assert hole.late.revealed(hole.release, 0.001)[0] == pytest.approx(0.001)
    assert [w.delivered for w in state.unacked] == pytest.approx([0.001, 0.001])
    assert state.delivered_at == pytest.approx(0.001)


def test_a_healed_loss_lets_the_next_send_through() -> None:
    loss = Loss(0.5, ack_loss=False).scaled(TimeScale(0.5))
    # A lone write lost four times: probe at 0.1 s, RTOs at 0.2, 0.4 and 0.8 s.
    context = ShapeContext(now=0.0, rng=Dice([0.1] * 4 + [0.9]))
    (piece,) = loss.shape([Piece(100, 0.0)], context)
    late = piece.late
    assert isinstance(late, Recovery) and piece.release == late.resend.arrival
    assert late.resend.sends == pytest.approx([0.1, 0.2, 0.4, 0.8])
    # The loss ends at 0.25 s: the send at 0.4 s gets through.
    assert late.healed(0.25) == pytest.approx(0.4)
    assert late.healed(0.0) == pytest.approx(0.1)
    assert late.healed(1.0) == pytest.approx(0.8)
    # Segments of the same write behind a hole carry their sends too.
    same_write = Loss(0.5, mss=100)
    pieces = same_write.shape([Piece(1050, 0.0)], ctx(seed=11))
    sacked = [p for p in pieces[:-1] if p.late is not None]
    assert sacked, "seed 11 loses some segments before the last"
    for p in sacked:
        assert isinstance(p.late, Recovery) and p.release == pytest.approx(p.late.resend.arrival)


def test_one_way_or_filtered_loss_loses_no_acks_and_delays_none() -> None:
    # The ACKs cross the clean direction (or belong to no stream): no roll is
    # spent on them, and no delayed ACK is modelled (no reply would end it).
    # (A filtered loss rolls nothing here: no bytes of the method's streams.)
    cases: tuple[tuple[Loss, list[float]], ...] = (
        (Loss(0.5, method="etcdserverpb.KV"), []),
        (Loss(0.5, direction="upstream"), [0.9]),
    )
    for clean_acks, segment_rolls in cases:
        context = ShapeContext(now=0.0, rng=Dice(segment_rolls))
        assert write(clean_acks, context) == 0.0
        (only,) = context.state[clean_acks].unacked
        assert only.ack_at == 0.0
        assert not context.rng.rolls  # type: ignore[attr-defined]


def test_same_seed_same_decisions() -> None:
    loss = Loss(0.3)
    first = plain(loss.shape([Piece(100_000, 0.0)], ctx(seed=5)))
    assert first == plain(loss.shape([Piece(100_000, 0.0)], ctx(seed=5)))
    assert first != plain(loss.shape([Piece(100_000, 0.0)], ctx(seed=6)))


@both_loops
async def test_loss_delays_but_never_loses_or_reorders(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False, seed=2) as link:
        link.add(Loss(0.3, mss=100).scaled(TimeScale(0.05)))
        reader, writer = await asyncio.open_connection(*link.address)
        payload = bytes(range(256)) * 400
        for offset in range(0, len(payload), 1000):
            writer.write(payload[offset : offset + 1000])
        assert await asyncio.wait_for(reader.readexactly(len(payload)), 30) == payload
        writer.close()
    assert link.counters.delay_count > 0


@both_loops
async def test_lost_syn_delays_the_first_bytes_as_the_seed_says(echo: Address) -> None:
    loss = Loss(0.5, syn_rto=1.0).scaled(TimeScale(0.2))

    def expected(seed: int) -> float:
        # The first draws of connection 1's two streams decide SYN and SYN-ACK.
        return sum(
            (loss.connect_sends(random.Random(f"{seed}/raw/1/{direction}")) or [0.0])[-1]
            for direction in (UPSTREAM, DOWNSTREAM)
        )

    seed = next(s for s in range(100) if expected(s) > 0)
    async with ProxyLink("raw", echo, http2=False, seed=seed) as link:
        link.add(loss)
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(*link.address)
        writer.write(b"x")
        await asyncio.wait_for(reader.readexactly(1), 30)
        writer.close()
    # At least the SYN delay; the one byte each way may add segment losses.
    assert time.monotonic() - started >= expected(seed) - 0.002


@both_loops
@pytest.mark.parametrize("lost", ["syn", "data"])
async def test_removing_a_loss_lets_the_next_send_through(echo: Address, lost: str) -> None:
    """Losses are drawn as if the fault lasted; once it is removed the next
    retransmission (of the SYN, or of the data) gets through, as on a clean
    network, instead of the rest of a long run of losses."""
    # SYN sent again at 0.1, 0.3, 0.7 s...; data at 0.02, 0.04, 0.08 s...
    loss = Loss(0.99, direction=UPSTREAM, name="lossy").scaled(TimeScale(0.1))
    seed = 1
    # Without the heal the SYN (or the byte) would wait for minutes.
    assert len(loss.connect_sends(random.Random(f"{seed}/raw/1/{UPSTREAM}"))) > 8
    async with ProxyLink("raw", echo, http2=False, seed=seed) as link:
        if lost == "syn":
            link.add(loss)
        reader, writer = await asyncio.open_connection(*link.address)
        if lost == "data":
            writer.write(b"clean")
            assert await asyncio.wait_for(reader.readexactly(5), 5) == b"clean"
            link.add(loss)
        await eventually(lambda: link.connections == 1, 5, "the connection accepted")
        writer.write(b"x")
        if lost == "data":
            key = (loss.name, "segment_lost")
            await eventually(lambda: key in link.counters.faults_applied, 5, "the byte lost")
        link.remove(loss)
        healed = time.monotonic()
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
        # The next send comes within one (small) timeout of the heal.
        assert time.monotonic() - healed < 1.0
        writer.close()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Loss(1.5), "probability"),
        (lambda: Loss(1.0), "blackhole"),
        (lambda: Loss(0.1, mss=0), "mss"),
        (lambda: Loss(0.1, min_rto=-1), "min_rto"),
        (lambda: Loss(0.1, direction="sideways"), "direction"),
    ],
)
def test_validation_names_the_field(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_a_loss_found_by_the_probe_cuts_the_window_once_per_episode() -> None:
    loss = Loss(0.5, ack_loss=False, mss=100)
    # Full-sized writes (acked at once), each lost once: the probe gets it through.
    context = ShapeContext(now=0.0, rng=Dice([0.1, 0.9] * 4))
    assert write(loss, context) == pytest.approx(0.2)
    state = context.state[loss]
    assert (state.cwnd, state.ssthresh) == (10.0, math.inf), "not found before the probe"
    # CUBIC: the threshold to 0.7 of the window, and the window to it.
    state.settle(1.0)
    assert (state.cwnd, state.ssthresh) == pytest.approx((7.0, 7.0))
    assert write(loss, context, at=1.0) == pytest.approx(0.2)
    state.settle(2.0)
    assert (state.cwnd, state.ssthresh) == pytest.approx((4.9, 4.9))
    # Two writes lost in one window: the second's fast probe (2 ms, the first
    # is in flight) finds its loss first and cuts; the first, sent before that
    # cut, is part of the same episode and cuts no further.
    assert write(loss, context, at=2.0) == pytest.approx(0.2)
    assert write(loss, context, at=2.1) == pytest.approx(0.002)
    state.settle(3.0)
    assert (state.cwnd, state.ssthresh) == pytest.approx((3.43, 3.43))


def test_a_timeout_leaves_a_window_of_one_and_later_writes_wait_for_its_ack() -> None:
    loss = Loss(0.5, ack_loss=False, mss=100, rtt=0.01)
    # Lost twice: the probe (no later than the RTO, srtt + 200 ms) is lost
    # too, the RTO 0.21 s later gets it through at 0.42 s; its ACK is back at 0.43 s.
    context = ShapeContext(now=0.0, rng=Dice([0.1, 0.1, 0.9, 0.9]))
    assert write(loss, context) == pytest.approx(0.42)
    state = context.state[loss]
    state.settle(0.425)
    assert (state.cwnd, state.ssthresh, state.backoff) == pytest.approx((1.0, 7.0, 1))
    # A write made now waits for that ACK; one made while it waits joins its
    # segment (one fate for both); one that does not fit would follow it.
    assert write(loss, context, at=0.425, size=50) == pytest.approx(0.005)
    assert write(loss, context, at=0.426, size=30) == pytest.approx(0.004)
    assert context.applied[(loss, "write_held")] == 2
    # The ACK grows the window again: slow start, the sender filled it.
    state.settle(0.43)
    assert (state.cwnd, state.backoff) == (2.0, 0)
    # Without the window the write goes at once.
    free = Loss(0.5, ack_loss=False, mss=100, rtt=0.01, congestion_window=False)
    context = ShapeContext(now=0.0, rng=Dice([0.1, 0.1, 0.9, 0.9]))
    assert write(free, context) == pytest.approx(0.42)
    assert write(free, context, at=0.425, size=50) == 0.0


def test_the_window_grows_only_while_the_sender_fills_it() -> None:
    state = TcpState(0.0, cwnd=2.0, ssthresh=4.0)
    acked = Unacked(0.0, 0.0, 0.0, 0.0, False, in_flight=1)
    # Slow start: by the segments acked, while at least half the window was in flight.
    state.grow(acked)
    assert state.cwnd == 2.0
    acked.in_flight = 2
    state.grow(acked)
    state.grow(acked)
    assert state.cwnd == 4.0, "up to the threshold"
    # Above it: one segment per window acked, only while all of it was in flight.
    state.grow(acked)
    assert state.cwnd == 4.0
    acked.in_flight = 4
    state.grow(acked)
    assert state.cwnd == pytest.approx(4.25)


def test_a_write_waits_until_fewer_segments_than_the_window_are_in_flight() -> None:
    state = TcpState(0.0, cwnd=2.9)
    for ack_at, segments in ((0.5, 1), (0.3, 2), (0.9, 1)):
        state.unacked.append(Unacked(0.0, 0.0, 0.0, ack_at, False, segments=segments))
    # Four segments in flight, room for two: the ACKs at 0.3 s (two segments)
    # leave two, the one at 0.5 s leaves one.
    assert state.in_flight(0.1) == 4
    assert state.window_opens(0.1) == 0.5
    assert state.window_opens(0.6) == 0.6
    state.cwnd = 1.0
    assert state.window_opens(0.6) == 0.9


def test_under_loss_the_window_stays_at_one_or_two_segments() -> None:
    """Calls back to back over one connection at 30% both ways: the kernel's
    windows sat at one or two segments most of the time (ss in the namespace,
    docs/BENCHMARKS.md), and so does the model's."""
    loss = Loss(0.3)
    up: dict[Fault, Any] = {}
    down: dict[Fault, Any] = {}
    there = ShapeContext(now=0.0, rng=random.Random(1), state=up, peer_state=down)
    back = ShapeContext(now=0.0, rng=random.Random(2), state=down, peer_state=up)
    windows = []
    now = 0.0
    for _ in range(3000):
        (request,) = loss.shape([Piece(70, now)], there)
        (reply,) = loss.shape([Piece(90, request.release + 0.001)], back)
        now = reply.release + 0.001
        windows += [up[loss].cwnd, down[loss].cwnd]
    small = sum(window < 3 for window in windows) / len(windows)
    assert small > 0.8


def test_bytes_held_by_the_window_go_with_the_lost_data_once_healed() -> None:
    loss = Loss(0.5, ack_loss=False, mss=100, rtt=0.01)
    # As above: a timeout leaves a window of one; the retransmission's ACK is
    # due at 0.43 s, and a write made at 0.425 s waits for it.
    context = ShapeContext(now=0.0, rng=Dice([0.1, 0.1, 0.9, 0.9]))
    write(loss, context)
    context.state[loss].settle(0.425)
    (held,) = loss.shape([Piece(50, 0.425)], context)
    assert held.release == pytest.approx(0.43) and held.late is not None
    assert held.late.fault is loss, "the pipe lets bytes go by their fault"
    # Later bytes change nothing; the fault's removal lets them go at once
    # (the pipe keeps them behind the data they waited for).
    assert held.late.revealed(held.release, 0.426) == (held.release, held.late)
    assert held.late.rearmed(held.release, 0.426) == (held.release, held.late)
    assert held.late.healed(0.427) == 0.427


def test_bytes_held_behind_a_lost_ack_go_with_its_next_retransmission_once_healed() -> None:
    loss = Loss(0.5, mss=100, rtt=0.01, ack_timers=True)
    # A full-sized write gets through; its ACK is lost, and so is one side of
    # each of the next three rounds its timers draw: probe at 0.21 s, RTOs at
    # 0.42, 0.84 and 1.68 s, whose ACK is back at 1.69 s.
    context = ShapeContext(now=0.0, rng=Dice([0.9, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9]))
    assert write(loss, context) == 0.0
    (first,) = context.state[loss].unacked
    assert first.ack_at == pytest.approx(1.69)
    assert first.timeouts == pytest.approx([0.42, 0.84, 1.68])
    # The timeout at 0.42 s leaves a window of one: a write at 0.5 s waits for
    # that ACK, and its own segment is lost once when it goes.
    context.rng = Dice([0.1, 0.9, 0.9])
    (held,) = loss.shape([Piece(100, 0.5)], context)
    assert isinstance(held.late, Recovery) and held.late.sent_at == pytest.approx(1.69)
    # The loss ends at 0.6 s: the retransmission at 0.84 s and its ACK get
    # through, the window opens at 0.85 s and the held write goes then, sent
    # once. Before, it waited for the whole drawn chain, and its own loss.
    assert held.late.healed(0.6) == pytest.approx(0.85)
    # After the last timer nothing is left to wait for (its ACK is less than
    # a round trip away).
    assert held.late.healed(1.685) == pytest.approx(1.685)


def test_a_backlog_held_behind_one_another_heals_through_the_whole_chain() -> None:
    loss = Loss(0.3, rtt=0.01)
    # A write in flight when the loss ends, its timer next firing at 2 s; then
    # ten thousand writes the window held back, each behind the one before.
    first = Unacked(0.0, 0.0, 0.0, 30.0, True, timeouts=[0.5, 2.0, 4.0])
    held = Held(loss, (first,))
    for index in range(10_000):
        write = Unacked(40.0 + index, 40.0 + index, 40.0 + index, 41.0 + index, False)
        write.held = held
        held = Held(loss, (write,))
    # Each goes once the first one's retransmission at 2 s is acked.
    assert held.healed(1.0) == pytest.approx(2.01)
    assert held.healed(3.0) == pytest.approx(4.01)
    assert Held(loss, (first,)).healed(5.0) == 5.0


def test_a_heartbeat_stream_healed_after_a_minute_of_loss_recovers_within_a_timer() -> None:
    """Raft's heartbeats one way, 30% loss both ways for a minute, then none:
    everything written before the heal arrives with the next send of its
    sender's timers, as in TCP. A chain of lost ACKs or the congestion window
    it holds shut must not hold the connection past that (before, 1 heal in
    10 took over 5 s behind chains drawn as if the loss lasted, up to 950 s)."""
    loss = Loss(0.3)
    heals = []
    for seed in range(100):
        context = ctx(seed=seed)
        late: list[Piece] = []
        for index in range(600):
            pieces = loss.shape([Piece(60, index * 0.1)], context)
            late += [piece for piece in pieces if piece.release > 60.0]
        released = [min(p.release, p.late.healed(60.0)) if p.late else p.release for p in late]
        heals.append(max(released, default=60.0) - 60.0)
    heals.sort()
    # A round of the timers gets through with probability 0.49, so a stream
    # is often a backed-off RTO or two from its next send (0.2 s x 2^k).
    assert heals[50] < 0.5
    assert heals[95] < 20.0
    # The deepest chain of a hundred minutes of writes: seven or so rounds lost
    # in a row, the next send half a minute away at most.
    assert heals[-1] < 60.0


def test_the_ack_of_a_probe_is_a_short_sample_unless_a_later_ack_came_first() -> None:
    loss = Loss(0.5, mss=100, probe_samples=True, ack_timers=False)
    # A full-sized write gets through; its ACK is lost: the sender's probe at
    # 0.2 s draws a duplicate ACK, which echoes the probe's timestamp.
    there, back = pair(loss, [0.9, 0.1, 0.9, 0.1])
    assert write(loss, there) == 0.0
    there.state[loss].settle(1.0)
    assert there.state[loss].srtt == 0.0
    # The same, but the peer's data carries the ACK at 50 ms: a cumulative ACK
    # of data sent once, sampled from its send.
    assert write(loss, there, at=1.0) == 0.0
    loss.shape([Piece(50, 1.05)], back)
    there.state[loss].settle(2.0)
    assert there.state[loss].srtt == pytest.approx(0.05 / 8)
    # Without the rule the probe's ACK is sampled from the send: 200 ms.
    long = Loss(0.5, mss=100, ack_timers=False)
    there, _ = pair(long, [0.9, 0.1])
    write(long, there)
    there.state[long].settle(1.0)
    assert there.state[long].srtt == pytest.approx(0.2 / 8)


def test_rto_deviation_adds_linux_variance_term_over_min_rto() -> None:
    loss = Loss(0.3, rto_deviation=True)
    state = TcpState(0.0)
    state.sample(0.1)
    # The deviation (four times the mean) jumps with the error; under min_rto it adds nothing.
    assert (state.srtt, state.mdev, state.rttvar) == pytest.approx((0.0125, 0.1, 0.1))
    assert loss.rto(state) == pytest.approx(0.0125 + 0.2)
    state.sample(0.5)
    assert (state.mdev, state.rttvar) == pytest.approx((0.5625, 0.5625))
    assert loss.rto(state) == pytest.approx(state.srtt + 0.5625)
    # A short sample: the deviation falls, the variance term decays a quarter of the way.
    state.sample(0.0)
    assert state.rttvar == pytest.approx(0.5625 - (0.5625 - state.mdev) / 4)
    assert Loss(0.3).rto(state) == pytest.approx(state.srtt + 0.2), "off by default"


def test_a_held_back_ack_goes_with_the_reply_and_is_as_late_as_it() -> None:
    loss = Loss(0.5, ack_with_data=True)
    # A lone small write gets through; the receiver holds its ACK back (40 ms).
    # Its reply 10 ms later is lost once: the probe (200 ms) brings it, and
    # the ACK with it, before the sender's own probe (two round trips of
    # 50 ms plus 200 ms) would draw a duplicate.
    there, back = pair(loss, [0.9, 0.9])
    there.state[loss] = TcpState(0.05)
    back.rng = Dice([0.1, 0.9, 0.9, 0.9, 0.9])
    # (Two more rolls: the round of the sender's probe that would draw a
    # duplicate, its data and its ACK each get through.)
    assert write(loss, there) == 0.0
    (request,) = there.state[loss].unacked
    assert request.ack_at == pytest.approx(0.04)
    (reply,) = loss.shape([Piece(50, 0.01)], back)
    assert reply.release == pytest.approx(0.21)
    assert request.ack_at == pytest.approx(0.21), "no ACK of its own went at 40 ms"
    there.state[loss].settle(1.0)
    assert there.state[loss].srtt == pytest.approx(0.05 + (0.21 - 0.05) / 8)
    # The sender's probe comes first when its round trip is short: the
    # duplicate ACK it draws echoes the probe, a short sample (probe_samples).
    both = Loss(0.5, ack_with_data=True, probe_samples=True)
    there, back = pair(both, [0.9, 0.9])
    back.rng = Dice([0.1, 0.9, 0.9, 0.9, 0.9])
    write(both, there)
    both.shape([Piece(50, 0.01)], back)
    (request,) = there.state[both].unacked
    assert (request.ack_at, request.probed) == pytest.approx((0.2, 0.2))
    there.state[both].settle(1.0)
    assert there.state[both].srtt == 0.0
    # A reply after the delayed-ACK timer fired finds the ACK gone already;
    # without the rule the held-back ACK goes at 40 ms whatever the reply does.
    for late, rule in ((0.05, True), (0.01, False)):
        loss = Loss(0.5, ack_with_data=rule)
        there, back = pair(loss, [0.9, 0.9])
        back.rng = Dice([0.1, 0.9, 0.9, 0.9, 0.9])
        write(loss, there)
        loss.shape([Piece(50, late)], back)
        assert there.state[loss].unacked[0].ack_at == pytest.approx(0.04)


def test_one_ack_gives_one_sample_from_the_oldest_write_it_acks() -> None:
    # Two small writes through, the first's ACK held back until the second
    # comes (1 ms later): one ACK covers both. Linux samples it once, from the
    # older write's send; a sample per write adds the second's, 0 ms.
    for per_ack, srtt in ((True, 0.001 / 8), (False, 0.001 / 8 * 7 / 8)):
        loss = Loss(0.5, sample_per_ack=per_ack)
        there, _ = pair(loss, [0.9, 0.9] * 2)
        write(loss, there)
        write(loss, there, at=0.001)
        there.state[loss].settle(1.0)
        assert there.state[loss].srtt == pytest.approx(srtt), per_ack
    # Karn: the second write is lost once (the fast probe, 2 ms: the first is
    # in flight) and its retransmission's arrival brings the ACK of both: no
    # sample from a send, but the timestamp echoed, the first write's, which
    # the receiver got first after its last ACK.
    loss = Loss(0.5, sample_per_ack=True)
    there, _ = pair(loss, [0.9, 0.9, 0.1, 0.9, 0.9])
    write(loss, there)
    assert write(loss, there, at=0.01) == pytest.approx(0.002)
    first, second = there.state[loss].unacked
    assert first.ack_at == second.ack_at == pytest.approx(0.012)
    there.state[loss].settle(1.0)
    assert there.state[loss].srtt == pytest.approx(0.012 / 8)


def test_an_ack_of_retransmitted_data_alone_echoes_the_retransmission() -> None:
    writes = [
        Unacked(0.0, 0.2, 0.2, 0.2, True, ack_id=1),
        Unacked(0.1, 0.1, 0.2, 0.1, False, sampled=True, ack_id=2),
    ]
    # The hole's retransmission arrives at 0.2 s and is acked at 0.21: the
    # write beyond it was SACKed (its own sample) and gives none again.
    writes[0].ack_at = 0.21
    assert ack_samples(writes[:1], []) == {writes[0]: pytest.approx(0.01)}
    # An ACK that only SACKs a write sent once is sampled from that send; one
    # that only SACKs retransmitted data gives no sample (nothing acked).
    beyond = Unacked(0.3, 0.3, 0.5, 0.32, False)
    repaired = Unacked(0.3, 0.4, 0.5, 0.41, True)
    assert ack_samples([], [beyond]) == {beyond: pytest.approx(0.02)}
    assert ack_samples([], [repaired]) == {}


def test_the_probe_that_draws_a_lost_ack_and_its_own_ack_can_be_lost_too() -> None:
    # A full segment gets through and its ACK is lost. The probe (200 ms)
    # sends it again; that probe is lost, so the RTO (200 ms more) does, and
    # this time the retransmission and its ACK get through: 400 ms.
    loss = Loss(0.5, mss=100, probe_samples=True)
    there, _ = pair(loss, [0.9, 0.1, 0.1, 0.9, 0.9])
    write(loss, there)
    (lone,) = there.state[loss].unacked
    assert (lone.ack_at, lone.probed) == pytest.approx((0.4, 0.4))
    # The probe gets through but its ACK is lost; the RTO's round works.
    there, _ = pair(loss, [0.9, 0.1, 0.9, 0.1, 0.9, 0.9])
    write(loss, there)
    assert there.state[loss].unacked[0].ack_at == pytest.approx(0.4)
    # Without ack_timers the probe's round always works.
    plain = Loss(0.5, mss=100, probe_samples=True, ack_timers=False)
    there, _ = pair(plain, [0.9, 0.1])
    write(plain, there)
    assert there.state[plain].unacked[0].ack_at == pytest.approx(0.2)


# Found unguarded by mutation testing (docs/TESTING.md).


@pytest.mark.parametrize("probability", [0.05, 0.3, 0.6])
def test_every_byte_arrives_once_late_only_when_a_segment_was_lost(probability: float) -> None:
    loss = Loss(probability, mss=100)
    sizes = [250, 1, 100, 4000, 99]
    losing_seeds = 0
    for seed in range(20):
        context = ctx(seed)
        late = False
        for sent, size in enumerate(sizes):
            out = loss.shape([Piece(size, float(sent))], context)
            assert sum(p.size for p in out) == size and all(p.size > 0 for p in out), seed
            assert min(p.release for p in out) >= sent
            late = late or max(p.release for p in out) > sent
        lost = context.applied.get((loss, "segment_lost"), 0)
        assert late == (lost > 0), seed
        losing_seeds += lost > 0
    assert losing_seeds >= 10


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Loss(1.0), r"^probability must be below 1 \(use blackhole for total loss\)$"),
        (lambda: Loss(0.1, mss=0), "^mss must be at least 1 byte$"),
        (lambda: Loss(0.1, min_rto=0.5, max_rto=0.4), "^max_rto must be at least min_rto$"),
    ],
)
def test_validation_says_exactly_what_is_wrong(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_the_smallest_valid_values_are_accepted() -> None:
    tiny = Loss(0.5, mss=1, min_rto=0.2, max_rto=0.2)
    assert sum(p.size for p in tiny.shape([Piece(30, 0.0)], ctx())) == 30


def test_without_a_probe_the_rto_recovers_a_tail_doubling_up_to_max_rto() -> None:
    no_probe = Loss(0.5, tail_loss_probe=False, min_rto=0.2, max_rto=1.0)
    with_probe = Loss(0.5, min_rto=0.2, max_rto=1.0)
    for lost, rto_only, probe_first in [
        (1, [1.2], []),  # the probe is no timeout
        (2, [1.2, 1.6], [1.4]),
        (3, [1.2, 1.6, 2.4], [1.4, 1.8]),
        (4, [1.2, 1.6, 2.4, 3.4], [1.4, 1.8, 2.6]),  # 1.6 capped at max_rto 1
    ]:
        resend, timeouts = no_probe.timer_resend(1.0, lost, TcpState(0.0))
        assert resend.arrival == pytest.approx(rto_only[-1])
        assert timeouts == pytest.approx(rto_only)  # every send is a timeout
        resend, timeouts = with_probe.timer_resend(1.0, lost, TcpState(0.0))
        assert timeouts == pytest.approx(probe_first)
    # The round trip learnt moves the first RTO, and the doubling starts from it.
    resend, _ = no_probe.timer_resend(1.0, 2, TcpState(0.1))
    assert (resend.first, resend.rto, resend.arrival) == pytest.approx((1.3, 0.6, 1.9))


class MethodBytes:
    """Stands in for an HTTP/2 chunk's FrameSpans: its first ``end`` bytes belong
    to streams of ``method``; keeps every range it is asked about."""

    def __init__(self, method: str, end: int) -> None:
        self.method, self.end = method, end
        self.asked: list[tuple[int, int]] = []

    def carries(self, method: str, start: int, end: int) -> bool:
        self.asked.append((start, end))
        return method == self.method and start < self.end


def test_a_filtered_loss_rolls_only_segments_carrying_the_method() -> None:
    loss = Loss(0.6, mss=100, method="etcdserverpb.KV")
    spans = MethodBytes("etcdserverpb.KV", 1000)
    context = ctx(3)
    context.spans = cast(FrameSpans, spans)
    out = loss.shape([Piece(2050, 0.0), Piece(450, 0.5)], context)
    assert sum(p.size for p in out) == 2500
    assert spans.asked[:3] == [(0, 100), (100, 200), (200, 300)]
    assert spans.asked[20:] == [(2000, 2050), (2050, 2150), (2150, 2250), (2250, 2350),
                                (2350, 2450), (2450, 2500)]  # fmt: skip
    lost = context.applied[(loss, "segment_lost")]
    assert 0 < lost <= 10  # only the first thousand bytes could be


def test_bytes_already_late_stay_late_through_a_loss() -> None:
    # A piece another shaper made late keeps its marker, whole or cut around a hole.
    earlier = cast(Late, object())
    for probability, seed in ((0.0, 1), (0.6, 3)):
        out = Loss(probability, mss=100).shape([Piece(1000, 0.0, earlier)], ctx(seed))
        on_time = [p for p in out if p.release == 0.0]
        assert on_time and all(p.late is earlier for p in on_time), probability


def test_a_falling_round_trip_moves_the_deviation_an_eighth_as_much() -> None:
    # tcp_rtt_estimator: a sample under srtt that would raise the deviation
    # raises it by 1/8 of that (1/32 of the error in mdev's scale of four means).
    state = TcpState(1.0)
    state.sample(0.2)  # error -0.8: mdev grows by 0.8 / 8, not 0.8
    assert (state.srtt, state.mdev, state.rttvar) == pytest.approx((0.9, 0.1, 0.1))
    state.sample(0.9)  # no error: the deviation decays by a quarter of itself
    assert (state.mdev, state.rttvar) == pytest.approx((0.075, 0.09375))
    state.sample(0.89)  # falling, but less than the deviation: decays as any sample
    assert state.mdev == pytest.approx(0.075 + 0.01 - 0.075 / 4)


def test_the_fast_probe_is_armed_only_behind_unacked_data_and_an_ack_rearms_it() -> None:
    loss = Loss(0.5, ack_loss=False)
    # A write gets through and stays in flight (its ACK delayed); the next one,
    # lost once, is the tail: Linux's probe with two segments in flight comes
    # after two round trips plus 2 ms ...
    context = ShapeContext(now=0.0, rng=Dice([0.9, 0.1, 0.9]))
    write(loss, context)
    (tail,) = loss.shape([Piece(100, 0.001)], context)
    hole = tail.late
    assert isinstance(hole, Recovery)
    assert tail.release == hole.fast_probe_at == pytest.approx(0.003)
    assert hole.slow_probe == pytest.approx(0.2)
    # ... unless the other data's ACK arrives first: the probe is re-armed then,
    # as for one segment (two round trips plus min_rto); the probe finds the
    # loss, which cuts the window to 0.7 of itself (no timeout fired).
    release, kept = hole.rearmed(tail.release, 0.002)
    assert release == pytest.approx(0.202)
    assert isinstance(kept, Recovery) and kept.fast_probe_at is None
    state = context.state[loss]
    state.settle(1.0)
    assert (state.cwnd, state.ssthresh, state.backoff) == pytest.approx((7.0, 7.0, 0))
    # Lost twice: the re-armed probe is lost too, the RTO finds it: a window
    # of one, which the retransmission's ACK grows to two (slow start).
    context = ShapeContext(now=0.0, rng=Dice([0.9, 0.1, 0.1, 0.9]))
    write(loss, context)
    (tail,) = loss.shape([Piece(100, 0.001)], context)
    assert isinstance(tail.late, Recovery)
    assert tail.late.rearmed(tail.release, 0.002)[0] == pytest.approx(0.202 + 0.2)
    context.state[loss].settle(0.5)
    assert (context.state[loss].cwnd, context.state[loss].ssthresh) == pytest.approx((2.0, 7.0))


def test_the_probe_is_never_later_than_the_rto_nor_armed_without_tlp() -> None:
    # A long round trip: two of them plus 2 ms exceed srtt + min_rto, so the
    # probe is the RTO itself (0.5 s), which no ACK re-arms.
    slow = Loss(0.5, ack_loss=False, rtt=0.3)
    context = ShapeContext(now=0.0, rng=Dice([0.9, 0.1, 0.9]))
    write(slow, context)
    (tail,) = slow.shape([Piece(100, 0.001)], context)
    assert isinstance(tail.late, Recovery) and tail.late.fast_probe_at is None
    assert tail.release == pytest.approx(0.501)
    # Without the tail loss probe the RTO recovers the tail, whatever is in flight.
    bare = Loss(0.5, ack_loss=False, tail_loss_probe=False)
    context = ShapeContext(now=0.0, rng=Dice([0.9, 0.1, 0.9]))
    write(bare, context)
    (tail,) = bare.shape([Piece(100, 0.001)], context)
    assert isinstance(tail.late, Recovery) and tail.late.fast_probe_at is None
    assert tail.release == pytest.approx(0.201)


def test_a_lost_fast_retransmission_of_a_revealed_tail_waits_for_the_rto() -> None:
    loss = Loss(0.5, ack_loss=False, rtt=0.01)
    # A lone write lost twice; a later write's SACK reveals it at once, but
    # the fast retransmission is lost too: the RTO (srtt + 200 ms) follows.
    context = ShapeContext(now=0.0, rng=Dice([0.1, 0.1, 0.9]))
    (tail,) = loss.shape([Piece(100, 0.0)], context)
    assert isinstance(tail.late, Recovery)
    release, moved = tail.late.revealed(tail.release, 0.1)
    assert release == pytest.approx(0.1 + 0.01 + 0.21)
    assert isinstance(moved, Recovery) and moved.resend.arrival == release
    # Its ACK moves with it: a round trip after it arrives (it fills a hole).
    (acked,) = context.state[loss].unacked
    assert acked.ack_at == pytest.approx(release + 0.01)
    # The sender found the loss by that fast retransmission: the window is cut
    # to 0.7 of itself then, not at the probe it no longer waits for.
    state = context.state[loss]
    state.settle(0.15)
    assert (state.cwnd, state.ssthresh) == pytest.approx((7.0, 7.0))


def test_writes_held_by_the_window_join_its_segment_while_it_has_room() -> None:
    loss = Loss(0.5, ack_loss=False, mss=100, rtt=0.01)
    # As above, a timeout leaves a window of one, open again at 0.43 s. Rolls:
    # the first write's (lost twice), the held write's, then the last one's
    # (lost once): the writes that join a segment roll nothing of their own.
    there, back = pair(loss, [0.1, 0.1, 0.9, 0.9, 0.1, 0.9])
    write(loss, there)
    state = there.state[loss]
    # The peer's lone small write is due an ACK 40 ms late ...
    loss.shape([Piece(50, 0.42)], back)
    (peers,) = back.state[loss].unacked
    assert peers.ack_at == pytest.approx(0.47)
    # ... but data held by the window carries none: the receiver acks at once.
    (held,) = loss.shape([Piece(50, 0.425)], there)
    assert (held.release, peers.ack_at) == pytest.approx((0.43, 0.425))
    # The peer's next lone small write is again acked late (nothing is owed) ...
    loss.shape([Piece(50, 0.4255)], back)
    later = back.state[loss].unacked[-1]
    assert later.ack_at == pytest.approx(0.4755)
    # ... until a write joining the held segment: it too acks at once.
    (joined,) = loss.shape([Piece(30, 0.426)], there)
    assert later.ack_at == pytest.approx(0.426)
    # Up to a full segment, later writes share the held one's fate and take
    # no room of their own in the window.
    (full,) = loss.shape([Piece(20, 0.427)], there)
    for piece, size in ((joined, 30), (full, 20)):
        assert (piece.size, piece.release, piece.late) == (size, held.release, held.late)
    assert state.in_flight(0.43) == 1
    # One byte more does not fit: its own segment, sent when the ACK of the
    # retransmission opens the window to two (0.43 s), and lost: the held
    # segment is in flight, so the fast probe (two round trips plus 2 ms).
    (own,) = loss.shape([Piece(10, 0.428)], there)
    assert own.release == pytest.approx(0.43 + 2 * 0.01 + 0.002)
    assert there.applied[(loss, "write_held")] == 4


def test_a_write_carries_its_ack_only_when_its_first_segment_arrives() -> None:
    loss = Loss(0.5, ack_timers=False)  # one roll per lost ACK
    # The peer's write gets through, its ACK is lost: the peer's probe (200 ms)
    # draws a duplicate.
    there, back = pair(loss, [0.1, 0.9, 0.9])
    back.rng = Dice([0.9, 0.1])
    loss.shape([Piece(50, 0.0)], back)
    (peers,) = back.state[loss].unacked
    assert peers.ack_at == pytest.approx(0.2)
    # A reply lost once (arriving after its probe, 250 ms) carries the ACK no sooner.
    (reply,) = loss.shape([Piece(50, 0.05)], there)
    assert reply.release == pytest.approx(0.25)
    assert peers.ack_at == pytest.approx(0.2)


def test_the_receiver_acks_at_once_a_full_segment_a_repair_or_data_beyond_a_hole() -> None:
    loss = Loss(0.5, mss=100, probe_samples=True)
    # A full segment, its ACK not lost: acked at once, sampled from its send.
    there, _ = pair(loss, [0.9, 0.9])
    write(loss, there, size=100)
    (full,) = there.state[loss].unacked
    assert full.ack_at == 0.0
    there.state[loss].settle(1.0)
    assert there.state[loss].srtt == 0.0
    # A lone small write lost once is acked when its retransmission arrives
    # (it filled a hole); a small one that arrives beyond the hole, at once.
    there, _ = pair(loss, [0.1, 0.9, 0.9, 0.9, 0.9])
    write(loss, there, size=50)
    write(loss, there, at=0.001, size=50)
    assert [w.ack_at for w in there.state[loss].unacked] == pytest.approx([0.2, 0.001])


def test_a_lost_ack_is_drawn_by_the_probe_or_without_it_by_the_rto() -> None:
    # Linux's variance term makes the RTO (srtt + rttvar) later than the probe
    # (two round trips plus min_rto): the probe draws the duplicate ACK.
    loss = Loss(0.5, rto_deviation=True, ack_timers=False)
    state = TcpState(0.01, rttvar=0.5)
    write = loss.acknowledge(state, 0.0, 0.0, 100, False, ShapeContext(now=0.0, rng=Dice([0.1])))
    assert write.ack_at == pytest.approx(0.22)
    bare = Loss(0.5, rto_deviation=True, tail_loss_probe=False, ack_timers=False)
    state = TcpState(0.01, rttvar=0.5)
    write = bare.acknowledge(state, 0.0, 0.0, 100, False, ShapeContext(now=0.0, rng=Dice([0.1])))
    assert write.ack_at == pytest.approx(0.51)


def test_timers_samples_and_found_losses_count_at_the_instant_they_happen() -> None:
    # A write lost for long (timeouts fire at 0.4 s and 0.8 s) and one beyond
    # it, SACKed at 0.3 s; the loop clock may land on those very instants.
    state = TcpState(0.0, backoff=2)
    late = Unacked(0.0, 3.0, 3.0, 3.0, True, timeouts=[0.4, 0.8])
    beyond = Unacked(0.1, 0.1, 3.0, 3.0, False)
    beyond.ack_at = 0.3
    state.unacked = [late, beyond]
    assert state.in_flight(0.3) == 1, "a write whose SACK arrives now is no longer in flight"
    state.settle(0.3)
    assert (state.srtt, state.backoff) == pytest.approx((0.2 / 8, 0)), "the SACK's sample"
    state.settle(0.4)
    assert (state.backoff, state.cwnd) == (1, 1.0), "the first timeout fired"
    state.settle(0.5)
    assert state.backoff == 1, "counted once"
    state.settle(0.8)
    assert state.backoff == 2, "each timeout adds one"
    # A loss the probe finds cuts the window when it is found.
    state = TcpState(0.0)
    state.unacked = [Unacked(0.0, 1.0, 1.0, 1.1, True, detected=0.5)]
    state.settle(0.5)
    assert (state.cwnd, state.ssthresh) == pytest.approx((7.0, 7.0))


def test_the_window_is_cut_to_no_less_than_two_and_again_for_data_sent_after_the_cut() -> None:
    state = TcpState(0.0, cwnd=2.5)
    state.cut(0.5, Unacked(0.0, 0.0, 0.0, 1.0, True), timeout=False)
    assert (state.cwnd, state.ssthresh) == (2.0, 2.0)
    # Data sent when the loss was found (the sender reacts before it sends)
    # is beyond the episode: its own loss cuts again (Linux's high_seq).
    state = TcpState(0.0)
    state.cut(0.5, Unacked(0.0, 0.0, 0.0, 1.0, True), timeout=False)
    state.cut(0.6, Unacked(0.4, 0.0, 0.0, 1.0, True), timeout=False)
    assert state.cwnd == pytest.approx(7.0), "sent before the cut: the same episode"
    state.cut(0.7, Unacked(0.5, 0.0, 0.0, 1.0, True), timeout=False)
    assert state.cwnd == pytest.approx(4.9)


def test_a_moved_write_still_waits_for_every_earlier_one() -> None:
    state = TcpState(0.0)
    first = Unacked(0.0, 0.0, 0.0, 1.0, False)
    held = Unacked(0.01, 3.2, 3.2, 3.2, True)
    moved = Unacked(0.02, 0.4, 3.2, 3.2, True)
    state.unacked = [first, held, moved]
    # The last write's lost segment gets through at 0.15 s after all; it is
    # still delivered behind the second (head-of-line), whose hole remains.
    state.moved(moved, 0.15)
    assert (moved.arrived, moved.delivered) == pytest.approx((0.15, 3.2))
    assert state.delivered_at == pytest.approx(3.2)


def test_a_healed_loss_lets_a_send_at_that_very_instant_through() -> None:
    sends = Resend(Loss(0.5), 0.2, 3, 0.2)
    assert sends.sends == pytest.approx([0.2, 0.4, 0.8])
    assert sends.healed(0.4) == pytest.approx(0.4)


def test_a_reply_sent_as_the_data_arrives_carries_its_ack() -> None:
    loss = Loss(0.5)
    there, back = pair(loss, [0.9, 0.9, 0.9, 0.9])
    back.rng = Dice([0.9, 0.9, 0.9, 0.9])
    loss.shape([Piece(50, 0.0)], back)
    (first,) = back.state[loss].unacked
    assert first.ack_at == pytest.approx(0.04)
    loss.shape([Piece(50, 0.0)], there)
    assert first.ack_at == 0.0
    # Nothing is owed then: the peer's next lone small write is acked late again.
    loss.shape([Piece(50, 0.01)], back)
    assert back.state[loss].unacked[-1].ack_at == pytest.approx(0.05)


def test_a_write_joining_a_lost_segment_is_acked_with_it() -> None:
    loss = Loss(0.5, ack_loss=False, mss=100, rtt=0.01)
    # The window of one after a timeout (above); the held write is lost once
    # too, so its segment fills a hole and is acked at once when it arrives.
    context = ShapeContext(now=0.0, rng=Dice([0.1, 0.1, 0.9, 0.1, 0.9]))
    write(loss, context)
    context.state[loss].settle(0.425)
    (held,) = loss.shape([Piece(50, 0.425)], context)
    (joined,) = loss.shape([Piece(30, 0.426)], context)
    assert joined.release == held.release > 0.43
    *_, held_write, joined_write = context.state[loss].unacked
    assert joined_write.ack_at == held_write.ack_at == pytest.approx(held.release + 0.01)
    # The pipe lets bytes go by their fault once it is removed.
    assert isinstance(held.late, Recovery) and held.late.fault is loss


def test_the_first_loss_found_in_a_write_cuts_the_window_then() -> None:
    loss = Loss(0.5, ack_loss=False, mss=100, rtt=0.1)
    # Both segments of one write lost once: the first is revealed by the
    # second's SACK (the reorder timer: a jiffy plus a round trip), the second
    # is recovered by the probe (two round trips, srtt 0.1 s, plus 2 ms).
    context = ShapeContext(now=0.0, rng=Dice([0.1, 0.9, 0.1, 0.9]))
    first, second = loss.shape([Piece(200, 0.0)], context)
    assert (first.release, second.release) == pytest.approx((0.104, 0.202))
    assert isinstance(first.late, Recovery) and first.late.fault is loss
    state = context.state[loss]
    state.settle(first.release)
    assert (state.cwnd, state.ssthresh) == pytest.approx((7.0, 7.0))
    # Pieces of one chunk released at different times: the earliest hole
    # found (the first piece's, a jiffy plus a round trip after it) cuts.
    context = ShapeContext(now=0.0, rng=Dice([0.1, 0.9, 0.9, 0.1, 0.9, 0.9]))
    loss.shape([Piece(200, 0.0), Piece(200, 0.05)], context)
    context.state[loss].settle(0.11)
    assert context.state[loss].cwnd == pytest.approx(7.0)
    # A chunk of several pieces is one write: two segments in the window.
    clean = ShapeContext(now=0.0, rng=Dice([0.9, 0.9]))
    loss.shape([Piece(100, 1.0), Piece(100, 1.0)], clean)
    assert clean.state[loss].unacked[-1].segments == 2


def test_with_ack_timers_a_lost_ack_keeps_the_timers_going_until_a_round_gets_through() -> None:
    loss = Loss(0.5, ack_timers=True)
    # The write gets through, its ACK is lost; the probe (0.2 s) is lost; the
    # RTO's retransmission (0.4 s) gets through but its duplicate ACK is lost;
    # the next (0.8 s) and its ACK get through.
    context = ShapeContext(now=0.0, rng=Dice([0.9, 0.1, 0.1, 0.9, 0.1, 0.9, 0.9]))
    assert write(loss, context) == 0.0
    (first,) = context.state[loss].unacked
    assert first.ack_at == pytest.approx(0.8)
    assert first.timeouts == pytest.approx([0.4, 0.8])
    # Meanwhile the first timeout leaves a window of one: a write at 0.5 s
    # waits for that ACK.
    state = context.state[loss]
    state.settle(0.5)
    assert (state.backoff, state.cwnd) == (1, 1.0)
    context.rng = Dice([0.9, 0.9])
    assert write(loss, context, at=0.5) == pytest.approx(0.3)
    # Without the rule the probe always draws the ACK.
    bare, plain_loss = ShapeContext(now=0.0, rng=Dice([0.9, 0.1])), Loss(0.5, ack_timers=False)
    write(plain_loss, bare)
    assert bare.state[plain_loss].unacked[0].ack_at == pytest.approx(0.2)


def test_with_ack_timers_the_chain_of_a_lost_tail_goes_on_after_it_arrives() -> None:
    loss = Loss(0.5, ack_timers=True)
    # The segment is lost at its send and at the probe (0.2 s), gets through
    # on the RTO's retransmission (0.4 s); its ACK is lost, and the next RTO
    # (0.8 s, doubled) and its ACK get through.
    context = ShapeContext(now=0.0, rng=Dice([0.1, 0.1, 0.9, 0.1, 0.9, 0.9]))
    assert write(loss, context) == pytest.approx(0.4)
    (first,) = context.state[loss].unacked
    assert first.ack_at == pytest.approx(0.8)
    assert first.timeouts == pytest.approx([0.4, 0.8])


def test_with_ack_timers_a_later_ack_ends_the_chain_and_its_timers() -> None:
    loss = Loss(0.5, ack_timers=True)
    # The ACK is lost and the first two rounds' data too; the peer's reply at 50 ms
    # carries the ACK: no timeout fires, the window stays open.
    there, back = pair(loss, [0.9, 0.1, 0.1, 0.1, 0.9, 0.9])
    assert write(loss, there) == 0.0
    (first,) = there.state[loss].unacked
    assert first.ack_at == pytest.approx(0.8) and first.timeouts
    loss.shape([Piece(50, 0.05)], back)
    assert (first.ack_at, first.timeouts) == (pytest.approx(0.05), [])
    there.state[loss].settle(2.0)
    assert (there.state[loss].backoff, there.state[loss].cwnd) == (0, 10.0)


RANGE = "/etcdserverpb.KV/Range"


def ping_and_response(rolls: list[float], loss: Loss) -> list[tuple[int, float]]:
    """One chunk read: etcd's BDP PING + WINDOW_UPDATE (30 bytes of stream 0)
    and a 100-byte response on stream 1, at 0 s, shaped with ``rolls`` (the
    releases to the microsecond)."""
    context = ShapeContext(now=0.0, rng=Dice(rolls))
    context.spans = FrameSpans([b"p" * 17, b"w" * 13, b"r" * 100], [CONNECTION] * 2 + [RESPONSE])
    return [(p.size, round(p.release, 6)) for p in loss.shape([Piece(130, 0.0)], context)]


RESPONSE = FrameTag(1, RANGE)


def test_with_control_writes_a_lost_ping_is_revealed_by_the_response_behind_it() -> None:
    loss = Loss(0.3, rtt=0.01, control_writes=True)
    # PING lost once, its ACK through; the response through, its SACK too. The
    # SACK reveals the hole a round trip later, RACK's reorder window (a
    # quarter of it) and one jiffy on: 10 + 2.5 + 4 ms. Head-of-line blocking
    # (the pipe's) holds the response till then.
    assert ping_and_response([0.1, 0.9, 0.9, 0.9, 0.9], loss) == [(30, 0.0165), (100, 0.0)]
    # One write, as without the rule: one segment, one roll; lost, it waits for
    # the RTO (10 + 200 ms, sooner than the probe's 2 srtt + 200 ms).
    one = dataclasses.replace(loss, control_writes=False)
    assert ping_and_response([0.1, 0.9, 0.9], one) == [(130, 0.21)]


def test_with_control_writes_a_lost_response_behind_an_unacked_ping_gets_the_fast_probe() -> None:
    loss = Loss(0.3, rtt=0.01, control_writes=True)
    # The PING's ACK is held back (a lone small write) when the response goes,
    # so two segments are out: the probe waits 2 srtt + 2 ms, not + 200 ms.
    assert ping_and_response([0.9, 0.9, 0.1, 0.9, 0.9], loss) == [(30, 0.0), (100, 0.022)]
    one = dataclasses.replace(loss, control_writes=False)
    assert ping_and_response([0.1, 0.9, 0.9], one) == [(130, 0.21)]


def test_with_control_writes_a_response_written_while_the_window_holds_the_ping_joins_it() -> None:
    loss = Loss(0.3, rtt=0.01, control_writes=True)
    context = ShapeContext(now=0.1, rng=Dice([0.1, 0.9, 0.9, 0.9]))
    # A window of one, full until its ACK comes at 0.5 s.
    context.state[loss] = TcpState(0.01, cwnd=1.0, unacked=[Unacked(0.0, 0.005, 0.005, 0.5, False)])
    context.spans = FrameSpans([b"p" * 30, b"r" * 100], [CONNECTION, RESPONSE])
    ping, response = loss.shape([Piece(130, 0.1)], context)
    # Both wait for the window, then share the PING's segment and its fate
    # (Linux appends a write to the unsent tail of its queue): lost once, it
    # goes again when the probe fires (the RTO, 0.5 s sample: srtt 71.25 ms).
    assert (ping.size, response.size) == (30, 100)
    assert ping.release == response.release == pytest.approx(0.5 + 0.07125 + 0.2)
    assert ping.late is response.late is not None
    assert context.applied[(loss, "write_split")] == 1


def test_control_writes_cut_a_chunk_where_connection_frames_meet_stream_frames() -> None:
    # Preface, SETTINGS | HEADERS, DATA of stream 1 | PING, WINDOW_UPDATE | HEADERS of 3.
    frames = [b"x" * size for size in (24, 9, 30, 20, 17, 13, 40)]
    tags = [CONNECTION, CONNECTION, FrameTag(1, RANGE, True, True), FrameTag(1, RANGE)]
    tags += [CONNECTION, CONNECTION, FrameTag(3, None, True, True)]
    turns = FrameSpans(frames, tags).turns()
    assert turns == [33, 83, 113]
    parts = cut([Piece(50, 0.0), Piece(103, 0.1)], turns)
    assert [plain(part) for part in parts] == [
        [(33, 0.0)],
        [(17, 0.0), (33, 0.1)],
        [(30, 0.1)],
        [(40, 0.1)],
    ]
    assert FrameSpans(frames[2:4], tags[2:4]).turns() == []


def test_control_writes_ask_the_link_for_every_frame_and_its_stream() -> None:
    # Telling writes apart needs frames both ways (the server's too) and the
    # stream of each; an unfiltered loss without the rule needs neither.
    assert Loss(0.1, control_writes=True).frame_aware
    assert plan([Loss(0.1, control_writes=True)], UPSTREAM).tagged
    assert not Loss(0.1).frame_aware and not plan([Loss(0.1)], UPSTREAM).tagged
    # Without spans (a raw TCP link, no frames) a chunk stays one write.
    loss = Loss(0.3, rtt=0.01, control_writes=True)
    context = ShapeContext(now=0.0, rng=Dice([0.1, 0.9, 0.9]))
    (piece,) = loss.shape([Piece(130, 0.0)], context)
    assert piece.size == 130 and piece.release == pytest.approx(0.21)


def test_with_cumulative_acks_the_ack_of_a_repaired_hole_acks_the_write_beyond_it() -> None:
    def beyond(loss: Loss) -> Unacked:
        # A write lost once, sent again by its probe at 210 ms, its ACK back
        # at 220 ms; a write at 50 ms gets through beyond the hole, but its
        # SACK is lost, and the probe rounds that would draw it again fail
        # three times (fast probe at 72 ms, then RTOs of 210, 420, 840 ms).
        rolls = [0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9]
        context = ShapeContext(now=0.0, rng=Dice(rolls))
        loss.shape([Piece(100, 0.0)], context)
        loss.shape([Piece(100, 0.05)], context)
        state = context.state[loss]
        assert isinstance(state, TcpState)
        return state.unacked[1]

    loss = Loss(0.3, rtt=0.01, cumulative_acks=True)
    # The receiver's ACK of the repaired hole is cumulative: it acks the
    # write beyond it too, and no timer of that write fires after it.
    write = beyond(loss)
    assert write.ack_at == pytest.approx(0.22) and write.timeouts == []
    # Without the rule the write waits for the end of its own chain.
    write = beyond(dataclasses.replace(loss, cumulative_acks=False))
    assert write.ack_at == pytest.approx(0.072 + 0.21 + 0.42 + 0.84 + 0.01)
    assert write.timeouts == pytest.approx([0.282, 0.702, 1.542])


def test_with_cumulative_acks_data_sent_again_carries_the_ack_of_what_arrived_meanwhile() -> None:
    def request(loss: Loss) -> Unacked:
        # A write lost once arrives by its probe at 210 ms; its ACK is lost,
        # and three rounds of the timers after it fail (RTOs from 420 ms on).
        there, back = pair(loss, [0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9])
        write(loss, there)
        # The other way, data written at 50 ms is lost once too: its probe
        # sends it again at 260 ms, after the write had arrived.
        back.rng = Dice([0.1, 0.9, 0.9])
        (reply,) = loss.shape([Piece(50, 0.05)], back)
        assert reply.release == pytest.approx(0.26)
        state = there.state[loss]
        assert isinstance(state, TcpState)
        return state.unacked[0]

    # Linux puts its current ACK on every segment it sends: the resent data
    # acks the write, and no timer of the write fires after it.
    acked = request(Loss(0.3, rtt=0.01, cumulative_acks=True))
    assert acked.ack_at == pytest.approx(0.26) and acked.timeouts == []
    # Without the rule the data carries the ACK of its first send, 50 ms.
    acked = request(Loss(0.3, rtt=0.01))
    assert acked.ack_at == pytest.approx(0.21 + 0.21 + 0.42 + 0.84 + 1.68 + 0.01)
    assert acked.timeouts == pytest.approx([0.42, 0.84, 1.68, 3.36])


def test_with_cumulative_acks_a_revealed_hole_acks_the_write_beyond_it_when_repaired() -> None:
    def beyond(loss: Loss) -> Unacked:
        # A write lost once (its probe would bring it at 210 ms, ACKed at
        # 220 ms); a write at 50 ms gets through beyond the hole and its SACK
        # is lost, the timers' rounds failing three times.
        context = ShapeContext(
            now=0.0, rng=Dice([0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9])
        )
        (hole,) = loss.shape([Piece(100, 0.0)], context)
        loss.shape([Piece(100, 0.05)], context)
        # Its SACK had reached the receiver all the same: the hole is sent
        # again a round trip on and arrives at 60 ms (the pipe asks).
        assert isinstance(hole.late, Recovery)
        assert hole.late.revealed(hole.release, 0.05)[0] == pytest.approx(0.06)
        state = context.state[loss]
        assert isinstance(state, TcpState)
        return state.unacked[1]

    # The receiver's ACK of the repair, which moved earlier, acks the write
    # beyond the hole too.
    loss = Loss(0.3, rtt=0.01, sack_loss=False, cumulative_acks=True)
    assert beyond(loss).ack_at == pytest.approx(0.07)
    # Without the rule the write waits for the end of its own chain.
    off = beyond(dataclasses.replace(loss, cumulative_acks=False))
    assert off.ack_at == pytest.approx(0.05 + 0.21 + 0.21 + 0.42 + 0.84 + 0.01)


def test_with_cumulative_acks_a_direction_that_sends_nothing_keeps_no_acks_on_record() -> None:
    # One write, ACKed at 50 ms; then only the other way's data, each piece
    # carrying an ACK that can ack nothing sent from then on.
    loss = Loss(0.3, rtt=0.01, cumulative_acks=True)
    there, back = pair(loss, [0.9, 0.9])
    write(loss, there)
    back.rng = Dice([0.9] * 40)
    for second in range(1, 21):
        loss.shape([Piece(50, float(second))], back)
    state = there.state[loss]
    assert isinstance(state, TcpState)
    assert [ack.left for ack in state.acks] == [20.0]


def test_with_window_follows_acks_held_bytes_go_when_an_ack_comes_sooner_than_drawn() -> None:
    def held(loss: Loss) -> tuple[float, float]:
        # A window of one: a write gets through but its ACK is lost, and three
        # rounds of the timers after it fail (the duplicate back at 1.69 s); a
        # write at 100 ms waits for the window until then.
        rolls = [0.9, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9]
        there, back = pair(loss, rolls)
        there.state[loss] = TcpState(0.01, cwnd=1.0)
        write(loss, there)
        (waiting,) = loss.shape([Piece(100, 0.1)], there)
        assert isinstance(waiting.late, Held) and waiting.release == pytest.approx(1.69)
        # Data the other way at 300 ms carries the ACK of the first write; the
        # pipe asks the held bytes when it goes.
        back.rng = Dice([0.9, 0.9])
        loss.shape([Piece(50, 0.3)], back)
        release, _ = waiting.late.rearmed(waiting.release, 0.3)
        # Then a third write, at 400 ms, gets through at once.
        there.rng = Dice([0.9, 0.9])
        (third,) = loss.shape([Piece(100, 0.4)], there)
        return release, third.release

    # The window opens when that ACK comes: the held bytes go then, and the
    # next write finds the window open.
    assert held(Loss(0.3, rtt=0.01, window_follows_acks=True)) == pytest.approx((0.3, 0.4))
    # Without the rule they go when the lost ACK's chain ends, and the next
    # write joins them.
    assert held(Loss(0.3, rtt=0.01)) == pytest.approx((1.69, 1.69))


def test_with_window_follows_acks_a_held_segment_lost_goes_sooner_with_its_resends() -> None:
    loss = Loss(0.3, rtt=0.01, window_follows_acks=True)
    awaited = Unacked(0.0, 0.0, 0.0, 1.0, False)
    held = Held(loss, (awaited,), at=1.0)
    # Held until 1 s, then lost twice: its probe (1.21 s) too, the RTO brings
    # it at 1.42 s.
    hole = Recovery(loss, 1.0, 2, 0.21, Resend(loss, 1.21, 2, 0.21), held=held)
    assert hole.rearmed(1.42, 0.5) == (1.42, hole)
    # The awaited ACK came at 0.4 s after all: everything 0.6 s sooner.
    awaited.ack_at = 0.4
    release, late = hole.rearmed(1.42, 0.5)
    assert release == pytest.approx(0.82)
    assert isinstance(late, Recovery)
    assert (late.sent_at, late.resend.first, late.resend.arrival) == pytest.approx(
        (0.4, 0.61, 0.82)
    )
    assert late.rearmed(release, 0.5)[0] == pytest.approx(0.82), "once"
    # Without the rule it keeps its times.
    off = dataclasses.replace(hole, held=dataclasses.replace(held, fault=Loss(0.3, rtt=0.01)))
    assert off.rearmed(1.42, 0.5)[0] == 1.42


def test_with_sack_loss_a_hole_waits_for_the_sack_of_the_write_behind_it() -> None:
    loss = Loss(0.3, rtt=0.01, ack_timers=True, sack_loss=True)

    def reveal(rolls: list[float]) -> float:
        # A lone write lost once (its ACK gets through); a write at 50 ms gets
        # through; then the dice for that write's SACK.
        context = ShapeContext(now=0.0, rng=Dice([0.1, 0.9, 0.9, 0.9, *rolls]))
        (hole,) = loss.shape([Piece(100, 0.0)], context)
        assert isinstance(hole.late, Recovery) and hole.release == pytest.approx(0.21)
        loss.shape([Piece(100, 0.05)], context)
        return hole.late.revealed(hole.release, 0.05)[0]

    # The SACK gets through: the hole is sent again a round trip later.
    assert reveal([0.9]) == pytest.approx(0.06)
    # It is lost: the probe (two segments out: 2 srtt + 2 ms) sends the later
    # segment again, whose duplicate SACK, a round trip on, reveals the hole.
    assert reveal([0.1, 0.9, 0.9]) == pytest.approx(0.05 + 0.022 + 0.01)
    # The probe's duplicate is lost too: the next round is an RTO away, later
    # than the hole's own probe (its RTO, 210 ms), which recovers it.
    assert reveal([0.1, 0.9, 0.1, 0.9, 0.9]) == pytest.approx(0.21)
    # Without the rule the SACK always gets through.
    context = ShapeContext(now=0.0, rng=Dice([0.1, 0.9, 0.9, 0.9, 0.1, 0.9, 0.9]))
    plain_loss = dataclasses.replace(loss, sack_loss=False)
    (hole,) = plain_loss.shape([Piece(100, 0.0)], context)
    plain_loss.shape([Piece(100, 0.05)], context)
    assert isinstance(hole.late, Recovery)
    assert hole.late.revealed(hole.release, 0.05)[0] == pytest.approx(0.06)
