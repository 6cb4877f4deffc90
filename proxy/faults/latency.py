"""Added one-way delay with uniform jitter.

Without ``method`` bytes never overtake each other. With ``method`` (HTTP/2
links) only the frames of streams calling that gRPC method or service are
delayed, and the other streams' frames overtake them (see :mod:`etcdlab.proxy.streamlanes`).
"""

from __future__ import annotations

from dataclasses import dataclass

from etcdlab.proxy.faults.base import Piece, ShapeContext, Shaper, check_duration, check_method


@dataclass(frozen=True, eq=False)
class Latency(Shaper):
    kind = "latency"
    latency: float
    jitter: float = 0.0
    method: str | None = None  # "etcdserverpb.Lease/LeaseKeepAlive" or a service

    def __post_init__(self) -> None:
        super().__post_init__()
        check_duration("latency", self.latency)
        check_duration("jitter", self.jitter)
        check_method(self.method)

    def shape(self, pieces: list[Piece], ctx: ShapeContext) -> list[Piece]:
        for piece in pieces:
            delay = self.latency
            if self.jitter:
                delay += ctx.rng.uniform(-self.jitter, self.jitter)
            piece.release += max(0.0, delay) * ctx.time_scale
        return pieces
