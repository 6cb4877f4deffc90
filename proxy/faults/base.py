"""What every fault kind has, and the roles through which a link applies it.

A kind is one dataclass in one module of this package, registered with
:func:`etcdlab.proxy.faults.registry.register`. Its fields are its parameters;
the metadata of each (:func:`duration`, :func:`rate`, :func:`probability`,
:func:`method`) says its unit, from which the parsing from the control API's
JSON and TOML (durations in milliseconds, as Toxiproxy), from the command line
(durations with a unit: ``50ms``) and the time scaling follow. Errors name the
field.

``upstream`` is client to server, ``downstream`` server to client (Toxiproxy's
names). A fault as written (by a caller, a flag, a toxic) is in real seconds;
:meth:`Fault.scaled` gives the one a link runs, every duration multiplied by
the run's time scale once, at the edge where the fault enters the proxy.

The link knows roles, not kinds: a :class:`Shaper` decides when bytes are
delivered, a :class:`FrameFault` decides which HTTP/2 frames pass, and the
class flags ``holds``, ``stalls``, ``refuses`` and ``resets_open`` ask for the
connection-level effects the link implements.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Protocol, Self

from etcdlab.common.timescale import TimeScale
from etcdlab.proxy.methods import check_method
from etcdlab.proxy.streamlanes import FrameSpans

UPSTREAM = "upstream"
DOWNSTREAM = "downstream"
BOTH = "both"
DIRECTIONS = (UPSTREAM, DOWNSTREAM, BOTH)

# Field units (dataclass field metadata "unit").
DURATION = "duration"  # seconds; milliseconds in JSON/TOML; a unit on the command line
RATE = "rate"  # per second: divided by the time scale
PROBABILITY = "probability"  # 0..1
METHOD = "method"  # a gRPC method or service the fault is limited to

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}

# Where a fault's values come from, each writing a duration its own way.
PYTHON = "python"  # keywords: seconds
JSON = "json"  # the control API's JSON and TOML: milliseconds
TEXT = "text"  # the command line: a unit required


def spelled(value: Any) -> str:
    """``value`` as the control API's JSON (and TOML) spells it, for error messages:
    a user who sent ``true`` or ``"5ms"`` must not read Python's ``True`` or ``'5ms'``."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def duration(default: float | None = 0.0) -> Any:
    """A duration field (seconds); ``None``: no default, the parameter is required."""
    return _field(default, DURATION)


def rate(default: float | None = None) -> Any:
    """A per-second rate field (required unless given a default)."""
    return _field(default, RATE)


def probability(default: float | None = None) -> Any:
    """A probability field, 0..1 (required unless given a default)."""
    return _field(default, PROBABILITY)


def method() -> Any:
    """The gRPC method filter: ``"etcdserverpb.Lease/LeaseKeepAlive"`` or a service."""
    return _field(None, METHOD, required=False)


def _field(default: Any, unit: str, *, required: bool | None = None) -> Any:
    if default is None and required is not False:
        return field(metadata={"unit": unit})
    return field(default=default, metadata={"unit": unit})


def parse_duration(text: str) -> float:
    """``50ms``, ``1.5s`` or ``2m`` in seconds; a bare number is refused, since
    Toxiproxy users read milliseconds where others read seconds."""
    text = text.strip()
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            try:
                value = float(text[: -len(suffix)]) * _UNITS[suffix]
            except ValueError:
                break
            if value < 0:
                raise ValueError(f"must not be negative, not {text!r}")
            if not math.isfinite(value):
                raise ValueError(f"must be a finite duration, not {text!r}")
            return value
    try:
        float(text)
    except ValueError:
        raise ValueError(f"not a duration (like 50ms, 1.5s): {text!r}") from None
    raise ValueError(f"a duration needs a unit (ms, s or m), like 50ms or 1.5s, not {text!r}")


