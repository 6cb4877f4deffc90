"""Added one-way delay with uniform jitter; bytes never overtake each other."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.faults.base import Piece, ShapeContext, Shaper, check_duration


@dataclass(frozen=True, eq=False)
class Latency(Shaper):
    kind = "latency"
    latency: float
    jitter: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_duration("latency", self.latency)
        check_duration("jitter", self.jitter)

    def shape(self, pieces: list[Piece], ctx: ShapeContext) -> list[Piece]:
        for piece in pieces:
            delay = self.latency
            if self.jitter:
                delay += ctx.rng.uniform(-self.jitter, self.jitter)
            piece.release += max(0.0, delay) * ctx.time_scale
        return pieces
