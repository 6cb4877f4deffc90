"""What every fault has: a direction, a name, JSON attributes, and validation.

``upstream`` is client to server, ``downstream`` server to client (Toxiproxy's
names). Durations are real seconds; the link multiplies them by its
``time_scale`` when it applies them.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from proxy.faults.loss import Resend, TcpState, Unacked
    from proxy.streamlanes import FrameSpans

UPSTREAM = "upstream"
DOWNSTREAM = "downstream"
BOTH = "both"
DIRECTIONS = (UPSTREAM, DOWNSTREAM, BOTH)


class Piece:
    """``size`` bytes of a chunk, deliverable at ``release`` (event loop clock).

    ``recovery`` is set when the release waits on a retransmission timeout that
    a later segment on the same connection could cut short, ``resend`` when
    the bytes were lost and are sent again (see :mod:`loss`).
    Bytes are never delivered before earlier ones, whatever their release.
    """

    __slots__ = ("recovery", "release", "resend", "size")

    def __init__(
        self,
        size: int,
        release: float,
        recovery: Recovery | None = None,
        resend: Resend | None = None,
    ) -> None:
        self.size = size
        self.release = release
        self.recovery = recovery
        self.resend = resend

    def __repr__(self) -> str:
        return f"Piece({self.size}, {self.release:.6f}, recovery={self.recovery})"


@dataclass(frozen=True)
class Recovery:
    """A lost segment, sent at ``sent_at``, whose transmissions were lost ``losses`` times;
    ``rto`` (unscaled seconds) is the sender's retransmission timeout when it was lost.

    ``fast_probe_at`` (loop time) is set when its tail loss probe is the fast
    one, which other data in flight allows: an ACK of that data arriving
    earlier re-arms the probe as for a lone segment, ``slow_probe`` (unscaled)."""

    fault: Fault
    sent_at: float
    losses: int
    rto: float
    fast_probe_at: float | None = None
    slow_probe: float = 0.0
    # The write it ends and its sender, whose view of it follows it when it moves.
    write: Unacked | None = None
    sender: TcpState | None = None


@dataclass(frozen=True, eq=False, kw_only=True)
class Fault:
    """A fault applied to a link; instances compare by identity."""

    kind: ClassVar[str] = ""
    direction: str = BOTH
    name: str = ""
    # Raw (peer) links only: apply to connections dialed by this etcd member,
    # named by the hex member ID its rafthttp requests carry in X-Server-From.
    dialer: str | None = None
    # Probability that the fault acts on a given connection (Toxiproxy's
    # toxicity), decided once per connection from the link's seed.
    toxicity: float = 1.0

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
        check_probability("toxicity", self.toxicity)
        if self.dialer is not None and not _is_member_id(self.dialer):
            raise ValueError("dialer must be an etcd member ID in hex, like 8e9e05c52164694d")

    def applies_to(self, direction: str) -> bool:
        return self.direction in (BOTH, direction)

    def attributes(self) -> dict[str, Any]:
        """The kind-specific parameters, as the control API shows them."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in _COMMON and (f.name != "dialer" or self.dialer)
        }

    @classmethod
    def from_attributes(cls, attributes: dict[str, Any], **common: Any) -> Fault:
        names = {f.name for f in dataclasses.fields(cls)} - _COMMON
        unknown = set(attributes) - names
        if unknown:
            raise ValueError(f"unknown attribute(s) for {cls.kind}: {', '.join(sorted(unknown))}")
        return cls(**attributes, **common)


# Fields every toxic carries outside its attributes (the control API's JSON).
_COMMON = frozenset({"direction", "name", "toxicity"})


def _is_member_id(text: str) -> bool:
    try:
        return 0 < int(text, 16) < 2**64 and text == text.lower().lstrip("0")
    except ValueError:
        return False


@dataclass
class ShapeContext:
    """What a shaper may use: the loop time, this pipe's randomness and state.

    ``spans`` tells which bytes of the chunk belong to which gRPC method, set
    on HTTP/2 links while a shaper filters by method. A shaper reports what it
    did in ``applied`` (fault -> (what, count)); the link counts it.
    """

    now: float
    rng: random.Random
    time_scale: float
    state: dict[Fault, float] = field(default_factory=dict)
    # The sending TCP's timer state per loss fault (proxy.faults.loss).
    tcp: dict[Fault, TcpState] = field(default_factory=dict)
    # The same for the connection's other direction, whose data carries the
    # ACKs of this one's.
    peer_tcp: dict[Fault, TcpState] | None = None
    spans: FrameSpans | None = None
    applied: dict[tuple[Fault, str], int] = field(default_factory=dict)

    def carries(self, method: str | None, start: int, end: int) -> bool:
        """May a shaper filtered to ``method`` act on bytes ``start:end`` of the chunk?"""
        if method is None:
            return True
        return self.spans is not None and self.spans.carries(method, start, end)

    def count(self, fault: Fault, what: str) -> None:
        key = (fault, what)
        self.applied[key] = self.applied.get(key, 0) + 1


@dataclass(frozen=True, eq=False, kw_only=True)
class Shaper(Fault):
    """A fault that decides when bytes are delivered (never whether)."""

    def shape(self, pieces: list[Piece], ctx: ShapeContext) -> list[Piece]:
        raise NotImplementedError


def check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")


def check_method(method: str | None) -> None:
    if method is not None and (not method or method.startswith("/")):
        raise ValueError("method must look like 'package.Service' or 'package.Service/Method'")


def method_matches(method: str | None, path: str | None) -> bool:
    """Does a stream calling ``path`` (``/pkg.Service/Method``) fall under ``method``
    (a full method, a service, or None for every stream)?"""
    if method is None:
        return True
    if path is None:
        return False
    name = path[1:]
    return name == method or name.startswith(method + "/")


def check_duration(name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number of seconds >= 0")