@dataclass(frozen=True)
class Param:
    """One parameter of a kind: its field name, Python type, unit, and whether None is allowed."""

    name: str
    type: type
    unit: str | None
    optional: bool

    def check(self, value: Any) -> None:
        """Raise ValueError naming the field unless ``value`` has this parameter's type."""
        if value is None and self.optional:
            return
        if self.type is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif self.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, self.type)
        if not ok:
            raise ValueError(
                f"{self.name} must be {_DESCRIPTIONS[self.type]}, not {spelled(value)}"
            )

    def from_json(self, value: Any) -> Any:
        """The value from the control API's JSON or a TOML file (durations in milliseconds)."""
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if self.unit == DURATION and not (number and value >= 0 and math.isfinite(value)):
            # Checked here, in the API's unit: the fault itself checks seconds.
            raise ValueError(
                f"{self.name} must be a finite number of milliseconds >= 0, not {spelled(value)}"
            )
        self.check(value)
        if self.unit == DURATION:
            return value / 1000
        return float(value) if self.type is float else value

    def wanted(self, source: str) -> str:
        """What a value of this parameter is, as ``source`` (PYTHON, JSON, TEXT) writes it."""
        if self.unit == DURATION:
            return {
                PYTHON: "seconds >= 0",
                JSON: "milliseconds >= 0",
                TEXT: "a duration with a unit, like 50ms",
            }[source]
        if self.unit == PROBABILITY:
            return "a number between 0 and 1"
        return _DESCRIPTIONS[self.type]

    def to_json(self, value: Any) -> Any:
        # Rounded to picoseconds so a value read back from JSON is the one written.
        return round(value * 1000, 9) if self.unit == DURATION else value

    def from_text(self, text: str) -> Any:
        """The value from the command line: durations need a unit."""
        try:
            return self._from_text(text)
        except ValueError as error:
            raise ValueError(f"{self.name}: {error}") from None

    def _from_text(self, text: str) -> Any:
        if self.unit == DURATION:
            return parse_duration(text)
        if self.type is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(f"must be true or false, not {text!r}")
            return text.lower() == "true"
        if self.type in (int, float):
            try:
                return self.type(text)
            except ValueError:
                raise ValueError(f"must be {_DESCRIPTIONS[self.type]}, not {text!r}") from None
        return text


_DESCRIPTIONS = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
}


class Action(Enum):
    """What a :class:`FrameFault` does with one frame."""

    PASS = "pass"
    DROP = "drop"
    KILL_STREAM = "kill_stream"


