"""TCP-faithful packet loss: bytes are never lost, they arrive late.

What Linux does with a lost segment, reduced to its timing:

- If nothing else is sent behind it, timers recover it: the tail loss probe
  (with one segment in flight: 2 round trips plus 200 ms, ``min_rto``) sends
  it again; if that is lost, the retransmission timeout (``min_rto`` plus the
  round trip) fires, doubling each time the retransmission is lost again. The
  k-th loss in a row thus costs ``min_rto`` x 1, 1, 2, 4, ... (a lost SYN has
  no probe: 1 s, then 2 s more, ...).
- If another segment follows (in the same write, or a later one before the
  timer fires), the receiver's SACK of it reveals the hole and RACK marks it
  lost: at once if the later segment was sent more than a quarter of a round
  trip after it, otherwise when the reorder timer fires (``recovery``, one
  jiffy). A lost fast retransmission falls back to the timer.
- Everything sent behind a lost segment waits for it (head-of-line blocking;
  the link never releases bytes before earlier ones).
- The timers follow the sender's view of its connection (:class:`TcpState`,
  one per pipe): the retransmission timeout is the smoothed round trip plus
  ``min_rto``; the probe two smoothed round trips plus ``min_rto``, but no
  later than the RTO. A write with a segment that got through at once gives
  a round-trip sample (its ACK or SACK; Karn's rule: none from retransmitted
  data) and clears the backoff; until then the RTO stays doubled for the
  segments that follow. Loss makes some samples long: the ACK of a write is
  lost with the same probability (it rides on the reply, or is a pure ACK),
  and if the peer's probe brings it, the sample lasts that timeout
  (``ack_loss``). Linux also adds the round trip's deviation to the RTO; here
  that overshot the kernel's tail, so the model leaves it out.

Each chunk the proxy reads stands for one write by the sender and is cut into
``mss``-sized segments, each transmission rolled against ``probability``.
Every duration is multiplied by the link's ``time_scale``.

With ``method`` (HTTP/2 links) only segments that carry bytes of streams
calling that gRPC method or service can be lost; everything behind a late
segment still waits for it, whatever its stream, as TCP makes it. SYNs carry
no stream, so a filtered loss never delays the connect.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from proxy.faults.base import (
    BOTH,
    Piece,
    Recovery,
    ShapeContext,
    Shaper,
    check_duration,
    check_method,
    check_probability,
)


@dataclass
class TcpState:
    """What one sending TCP has learnt about its connection, in unscaled seconds:
    its smoothed round trip, and how many retransmission timeouts fired since
    the last round-trip sample."""

    srtt: float
    backoff: int = 0

    def sample(self, rtt: float) -> None:
        """A round-trip sample: ``srtt`` moves 1/8 of the way (Linux's
        ``tcp_rtt_estimator``), and a valid sample ends the backoff (RFC 6298)."""
        self.srtt += (rtt - self.srtt) / 8
        self.backoff = 0


@dataclass(frozen=True, eq=False)
class Loss(Shaper):
    kind = "loss"
    probability: float
    mss: int = 1448
    rtt: float = 0.0
    min_rto: float = 0.2
    syn_rto: float = 1.0
    max_rto: float = 120.0
    recovery: float = 0.004  # one jiffy at HZ=250: RACK reorder timer granularity
    tail_loss_probe: bool = True
    ack_loss: bool = True
    method: str | None = None  # "etcdserverpb.Lease/LeaseKeepAlive" or a service

    def __post_init__(self) -> None:
        super().__post_init__()
        check_method(self.method)
        check_probability("probability", self.probability)
        if self.probability >= 1.0:
            raise ValueError("probability must be below 1 (use blackhole for total loss)")
        if self.mss < 1:
            raise ValueError("mss must be at least 1 byte")
        for name in ("rtt", "min_rto", "syn_rto", "max_rto", "recovery"):
            check_duration(name, getattr(self, name))
        if self.max_rto < self.min_rto:
            raise ValueError("max_rto must be at least min_rto")

    def losses(self, rng: random.Random) -> int:
        """How many transmissions of one segment in a row are lost."""
        count = 0
        while rng.random() < self.probability:
            count += 1
        return count

    def backoff(
        self, timeouts: int, rto: float, time_scale: float, *, probe: float | None = None
    ) -> float:
        """Time spent in ``timeouts`` successive timeouts: the tail loss probe's
        ``probe`` first when given, then ``rto`` doubling each time up to ``max_rto``."""
        total = 0.0
        if probe is not None and timeouts:
            total, timeouts = probe, timeouts - 1
        for _ in range(timeouts):
            total += rto
            rto = min(rto * 2, self.max_rto)
        return total * time_scale

    def state(self, ctx: ShapeContext) -> TcpState:
        """This pipe's sender, which starts knowing only the link's round trip."""
        state = ctx.tcp.get(self)
        if state is None:
            state = ctx.tcp[self] = TcpState(self.rtt)
        return state

    def rto(self, state: TcpState) -> float:
        """The retransmission timeout now (unscaled): srtt plus ``min_rto``, doubled
        per timeout since the last sample. Linux adds the round trip's deviation
        where it exceeds ``min_rto``; that overshoots here (docs/BENCHMARKS.md)."""
        base = state.srtt + self.min_rto
        return min(base * 2.0 ** min(state.backoff, 32), self.max_rto)

    def probe_timeout(self, state: TcpState) -> float | None:
        """The tail loss probe's timeout with one segment in flight (unscaled):
        two smoothed round trips plus ``min_rto``, never later than the RTO."""
        if not self.tail_loss_probe:
            return None
        return min(2 * state.srtt + self.min_rto, self.rto(state))

    def timer_delay(self, lost: int, state: TcpState) -> float:
        """Extra delivery time (unscaled) of a lone segment lost ``lost`` times in a
        row, which only the timers recover; the timeouts it meets stay in the backoff."""
        delay = self.backoff(lost, self.rto(state), 1.0, probe=self.probe_timeout(state))
        state.backoff += lost - 1 if self.tail_loss_probe else lost
        return delay

    def acknowledged(self, state: TcpState, rng: random.Random) -> None:
        """A write got through at its first transmission: its ACK is a round-trip
        sample. With ``ack_loss`` the ACK is lost as often as data (a lost reply
        takes the ACK of its request with it). If the peer's probe then brings
        it, the sample lasts that timeout; if the probe is lost too, this
        sender's RTO resends the write first, and the peer's immediate ACK of
        the duplicate echoes the duplicate's timestamp: a short sample. ACKs
        travel the other way, so a loss in one direction only loses none; nor
        does a method filter (an ACK belongs to no stream)."""
        rtt = self.rtt
        acks_cross = self.ack_loss and self.method is None and self.direction == BOTH
        lost = acks_cross and rng.random() < self.probability
        if lost and rng.random() >= self.probability:
            probe = self.probe_timeout(state)
            rtt += self.rto(state) if probe is None else probe
        state.sample(rtt)

    def connect_delay(self, rng: random.Random, time_scale: float) -> float:
        """Extra connect time: SYN retransmissions have no probe and start at ``syn_rto``."""
        return self.backoff(self.losses(rng), self.syn_rto, time_scale)

    def fast_release(
        self, lost: Recovery, now: float, time_scale: float, *, same_write: bool = False
    ) -> float:
        """When a segment lost at ``lost.sent_at`` arrives if a later one is sent at ``now``.

        RACK marks the hole lost when the later segment's SACK arrives if that
        segment was sent more than the reorder window (a quarter of the round
        trip) after the hole, else once the window has passed, on a timer that
        fires on the next jiffy (``recovery``). A segment of the same write is
        sent right behind the hole: always the timer. Later writes are told
        apart by the caller, not by time: the loop clock may tick in whole
        milliseconds (uvloop). A lost fast retransmission waits for the RTO."""
        window = self.rtt / 4 * time_scale
        if same_write:
            settle = (self.recovery + self.rtt) * time_scale
        else:
            early = window - (now - lost.sent_at)
            settle = self.rtt * time_scale + (
                early + self.recovery * time_scale if early > 0 else 0
            )
        return now + settle + self.backoff(lost.losses - 1, lost.rto, time_scale)

    def shape(self, pieces: list[Piece], ctx: ShapeContext) -> list[Piece]:
        if not self.probability:
            return pieces
        state = self.state(ctx)
        out: list[Piece] = []
        start = 0  # offset of the piece in the chunk
        sampled = False  # a segment got through at once: its (S)ACK is a sample
        for piece in pieces:
            at, size = piece.release, piece.size
            clean = 0  # bytes of segments delivered on time, not yet emitted
            for offset in range(0, size, self.mss):
                segment = min(self.mss, size - offset)
                here = start + offset
                if not ctx.carries(self.method, here, here + segment):
                    clean += segment
                    continue
                lost = self.losses(ctx.rng)
                if not lost:
                    sampled = True
                    clean += segment
                    continue
                ctx.count(self, "segment_lost")
                if clean:
                    out.append(Piece(clean, at, piece.recovery))
                    clean = 0
                hole = Recovery(self, at, lost, self.rto(state))
                if offset + segment < size:
                    # A segment of the same write follows and gets SACKed.
                    # Its lost retransmissions wait for the RTO; one RTO resends
                    # every hole of the write, so they add nothing to the backoff.
                    release = self.fast_release(hole, at, ctx.time_scale, same_write=True)
                    out.append(Piece(segment, release))
                    continue
                timer = at + self.timer_delay(lost, state) * ctx.time_scale
                out.append(Piece(segment, timer, hole))
            if clean:
                out.append(Piece(clean, at, piece.recovery))
            start += size
        if sampled:
            self.acknowledged(state, ctx.rng)
        return out
