"""TCP-faithful packet loss: bytes are never lost, they arrive late.

The kernel retransmits a lost segment after a retransmission timeout (Linux:
at least 200 ms plus the round trip), doubling the timeout each time the
retransmission is lost again; everything sent behind it on the connection
waits (head-of-line blocking, which the link enforces by never releasing
bytes before earlier ones). A lost SYN costs 1 s, then 2 s more, and so on.
Each chunk the proxy reads is cut into ``mss``-sized segments, one loss roll
per transmission of each.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from proxy.faults.base import Piece, ShapeContext, Shaper, check_duration, check_probability


@dataclass(frozen=True, eq=False)
class Loss(Shaper):
    kind = "loss"
    probability: float
    mss: int = 1448
    rtt: float = 0.0
    min_rto: float = 0.2
    syn_rto: float = 1.0
    max_rto: float = 120.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_probability("probability", self.probability)
        if self.probability >= 1.0:
            raise ValueError("probability must be below 1 (use blackhole for total loss)")
        if self.mss < 1:
            raise ValueError("mss must be at least 1 byte")
        for name in ("rtt", "min_rto", "syn_rto", "max_rto"):
            check_duration(name, getattr(self, name))
        if self.max_rto < self.min_rto:
            raise ValueError("max_rto must be at least min_rto")

    def retransmission_delay(
        self, rng: random.Random, first_rto: float, time_scale: float
    ) -> float:
        """Extra delivery time of one transmission: 0 unless the dice say it is lost."""
        delay = 0.0
        rto = first_rto * time_scale
        cap = self.max_rto * time_scale
        while rng.random() < self.probability:
            delay += rto
            rto = min(rto * 2, cap)
        return delay

    def connect_delay(self, rng: random.Random, time_scale: float) -> float:
        return self.retransmission_delay(rng, self.syn_rto, time_scale)

    def shape(self, pieces: list[Piece], ctx: ShapeContext) -> list[Piece]:
        first_rto = self.min_rto + self.rtt
        out: list[Piece] = []
        for size, at in pieces:
            pending, pending_at = 0, at
            for offset in range(0, size, self.mss):
                segment = min(self.mss, size - offset)
                release = at + self.retransmission_delay(ctx.rng, first_rto, ctx.time_scale)
                if release != pending_at and pending:
                    out.append((pending, pending_at))
                    pending = 0
                pending += segment
                pending_at = release
            if pending:
                out.append((pending, pending_at))
        return out
