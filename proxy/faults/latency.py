"""Added one-way delay with uniform jitter (Toxiproxy's ``latency``).

Without ``method`` bytes never overtake each other. With ``method`` (HTTP/2
links) only the frames of streams calling that gRPC method or service are
delayed, and the other streams' frames overtake them (see :mod:`etcdlab.proxy.streamlanes`).
"""

from __future__ import annotations

from dataclasses import dataclass

from etcdlab.proxy.faults.base import Flag, Piece, ShapeContext, Shaper, duration, method
from etcdlab.proxy.faults.registry import register


@register
@dataclass(frozen=True, eq=False)
class Latency(Shaper):
    kind = "latency"
    flags = (
        Flag("--latency", "latency", "added one-way delay, e.g. 50ms"),
        Flag("--jitter", "jitter", "uniform +/- jitter of --latency, e.g. 10ms"),
    )
    latency: float = duration()
    jitter: float = duration()
    method: str | None = method()

    @property
    def per_stream(self) -> bool:
        return self.method is not None

    def shape(self, pieces: list[Piece], ctx: ShapeContext) -> list[Piece]:
        for piece in pieces:
            delay = self.latency
            if self.jitter:
                delay += ctx.rng.uniform(-self.jitter, self.jitter)
            piece.release += max(0.0, delay)
        return pieces
