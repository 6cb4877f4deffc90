"""What one direction of a connection must do, given the faults on its link.

Sorted by the roles the faults play (:mod:`etcdlab.proxy.faults.base`), not
by their kinds, so a new kind needs nothing here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from etcdlab.proxy.faults.base import Fault, FrameFault, Shaper

# A plan's variant: a dialer (or None), or (dialer, names of faults skipped).
Variant = str | tuple[str | None, frozenset[str]] | None


@dataclass(frozen=True)
class Plan:
    """The faults acting on one direction, sorted by what the pipe must do."""

    shapers: tuple[Shaper, ...] = ()
    # Of the shapers: those that delay frames per stream
    # (etcdlab.proxy.streamlanes), and the others, which act on the byte stream.
    lanes: tuple[Shaper, ...] = ()
    fifo: tuple[Shaper, ...] = ()
    # Some shaper needs to know each frame's stream (a method filter, or a
    # loss telling the sender's writes apart): frames must be tagged with it.
    tagged: bool = False
    frame_faults: tuple[FrameFault, ...] = ()
    blackhole: Fault | None = None  # a fault that holds every byte
    pause: bool = False
    refusal: Fault | None = None  # no connection may live
    # Nothing to shape, drop or hold: bytes are written as they are read. A
    # field, not a property: the pipe asks for every chunk.
    idle: bool = True


def plan(faults: Iterable[Fault], direction: str) -> Plan:
    """The plan for ``direction`` of a connection that ``faults`` act on."""
    mine = list(faults)
    active = [f for f in mine if f.applies_to(direction)]
    shapers = tuple(f for f in active if isinstance(f, Shaper))
    lanes = tuple(f for f in shapers if f.per_stream)
    frame_faults = tuple(f for f in active if isinstance(f, FrameFault))
    blackhole = next((f for f in active if f.holds), None)
    return Plan(
        shapers=shapers,
        lanes=lanes,
        fifo=tuple(f for f in shapers if f not in lanes),
        tagged=any(f.needs_spans for f in shapers),
        frame_faults=frame_faults,
        blackhole=blackhole,
        pause=any(f.stalls for f in active),
        # A connection is refused whatever direction the fault names.
        refusal=next((f for f in mine if f.refuses), None),
        idle=not (shapers or frame_faults or blackhole),
    )
