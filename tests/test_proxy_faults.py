"""Fault models on their own: pure functions of (bytes, time, seeded randomness)."""

from __future__ import annotations

import random

import pytest

from proxy.faults import Bandwidth, FrameLoss, Latency, Loss
from proxy.faults.base import Piece, Recovery, ShapeContext
from proxy.faults.frames import Action
from proxy.faults.loss import TcpState


def ctx(seed: int = 1, time_scale: float = 1.0) -> ShapeContext:
    return ShapeContext(now=0.0, rng=random.Random(seed), time_scale=time_scale)


def plain(pieces: list[Piece]) -> list[tuple[int, float]]:
    return [(p.size, p.release) for p in pieces]


def test_no_loss_means_no_delay() -> None:
    assert plain(Loss(0.0).shape([Piece(5000, 1.0)], ctx())) == [(5000, 1.0)]


def test_lost_segments_wait_for_probe_then_doubling_rto() -> None:
    loss = Loss(0.5)
    rng = random.Random(7)
    # A fresh sender each time: no round trip learnt, no backoff yet.
    delays = [round(loss.timer_delay(loss.losses(rng), TcpState(0.0)), 6) for _ in range(20000)]
    # Tail loss probe at 200 ms, then RTO 200 ms, 400 ms, 800 ms...: 0.2, 0.4, 0.8, 1.6.
    assert {d for d in delays if d < 60} <= {0.0, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2}
    share_lost = sum(d > 0 for d in delays) / len(delays)
    assert 0.48 < share_lost < 0.52
    share_twice = sum(d > 0.3 for d in delays) / len(delays)
    assert 0.23 < share_twice < 0.27
    no_probe = Loss(0.5, tail_loss_probe=False)
    assert no_probe.backoff(3, 0.2, 1.0) == pytest.approx(1.4)
    assert loss.backoff(3, 0.2, 1.0, probe=0.2) == pytest.approx(0.8)
    assert loss.backoff(3, 0.2, 1.0, probe=0.25) == pytest.approx(0.85)


def test_time_scale_shrinks_every_delay() -> None:
    loss = Loss(0.3)
    full, scaled = ctx(seed=3), ctx(seed=3, time_scale=0.1)
    for _ in range(200):
        (*_, a) = loss.shape([Piece(100, 0.0)], full)
        (*_, b) = loss.shape([Piece(100, 0.0)], scaled)
        assert b.release == pytest.approx(a.release * 0.1)
    # The sender's state is kept unscaled, so both learnt the same round trip.
    assert scaled.tcp[loss] == full.tcp[loss]
    assert full.tcp[loss].srtt > 0, "lost ACKs made some samples long"


class Dice(random.Random):
    """Randomness that returns the given rolls, in order."""

    def __init__(self, rolls: list[float]) -> None:
        super().__init__(0)
        self.rolls = rolls

    def random(self) -> float:
        return self.rolls.pop(0)


def test_syn_loss_costs_one_then_three_seconds() -> None:
    loss = Loss(0.3)
    assert loss.connect_delay(Dice([0.9]), 1.0) == 0.0
    assert loss.connect_delay(Dice([0.1, 0.9]), 1.0) == 1.0
    assert loss.connect_delay(Dice([0.1, 0.1, 0.9]), 1.0) == 3.0


def test_chunk_is_cut_into_segments() -> None:
    loss = Loss(0.5, mss=100)
    pieces = loss.shape([Piece(1050, 0.0)], ctx(seed=11))
    assert sum(p.size for p in pieces) == 1050
    assert all(p.size % 100 in (0, 50) for p in pieces)
    assert any(p.release > 0 for p in pieces), "seed 11 loses some of eleven segments"
    # Lost segments followed by more of the same write are fast-retransmitted;
    # only the last segment of a write waits for the timer, and may be cut short.
    early = pieces[:-1]
    assert all(p.recovery is None for p in early)
    assert all(p.release < 0.2 or p.release >= 0.2 + 0.004 for p in early)


def test_a_later_write_cuts_the_timer_short() -> None:
    loss = Loss(0.3)
    dice = ctx(seed=0)
    while True:
        (piece,) = loss.shape([Piece(100, 0.0)], dice)
        if piece.release:
            break
    assert piece.recovery is not None and piece.release >= 0.2
    fast = loss.fast_release(piece.recovery, 0.05, 1.0)
    retransmissions_lost = piece.recovery.losses - 1
    # Sent well after the hole: its SACK marks the hole lost at once.
    rto = piece.recovery.rto
    assert fast == pytest.approx(0.05 + loss.backoff(retransmissions_lost, rto, 1.0))


def test_only_a_segment_right_behind_the_hole_waits_for_the_reorder_timer() -> None:
    loss = Loss(0.3, rtt=0.02, recovery=0.002)
    lost = Recovery(loss, sent_at=1.0, losses=1, rto=0.22)
    # The same write: the reorder timer, whatever the clock says.
    assert loss.fast_release(lost, 1.0, 1.0, same_write=True) == pytest.approx(1.0 + 0.022)
    # A later write within the reorder window (a quarter of the round trip):
    # the window's rest, then the timer's tick.
    assert loss.fast_release(lost, 1.004, 1.0) == pytest.approx(1.004 + 0.02 + 0.001 + 0.002)
    # Beyond it: one round trip after the later segment is sent.
    assert loss.fast_release(lost, 1.006, 1.0) == pytest.approx(1.006 + 0.02)
    # The window scales with time too.
    assert loss.fast_release(lost, 1.0006, 0.1) == pytest.approx(1.0006 + 0.002)
    # Without a round trip a later write is always beyond the window.
    loopback = Loss(0.3)
    hole = Recovery(loopback, sent_at=1.0, losses=1, rto=0.2)
    assert loopback.fast_release(hole, 1.0, 1.0) == 1.0
    assert loopback.fast_release(hole, 1.0, 1.0, same_write=True) == pytest.approx(1.004)


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