@dataclass(frozen=True, eq=False, kw_only=True)
class Fault:
    """A fault applied to a link; instances compare by identity.

    An unnamed fault is named ``<kind>_<direction>``.
    """

    # The kind's name (the toxic's ``type``), set by every kind.
    kind: ClassVar[str] = ""
    # Command-line shorthands (see :class:`Flag`).
    flags: ClassVar[tuple[Flag, ...]] = ()
    # Toxiproxy toxic types read as this kind (see :class:`Alias`).
    aliases: ClassVar[tuple[Alias, ...]] = ()
    # Connection effects the link implements for the kinds that ask:
    holds: ClassVar[bool] = False  # bytes are held, not delivered, while it is on
    stalls: ClassVar[bool] = False  # the link stops reading from the sender
    refuses: ClassVar[bool] = False  # new connections are reset at once
    resets_open: ClassVar[bool] = False  # open connections are reset when it is added

    direction: str = BOTH
    name: str = ""
    # Raw (peer) links only: apply to connections dialed by this etcd member,
    # named by the hex member ID its rafthttp requests carry in X-Server-From.
    dialer: str | None = None
    # Probability that the fault acts on a given connection (Toxiproxy's
    # toxicity), decided once per connection from the link's seed.
    toxicity: float = 1.0
    # The fault as written, in real seconds, when this one was scaled from it:
    # what the control API shows.
    written: Fault | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
        if not isinstance(self.name, str) or "/" in self.name:
            raise ValueError(f'name must be a string without "/", not {spelled(self.name)}')
        if not self.name:
            object.__setattr__(self, "name", f"{self.kind}_{self.direction}")
        _check_probability("toxicity", self.toxicity)
        if self.dialer is not None and not _is_member_id(self.dialer):
            raise ValueError("dialer must be an etcd member ID in hex, like 8e9e05c52164694d")
        for param in self.params():
            value = getattr(self, param.name)
            param.check(value)
            if value is None:
                continue
            if param.unit == DURATION and not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{param.name} must be a finite number of seconds >= 0")
            if param.unit == RATE and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{param.name} must be a positive finite number, not {value:g}")
            if param.unit == PROBABILITY:
                _check_probability(param.name, value)
            if param.unit == METHOD:
                check_method(value)

    @classmethod
    @functools.cache
    def params(cls) -> tuple[Param, ...]:
        """The kind's own parameters (not the fields every fault has)."""
        hints = typing.get_type_hints(cls)
        found = []
        for each in dataclasses.fields(cls):
            if each.name in _COMMON:
                continue
            hint = hints[each.name]
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            base = args[0] if args else hint
            optional = bool(args)
            found.append(Param(each.name, base, each.metadata.get("unit"), optional))
        return tuple(found)

    # -- building --------------------------------------------------------------

    @classmethod
    def build(cls, attributes: Mapping[str, Any], **common: Any) -> Self:
        """From Python values (seconds), as keywords name them; ValueError naming the field."""
        _no_unknown(cls, attributes, PYTHON)
        return cls(**attributes, **common)

    @classmethod
    def from_json(cls, attributes: Mapping[str, Any], **common: Any) -> Self:
        """From a toxic's ``attributes`` (control API, TOML): durations in milliseconds."""
        _no_unknown(cls, attributes, JSON)
        params = {p.name: p for p in cls.params()}
        return cls(**{k: params[k].from_json(v) for k, v in attributes.items()}, **common)

    @classmethod
    def from_text(cls, attributes: Mapping[str, str], **common: Any) -> Self:
        """From command-line text (``latency=50ms``): durations need a unit."""
        _no_unknown(cls, attributes, TEXT)
        params = {p.name: p for p in cls.params()}
        return cls(**{k: params[k].from_text(v) for k, v in attributes.items()}, **common)

    def to_json(self) -> dict[str, Any]:
        """The toxic's ``attributes`` as the control API shows them (None left out)."""
        return {
            p.name: p.to_json(getattr(self, p.name))
            for p in self.params()
            if getattr(self, p.name) is not None
        }

    def scaled(self, scale: TimeScale) -> Self:
        """This fault on a run's clock: durations times ``scale``, rates divided by it."""
        if float(scale) == 1.0:
            return self
        changes: dict[str, Any] = {"written": self}
        for param in self.params():
            value = getattr(self, param.name)
            if param.unit == DURATION:
                changes[param.name] = scale.scaled(value)
            elif param.unit == RATE:
                changes[param.name] = scale.unscaled(value)
        return dataclasses.replace(self, **changes)

    @property
    def as_written(self) -> Fault:
        """The fault in real seconds, as it was written before scaling."""
        return self.written or self

    # -- what the link asks ------------------------------------------------------

    def applies_to(self, direction: str) -> bool:
        return self.direction in (BOTH, direction)

    @property
    def method_filter(self) -> str | None:
        """The gRPC method or service the fault is limited to (None: every stream)."""
        for param in self.params():
            if param.unit == METHOD:
                value: str | None = getattr(self, param.name)
                return value
        return None

    @property
    def frame_aware(self) -> bool:
        """Must the link parse every frame while this fault is on?"""
        return self.method_filter is not None

    def needs_http2(self) -> str | None:
        """Why this fault cannot run on a raw TCP link (None if it can)."""
        if self.method_filter is not None:
            return "method: a method filter needs HTTP/2"
        return None


# Fields every toxic carries outside its attributes (the control API's JSON),
# and the one that records the scaling.
_COMMON = frozenset({"direction", "name", "toxicity", "written", "dialer"})


@dataclass(frozen=True)
class Alias:
    """A Toxiproxy toxic type read as this kind, and the attribute values it
    must carry (Toxiproxy's ``timeout`` with ``timeout: 0`` is a blackhole)."""

    type: str
    fixed: Mapping[str, Any]


@dataclass(frozen=True)
class Flag:
    """A command-line shorthand for one parameter: ``--latency 50ms`` sets ``latency``.

    Giving any of a kind's flags adds that kind. Kinds that share an option
    tell themselves apart by ``model``, chosen with ``--<option>-model``; the
    one marked ``default`` is taken when it is not given.
    """

    option: str
    param: str
    help: str
    model: str | None = None
    default: bool = False


def _no_unknown(cls: type[Fault], attributes: Mapping[str, Any], source: str) -> None:
    """Every key names a parameter, and every required parameter is there (the
    error names the first missing one and what to give it, as ``source`` writes it)."""
    known = {p.name for p in cls.params()}
    unknown = set(attributes) - known
    if unknown:
        raise ValueError(
            f"unknown attribute(s) for {cls.kind}: {', '.join(sorted(unknown))}"
            f" (known: {', '.join(sorted(known)) or 'none'})"
        )
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = [p for p in cls.params() if p.name in required and p.name not in attributes]
    if missing:
        first = missing[0]
        raise ValueError(f"a {cls.kind} fault needs {first.name}: give it {first.wanted(source)}")


