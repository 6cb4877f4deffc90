"""A rate limit: each direction of each connection sends at most ``rate`` KB/s."""

from __future__ import annotations

import math
from dataclasses import dataclass

from etcdlab.proxy.faults.base import Piece, ShapeContext, Shaper


@dataclass(frozen=True, eq=False)
class Bandwidth(Shaper):
    kind = "bandwidth"
    rate: float  # KB/s (1 KB = 1024 bytes), as Toxiproxy's bandwidth toxic

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError("rate must be a positive number of KB/s")

    def shape(self, pieces: list[Piece], ctx: ShapeContext) -> list[Piece]:
        free_at = ctx.state.get(self, 0.0)
        for piece in pieces:
            free_at = max(free_at, piece.release) + piece.size / (self.rate * 1024) * ctx.time_scale
            piece.release = free_at
        ctx.state[self] = free_at
        return pieces
