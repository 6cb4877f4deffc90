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
    Piece,
    Recovery,
    ShapeContext,
    Shaper,
    check_duration,
    check_method,
    check_probability,
)


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
        self, timeouts: int, first_rto: float, time_scale: float, *, probe: bool = False
    ) -> float:
        """Time spent in ``timeouts`` successive timeouts, doubling after the first
        (after the second when a tail loss probe comes first at the same delay)."""
        total, rto = 0.0, first_rto
        for index in range(timeouts):
            total += rto
            if not (probe and index == 0):
                rto = min(rto * 2, self.max_rto)
        return total * time_scale

    def timer_delay(self, rng: random.Random, time_scale: float) -> float:
        """Extra delivery time of a lone segment, which only the timers recover."""
        first_rto = self.min_rto + self.rtt
        return self.backoff(self.losses(rng), first_rto, time_scale, probe=self.tail_loss_probe)

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
        milliseconds (uvloop)."""
        window = self.rtt / 4 * time_scale
        if same_write:
            settle = (self.recovery + self.rtt) * time_scale
        else:
            early = window - (now - lost.sent_at)
            settle = self.rtt * time_scale + (
                early + self.recovery * time_scale if early > 0 else 0
            )
        return now + settle + self.backoff(lost.losses - 1, self.min_rto + self.rtt, time_scale)

    def shape(self, pieces: list[Piece], ctx: ShapeContext) -> list[Piece]:
        if not self.probability:
            return pieces
        first_rto = self.min_rto + self.rtt
        out: list[Piece] = []
        start = 0  # offset of the piece in the chunk
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
                    clean += segment
                    continue
                ctx.count(self, "segment_lost")
                if clean:
                    out.append(Piece(clean, at, piece.recovery))
                    clean = 0
                if offset + segment < size:
                    # A segment of the same write follows and gets SACKed.
                    fast = Recovery(self, at, lost)
                    release = self.fast_release(fast, at, ctx.time_scale, same_write=True)
                    out.append(Piece(segment, release))
                    continue
                timer = at + self.backoff(
                    lost, first_rto, ctx.time_scale, probe=self.tail_loss_probe
                )
                out.append(Piece(segment, timer, Recovery(self, at, lost)))
            if clean:
                out.append(Piece(clean, at, piece.recovery))
            start += size
        return out