def _check_probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number between 0 and 1, not {spelled(value)}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, not {spelled(value)}")


def _is_member_id(text: str) -> bool:
    try:
        return 0 < int(text, 16) < 2**64 and text == text.lower().lstrip("0")
    except (TypeError, ValueError):
        return False


class Late(Protocol):
    """A piece held back by its fault's timers (a lost segment, sent again
    until a send gets through, see :mod:`etcdlab.proxy.faults.loss`). Later
    traffic may cut the wait short, and so does removing the fault."""

    @property
    def fault(self) -> Fault:
        """The fault holding it back."""
        ...

    def revealed(self, release: float, arrival: float) -> tuple[float, Late]:
        """Its release if later bytes reach the receiver at ``arrival``, and
        what to keep of it."""
        ...

    def rearmed(self, release: float, acked_at: float) -> tuple[float, Late]:
        """Its release if an ACK of the other data in flight arrives at
        ``acked_at``, and what to keep of it for later bytes."""
        ...

    def healed(self, at: float) -> float:
        """Its release if its fault is removed at ``at`` (loop time): the
        first send from then on gets through, as on a clean network."""
        ...


class Piece:
    """``size`` bytes of a chunk, deliverable at ``release`` (event loop clock).

    ``late`` is set when the release waits on its fault's timers, which later
    traffic on the same connection or the fault's removal could cut short.
    Bytes are never delivered before earlier ones, whatever their release.
    """

    __slots__ = ("late", "release", "size")

    def __init__(self, size: int, release: float, late: Late | None = None) -> None:
        self.size = size
        self.release = release
        self.late = late

    def __repr__(self) -> str:
        return f"Piece({self.size}, {self.release:.6f}, late={self.late})"


class Due(Protocol):
    """Bytes due at ``release``, held back by ``late`` if a fault's timers do
    (a :class:`Piece`, or the bytes a pipe has queued)."""

    release: float
    late: Late | None


def reveal(held: Iterable[Due], arrival: float) -> None:
    """Later bytes reach the receiver at ``arrival``: their SACK reveals each
    hole among ``held`` still due after that (:meth:`Late.revealed`; if they
    are lost too, only once they arrive)."""
    for due in held:
        if due.late is not None and due.release > arrival:
            due.release, due.late = due.late.revealed(due.release, arrival)


@dataclass
class ShapeContext:
    """What a shaper may use: the loop time, this pipe's randomness and state.

    ``state`` holds each fault's own state for this direction of the
    connection, ``peer_state`` the other direction's (whose data carries the
    ACKs of this one's). ``spans`` tells which bytes of the chunk belong to
    which stream and gRPC method, set on HTTP/2 links while a shaper asks for
    them (:attr:`Shaper.needs_spans`).
    A shaper reports what it did in ``applied`` (fault -> (what, count)); the
    link counts it.
    """

    now: float
    rng: random.Random
    state: dict[Fault, Any] = field(default_factory=dict)
    peer_state: dict[Fault, Any] | None = None
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

    @property
    def needs_spans(self) -> bool:
        """Must the link tell it which stream each byte of a chunk belongs to
        (``ShapeContext.spans``)? A method filter needs it."""
        return self.method_filter is not None

    @property
    def per_stream(self) -> bool:
        """Does it delay HTTP/2 frames stream by stream, letting other streams
        overtake (:mod:`etcdlab.proxy.streamlanes`), rather than the byte stream?"""
        return False

    def connect_sends(self, rng: random.Random) -> list[float]:
        """When (seconds after a connect starts) the connect's opening segment
        is sent again, the last of them getting through; empty if the first
        does. Once the fault is removed the first send from then on gets
        through instead."""
        return []


@dataclass(frozen=True, eq=False, kw_only=True)
class FrameFault(Fault):
    """A fault that decides which HTTP/2 frames pass (HTTP/2 links only)."""

    @property
    def frame_aware(self) -> bool:
        return True

    def needs_http2(self) -> str | None:
        return f"a {self.kind} fault acts on HTTP/2 frames"

    def on_ping(self, rng: random.Random) -> Action:
        return Action.PASS

    def on_data(self, path: str | None, whole_messages: bool, rng: random.Random) -> Action:
        """Decide for one DATA frame of a stream calling ``path``; ``whole_messages``
        when the frame holds whole gRPC messages and does not end the stream."""
        return Action.PASS