def write(loss: Loss, context: ShapeContext, at: float = 0.0) -> float:
    """Delay of a one-segment write."""
    (piece,) = loss.shape([Piece(100, at)], context)
    return round(piece.release - at, 6)


def test_backoff_lasts_until_a_write_gets_through_whole() -> None:
    loss = Loss(0.5, ack_loss=False)
    # Writes lost three times, twice, not at all, twice.
    rolls = [0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.9, 0.9, 0.1, 0.1, 0.9]
    context = ShapeContext(now=0.0, rng=Dice(rolls), time_scale=1.0)
    # Lost three times: probe, RTO, doubled RTO; two timeouts stay in the backoff.
    assert write(loss, context) == 0.8
    assert context.tcp[loss].backoff == 2
    # Retransmitted data gives no sample (Karn): the next loss starts backed off.
    assert write(loss, context) == pytest.approx(0.2 + 0.8)
    assert context.tcp[loss].backoff == 3
    # A write that gets through clears it.
    assert write(loss, context) == 0.0
    assert context.tcp[loss].backoff == 0
    assert write(loss, context) == pytest.approx(0.4)


def test_lost_acks_stretch_the_timers() -> None:
    loss = Loss(0.5)
    # Each write's rolls, then its ACK's when it got through: the first ACK is
    # lost and the peer's probe (200 ms) brings it; the fourth is lost twice,
    # so this sender's RTO resends and the duplicate's ACK is a short sample.
    rolls = [0.9, 0.1, 0.9, 0.1, 0.9, 0.1, 0.1, 0.9, 0.9, 0.1, 0.1, 0.9, 0.9]
    context = ShapeContext(now=0.0, rng=Dice(rolls), time_scale=1.0)
    assert write(loss, context) == 0.0
    state = context.tcp[loss]
    assert state.srtt == pytest.approx(0.025)
    # The probe and the RTO now come 25 ms later ...
    assert write(loss, context) == pytest.approx(0.225)
    assert write(loss, context) == pytest.approx(0.225 + 0.225)
    # ... until short samples bring srtt back down.
    assert write(loss, context) == 0.0
    assert write(loss, context) == 0.0
    assert state.srtt == pytest.approx(0.025 * 7 / 8 * 7 / 8)
    assert not context.rng.rolls  # type: ignore[attr-defined]
    # A method-filtered loss loses no ACKs, nor does a loss in one direction
    # (the ACKs cross the clean one): no roll is spent on them.
    for clean_acks in (Loss(0.5, method="etcdserverpb.KV"), Loss(0.5, direction="upstream")):
        dice = Dice([0.1])
        state = TcpState(0.0)
        clean_acks.acknowledged(state, dice)
        assert dice.rolls == [0.1]
        assert state.srtt == 0.0


def test_same_seed_same_decisions() -> None:
    loss = Loss(0.3)
    first = plain(loss.shape([Piece(100_000, 0.0)], ctx(seed=5)))
    assert first == plain(loss.shape([Piece(100_000, 0.0)], ctx(seed=5)))
    assert first != plain(loss.shape([Piece(100_000, 0.0)], ctx(seed=6)))


def test_latency_with_jitter_stays_within_bounds() -> None:
    pieces = Latency(0.05, jitter=0.01).shape([Piece(1, 0.0) for _ in range(200)], ctx(0, 0.5))
    assert all(0.02 - 1e-9 <= p.release <= 0.03 + 1e-9 for p in pieces)


def test_bandwidth_spaces_bytes_out() -> None:
    context = ctx()
    limit = Bandwidth(10)  # 10 KB/s
    first = limit.shape([Piece(10240, 0.0)], context)
    second = limit.shape([Piece(5120, 0.2)], context)
    assert plain(first) == [(10240, 1.0)]
    assert plain(second) == [(5120, 1.5)]


def test_frame_loss_filter() -> None:
    lease = FrameLoss(1.0, pings=False, messages=True, method="etcdserverpb.Lease")
    rng = random.Random(0)
    assert lease.on_data("/etcdserverpb.Lease/LeaseKeepAlive", True, rng) is Action.DROP
    assert lease.on_data("/etcdserverpb.KV/Range", True, rng) is Action.PASS
    assert lease.on_data(None, True, rng) is Action.PASS
    # Filtered faults never drop connection-level PINGs.
    assert FrameLoss(1.0, method="etcdserverpb.KV").on_ping(rng) is Action.PASS
    assert FrameLoss(1.0).on_ping(rng) is Action.DROP


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Loss(1.5), "probability"),
        (lambda: Loss(1.0), "blackhole"),
        (lambda: Loss(0.1, mss=0), "mss"),
        (lambda: Loss(0.1, min_rto=-1), "min_rto"),
        (lambda: Latency(0.1, direction="sideways"), "direction"),
        (lambda: Bandwidth(0), "rate"),
        (lambda: FrameLoss(0.1, pings=False), "at least one"),
        (lambda: FrameLoss(0.1, method="/x"), "method"),
    ],
)
def test_validation_names_the_field(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]
