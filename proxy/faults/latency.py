"""Added one-way delay with uniform jitter (Toxiproxy's ``latency``).

The jitter may not exceed the latency: beyond it a delay would be cut at 0
(as Toxiproxy's are), leaving a share of the bytes undelayed and the mean
above the latency asked for, no longer ``latency`` +/- ``jitter``. The
scenario files and ``etcdlab sweep`` refuse it for the same reason.

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
        Flag(
            "--jitter",
            "jitter",
            "uniform +/- jitter of --latency, e.g. 10ms; at most --latency (a delay "
            "cannot go below 0)",
        ),
    )
    latency: float = duration()
    jitter: float = duration()
    method: str | None = method()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.jitter > self.latency:
            raise ValueError(
                f"jitter must not exceed the latency ({self.latency * 1000:g} ms), not "
                f"{self.jitter * 1000:g} ms: a delay cannot go below 0"
            )

    @property
    def per_stream(self) -> bool:
        return self.method is not None

    def shape(self, pieces: list[Piece], ctx: ShapeContext) -> list[Piece]:
        for piece in pieces:
            delay = self.latency
            if self.jitter:
                delay += ctx.rng.uniform(-self.jitter, self.jitter)
            piece.release += max(0.0, delay)  # uniform() may round a hair below -latency
        return pieces
