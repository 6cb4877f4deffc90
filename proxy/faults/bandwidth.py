"""A rate limit: each direction of each connection sends at most ``rate`` KB/s
(1 KB = 1024 bytes), as Toxiproxy's ``bandwidth``."""

from __future__ import annotations

from dataclasses import dataclass

from etcdlab.proxy.faults.base import Piece, ShapeContext, Shaper, rate
from etcdlab.proxy.faults.registry import register


@register
@dataclass(frozen=True, eq=False)
class Bandwidth(Shaper):
    kind = "bandwidth"
    rate: float = rate(1024.0)  # KB/s

    def shape(self, pieces: list[Piece], ctx: ShapeContext) -> list[Piece]:
        free_at: float = ctx.state.get(self, 0.0)
        for piece in pieces:
            free_at = max(free_at, piece.release) + piece.size / (self.rate * 1024)
            piece.release = free_at
        ctx.state[self] = free_at
        return pieces
