"""Scenarios: a named timeline of faults, built in or read from a TOML file.

Every time here is in real (unscaled) seconds; the engine multiplies them by
the run's ``time_scale``. ``at`` counts from the end of the warm-up (the control
plane is up and the workloads have converged).

A TOML scenario (every key is in docs/SCENARIOS.md, generated from
:data:`SCENARIO_KEYS` and :data:`FAULT_KEYS`)::

    name = "loss-on-two"
    description = "20% loss on two members for a minute"
    duration = 180          # seconds after the warm-up
    [[fault]]
    at = 30
    duration = 60
    kind = "loss"           # loss, partition-minority, partition-majority, kill, pause,
                            # flapping, mtu, latency
    target = "0,1"          # member indexes, or "leader" / "follower" (resolved when it starts)
    probability = 0.2       # loss only
    # latency only: added delay each way, with a unit; +/- jitter
    # latency = "50ms"
    # jitter = "10ms"
    links = "all"           # client | peer | all
    [[burst]]               # writes besides the workload's (raft entries)
    at = 40
    count = 6000            # committed, not scaled
    rate = 60               # a second, scaled like the times

The whole file is checked before anything starts: unknown tables and keys
(with the closest known name), types, ranges, targets against the member count.
Each problem is one :class:`FieldError` naming its path (``fault[2].probability``).
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etcdlab.proxy.faults.base import parse_duration

FAULT_KINDS = (
    "loss",
    "partition-minority",
    "partition-majority",
    "kill",
    "pause",
    "flapping",
    "mtu",
    "latency",
)
LINKS = ("client", "peer", "all")
PROCESS_KINDS = ("kill", "pause")  # act on the member's process: no links
# The scenario engine's cluster: targets are checked against it.
MEMBERS = 3
# IPv4 + TCP + timestamp option: an MTU must leave room for a byte of payload.
MTU_HEADERS = 52


class FieldError(ValueError):
    """A bad value, named by its path in the scenario (``fault[2].probability``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem

    def within(self, prefix: str) -> FieldError:
        """The same problem, its path under ``prefix`` (``fault[2]``)."""
        return FieldError(f"{prefix}.{self.path}", self.problem)


def target_members(target: str) -> list[int] | None:
    """The member indexes a target names; None for ``leader``/``follower``."""
    if target in ("leader", "follower"):
        return None
    return sorted({int(part) for part in target.split(",")})


@dataclass(frozen=True)
class FaultStep:
    at: float
    duration: float
    kind: str
    target: str = "0"
    probability: float = 0.3
    links: str = "all"
    period: float = 10.0  # flapping: one down-and-up cycle
    mtu: int = 1000  # mtu: the largest IP packet (bytes) the path carries
    # latency: the delay added each way on every link (seconds), uniformly +/- jitter
    latency: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            close = difflib.get_close_matches(self.kind, FAULT_KINDS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise FieldError(
                "kind", f"must be one of {', '.join(FAULT_KINDS)}, not {self.kind!r}{hint}"
            )
        if self.at < 0:
            raise FieldError("at", f"must not be negative, not {self.at:g}")
        if self.duration <= 0:
            raise FieldError("duration", f"must be above 0, not {self.duration:g}")
        if self.probability >= 1:
            raise FieldError(
                "probability",
                f"must be below 1, not {self.probability:g}; a loss of 1 lets nothing "
                'through: use a blackhole, kind = "partition-minority"',
            )
        if self.probability <= 0:
            raise FieldError("probability", f"must be above 0, not {self.probability:g}")
        if self.links not in LINKS:
            raise FieldError("links", f"must be one of {', '.join(LINKS)}, not {self.links!r}")
        if self.period <= 0:
            raise FieldError("period", f"must be above 0, not {self.period:g}")
        if not float(self.mtu).is_integer() or self.mtu <= MTU_HEADERS:
            raise FieldError(
                "mtu",
                f"must be a whole number of bytes above {MTU_HEADERS} (an IP packet's "
                f"IP and TCP headers), not {self.mtu:g}",
            )
        object.__setattr__(self, "mtu", int(self.mtu))
        self._check_latency()
        self._check_target()

    def _check_latency(self) -> None:
        if self.latency < 0:
            raise FieldError("latency", f"must not be negative, not {self.latency:g} s")
        if self.kind == "latency" and self.latency == 0:
            raise FieldError("latency", 'a latency fault needs one above 0, like "50ms"')
        if self.jitter < 0:
            raise FieldError("jitter", f"must not be negative, not {self.jitter:g} s")
        if self.jitter > self.latency:
            # Beyond it the delay would be cut at 0: no longer uniform around the latency.
            raise FieldError(
                "jitter",
                f"must not exceed the latency ({self.latency:g} s), not {self.jitter:g} s",
            )

    def _check_target(self) -> None:
        parts = [part.strip() for part in self.target.split(",")]
        if self.target not in ("leader", "follower") and not all(p.isdigit() for p in parts):
            raise FieldError(
                "target",
                f"must be member indexes like '0,1', 'leader' or 'follower', not {self.target!r}",
            )
        named = [int(p) for p in parts] if self.target not in ("leader", "follower") else []
        twice = sorted({m for m in named if named.count(m) > 1})
        if twice:
            # [0, 0] is a typo for two members far more often than a wish for one.
            raise FieldError("target", f"member {twice[0]} is named twice in {self.target!r}")
        members = target_members(self.target)
        count = 1 if members is None else len(members)
        if members is not None and members[-1] >= MEMBERS:
            raise FieldError(
                "target", f"member {members[-1]} does not exist: members are 0..{MEMBERS - 1}"
            )
        majority = count > MEMBERS / 2
        if self.kind == "partition-minority" and majority:
            raise FieldError(
                "target",
                f"a partition-minority cuts off fewer than half of the {MEMBERS} members, "
                f"not {count}: use partition-majority",
            )
        if self.kind == "partition-majority" and not majority:
            raise FieldError(
                "target",
                f"a partition-majority cuts off more than half of the {MEMBERS} members, "
                f"not {count} ({self.target!r}): use partition-minority",
            )

    @property
    def end(self) -> float:
        return self.at + self.duration


@dataclass(frozen=True)
class WriteBurst:
    """``count`` writes committed to etcd, paced at ``rate`` a second from ``at``
    (real seconds, scaled like the rest; the count is not: it is raft entries).
    The workload is a few writes a second; a burst is what a busy cluster's other
    clients add, e.g. enough entries while a member is cut off that the leader
    compacts its log past it and has to send it a snapshot."""

    at: float
    count: int
    rate: float

    def __post_init__(self) -> None:
        if self.at < 0:
            raise FieldError("at", f"must not be negative, not {self.at:g}")
        if not float(self.count).is_integer() or self.count < 1:
            raise FieldError(
                "count", f"must be a whole number of writes above 0, not {self.count:g}"
            )
        object.__setattr__(self, "count", int(self.count))
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise FieldError(
                "rate", f"must be a number of writes a second above 0, not {self.rate:g}"
            )

    @property
    def end(self) -> float:
        """When the last write is due (it may commit later, on a busy machine)."""
        return self.at + self.count / self.rate


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration: float
    faults: tuple[FaultStep, ...] = field(default_factory=tuple)
    # etcd flags the conditions need, given to every local member (built-ins only:
    # an incident on an older etcd, e.g. --pre-vote=false).
    etcd_args: tuple[str, ...] = ()
    bursts: tuple[WriteBurst, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.name:
            raise FieldError("name", "must not be empty")
        if self.duration <= 0:
            raise FieldError("duration", f"must be above 0, not {self.duration:g}")
        ends = [
            (f"fault[{index}].duration", step.end, f"the fault ends at {step.end:g} s")
            for index, step in enumerate(self.faults)
        ] + [
            (
                f"burst[{index}].rate",
                burst.end,
                f"{burst.count} writes at {burst.rate:g} a second from {burst.at:g} s end "
                f"at {burst.end:g} s",
            )
            for index, burst in enumerate(self.bursts)
        ]
        for path, end, what in ends:
            if end > self.duration:
                raise FieldError(
                    path, f"{what}, after the scenario's duration ({self.duration:g} s)"
                )


BUILTINS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "packet-loss-30",
            "the analysis: 30% packet loss on every link (client and peer) of one member "
            "for 2 minutes, then healing",
            300,
            (FaultStep(30, 120, "loss", "0", probability=0.3),),
        ),
        Scenario(
            "partition-minority",
            "one member cut off (client and peer links blackholed) for a minute; "
            "the other two keep quorum",
            180,
            (FaultStep(30, 60, "partition-minority", "0"),),
        ),
        Scenario(
            "partition-majority",
            "two of three members cut off for a minute: quorum lost",
            180,
            (FaultStep(30, 60, "partition-majority", "0,1"),),
        ),
        Scenario(
            "member-kill",
            "the raft leader's process killed (SIGKILL) and restarted a minute later",
            180,
            (FaultStep(30, 60, "kill", "leader"),),
        ),
        Scenario(
            "member-pause",
            "the raft leader frozen (SIGSTOP) for a minute: sockets open, no answers",
            180,
            (FaultStep(30, 60, "pause", "leader"),),
        ),
        Scenario(
            "flapping",
            "one member's links blackholed and restored every 5 s for 2 minutes",
            240,
            (FaultStep(30, 120, "flapping", "0", period=10),),
        ),
    )
}

# Public incidents replayed as built-ins (docs/SCENARIOS.md, "Incidents"): the
# conditions each report describes; its claims are etcdlab.report.incidents',
# found by these names.
INCIDENTS: tuple[Scenario, ...] = (
    Scenario(
        "k8s-72796",
        "kubernetes/kubernetes#72796: IP packets above 1000 bytes dropped between one "
        "etcd member and its peers for 2.5 minutes (an MTU black hole): writes time out "
        "while the apiserver's health check passes?",
        # Two minutes after the heal: a segment held that long comes back with its
        # sender's next retransmission, up to max_rto (120 s) later.
        300,
        (FaultStep(30, 150, "mtu", "follower", links="peer", mtu=1000),),
    ),
    Scenario(
        "etcd-13665",
        "etcd-io/etcd#13665: the raft leader's network flaps (4 s down, 4 s up) for 3 "
        "minutes, pre-vote off as in etcd 3.2: re-election storms, and what the clients see",
        240,
        (FaultStep(30, 180, "flapping", "leader", period=8),),
        # etcd 3.2 had no pre-vote: a member back from a cut disrupts the leader.
        etcd_args=("--pre-vote=false",),
    ),
    Scenario(
        "etcd-8411",
        "etcd-io/etcd#8411: a follower cut off from its peers (its client link kept) for "
        "3 minutes while 6000 writes go in, then back: the leader sends it a snapshot; "
        "does the apiserver's watch cache serve stale data?",
        300,
        (FaultStep(30, 180, "partition-minority", "follower", links="peer"),),
        # The reported path: a member behind the leader's compacted log gets a
        # snapshot. etcd keeps SnapshotCatchUpEntries (5000, no flag in 3.5) entries
        # behind its last snapshot, taken every --snapshot-count entries (100000 by
        # default, 10000 in the report's 3.1), so the cut must span more than
        # 5000 + 500 of them here; the workload alone writes a few hundred in it.
        etcd_args=("--snapshot-count=500",),
        bursts=(WriteBurst(40, 6000, 60),),
    ),
    Scenario(
        "k8s-128812",
        "kubernetes/kubernetes#128812: a member's host shut down (every link silent, no "
        "resets) for 3 minutes: does the apiserver keep using it?",
        270,
        (FaultStep(30, 180, "partition-minority", "follower"),),
    ),
)
BUILTINS.update({scenario.name: scenario for scenario in INCIDENTS})


# The file format, as data: the loader checks against it and docs/SCENARIOS.md
# shows it (tests/scenario/test_spec.py keeps the two in step).

REQUIRED = "required"


@dataclass(frozen=True)
class Key:
    name: str
    type: str  # "number", "string", "string with a unit", "target" or "array of tables"
    default: str  # as the docs show it; REQUIRED if there is none
    rule: str
    kinds: tuple[str, ...] = FAULT_KINDS  # fault kinds the key applies to


SCENARIO_KEYS = (
    Key("name", "string", "the file's name", "names the report; not empty"),
    Key("description", "string", '""', "one line, shown at the top of the report"),
    Key("duration", "number", REQUIRED, "seconds after the warm-up; above 0"),
    Key("fault", "array of tables", "no faults", "`[[fault]]`, one table per fault (below)"),
    Key("burst", "array of tables", "no bursts", "`[[burst]]`, one table per write burst (below)"),
)
BURST_KEYS = (
    Key("at", "number", REQUIRED, "when it begins: seconds after the warm-up; 0 or more"),
    Key(
        "count",
        "number",
        REQUIRED,
        "writes to commit (raft entries: not scaled); a whole number above 0",
    ),
    Key(
        "rate",
        "number",
        REQUIRED,
        "writes a second (scaled like times: 10x at time scale 0.1); above 0; the last "
        "is due (count / rate after at) by the scenario's duration",
    ),
)
FAULT_KEYS = (
    Key("at", "number", REQUIRED, "when it begins: seconds after the warm-up; 0 or more"),
    Key("duration", "number", REQUIRED, "seconds it lasts; above 0; ends by the scenario's"),
    Key("kind", "string", REQUIRED, ", ".join(FAULT_KINDS)),
    Key(
        "target",
        "string, integer or array of integers",
        '"0"',
        f'member indexes below {MEMBERS}, each once (`"0,1"`, `1`, `[0, 1]`), or `"leader"` / '
        '`"follower"` (resolved when the fault begins); a partition-minority cuts off '
        "fewer than half the members, a partition-majority more than half",
    ),
    Key("probability", "number", "0.3", "above 0 and below 1", kinds=("loss",)),
    Key(
        "links",
        "string",
        '"all"',
        "`client`, `peer` or `all`",
        kinds=tuple(k for k in FAULT_KINDS if k not in PROCESS_KINDS),
    ),
    Key("period", "number", "10", "seconds of one down-and-up cycle; above 0", ("flapping",)),
    Key(
        "mtu",
        "number",
        "1000",
        f"the largest IP packet (bytes, TCP payload + {MTU_HEADERS}) the links carry; larger "
        "segments are lost on every retransmission; a whole number above "
        f"{MTU_HEADERS}",
        ("mtu",),
    ),
    Key(
        "latency",
        "string with a unit",
        REQUIRED + " for latency",
        "the delay added each way on every link (a round trip through one gains twice it), "
        'with a unit as `etcdlab proxy --latency` takes it (`"50ms"`, `"1.5s"`); above 0',
        ("latency",),
    ),
    Key(
        "jitter",
        "string with a unit",
        "0",
        "each delay drawn uniformly within the latency +/- this (seeded), with a unit; "
        "0 up to the latency",
        ("latency",),
    ),
)


def schema_markdown() -> str:
    """The format as the tables of docs/SCENARIOS.md."""

    def table(keys: tuple[Key, ...]) -> list[str]:
        rows = ["| key | type | default | rule |", "| --- | --- | --- | --- |"]
        for key in keys:
            only = "" if key.kinds == FAULT_KINDS else f"only for {', '.join(key.kinds)}: "
            rows.append(f"| `{key.name}` | {key.type} | {key.default} | {only}{key.rule} |")
        return rows

    return "\n".join(["Top level:", "", *table(SCENARIO_KEYS), "", "Each `[[fault]]`:", "",
                      *table(FAULT_KEYS), "", "Each `[[burst]]`:", "",
                      *table(BURST_KEYS)])  # fmt: skip


def _unknown(path: str, name: str, known: tuple[Key, ...], table: bool) -> FieldError:
    names = [k.name for k in known]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        match = next(k for k in known if k.name == close[0])
        spelled = f"[[{match.name}]]" if match.type == "array of tables" else match.name
        hint = f"did you mean {spelled}?"
    else:
        hint = f"known: {', '.join(names)}"
    return FieldError(path, f"unknown {'table' if table else 'key'}; {hint}")


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _number(path: str, value: Any) -> float:
    # TOML booleans are Python ints: true is not a number of seconds.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(path, f"must be a number, not {_describe(value)}")
    if not math.isfinite(value):
        raise FieldError(path, f"must be a finite number, not {value}")
    return float(value)


def _string(path: str, value: Any) -> str:
    if not isinstance(value, str):
        raise FieldError(path, f"must be a string, not {_describe(value)}")
    return value


def _duration(path: str, value: Any) -> float:
    """Text with a unit (``"50ms"``), as ``etcdlab proxy --latency`` takes it. A bare
    number other than 0 is refused: this file's times are seconds, but the proxy's
    own TOML reads ``latency = 50`` as milliseconds."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as error:
            raise FieldError(path, str(error)) from None
    number = _number(path, value)
    if number:
        raise FieldError(
            path,
            f'give a unit, like "{number:g}ms" or "{number:g}s": a bare number is seconds '
            "in a scenario, milliseconds in the proxy's TOML",
        )
    return number


def _target(path: str, value: Any) -> str:
    """``"0,1"``, ``1`` and ``[0, 1]`` alike, as the ``"0,1"`` FaultStep keeps."""
    if isinstance(value, str):
        return value
    indexes: list[Any] = value if isinstance(value, list) else [value]
    if not indexes:
        raise FieldError(path, "names no member: give at least one index, like [0]")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in indexes):
        raise FieldError(
            path, f"must be member indexes, 'leader' or 'follower', not {_describe(value)}"
        )
    if any(v < 0 for v in indexes):
        raise FieldError(path, f"member indexes are 0 or more, not {value!r}")
    return ",".join(str(v) for v in indexes)


_READERS: dict[str, Callable[[str, Any], Any]] = {
    "number": _number,
    "string": _string,
    "string, integer or array of integers": _target,
    "string with a unit": _duration,
}


def _read(raw: dict[str, Any], keys: tuple[Key, ...], prefix: str) -> dict[str, Any]:
    """``raw``'s values by key, type-checked; unknown keys rejected."""
    values: dict[str, Any] = {}
    for name, value in raw.items():
        path = f"{prefix}{name}"
        key = next((k for k in keys if k.name == name), None)
        if key is None:
            raise _unknown(path, name, keys, isinstance(value, dict | list))
        if key.type in _READERS:
            values[name] = _READERS[key.type](path, value)
    for key in keys:
        if key.default == REQUIRED and key.name not in raw:
            raise FieldError(f"{prefix}{key.name}", f"missing ({key.rule})")
    return values


def _step(raw: Any, index: int) -> FaultStep:
    where = f"fault[{index}]"
    if not isinstance(raw, dict):
        raise FieldError(where, "must be a table: write [[fault]]")
    values = _read(raw, FAULT_KEYS, f"{where}.")
    kind = values["kind"]
    for key in FAULT_KEYS:
        if key.name in values and kind in FAULT_KINDS and kind not in key.kinds:
            raise FieldError(
                f"{where}.{key.name}",
                f"a {kind} fault has no {key.name} (only {', '.join(key.kinds)})",
            )
    try:
        return FaultStep(**values)
    except FieldError as error:
        raise error.within(where) from None


def _burst(raw: Any, index: int) -> WriteBurst:
    where = f"burst[{index}]"
    if not isinstance(raw, dict):
        raise FieldError(where, "must be a table: write [[burst]]")
    values = _read(raw, BURST_KEYS, f"{where}.")
    try:
        return WriteBurst(**values)
    except FieldError as error:
        raise error.within(where) from None


def _tables(data: dict[str, Any], name: str) -> list[Any]:
    tables = data.get(name, [])
    if not isinstance(tables, list):
        raise FieldError(name, f"must be an array of tables: write [[{name}]]")
    return tables


def from_toml(text: str, source: str = "scenario") -> Scenario:
    """The scenario in ``text``, checked whole; ValueError ``source: path: problem``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{source}: not valid TOML: {error}") from None
    try:
        values = _read(data, SCENARIO_KEYS, "")
        return Scenario(
            name=values.get("name", Path(source).stem),
            description=values.get("description", ""),
            duration=values["duration"],
            faults=tuple(_step(raw, index) for index, raw in enumerate(_tables(data, "fault"))),
            bursts=tuple(_burst(raw, index) for index, raw in enumerate(_tables(data, "burst"))),
        )
    except FieldError as error:
        raise ValueError(f"{source}: {error}") from None


def load(name_or_path: str) -> Scenario:
    """A built-in by name, or a TOML file by path."""
    if name_or_path in BUILTINS:
        return BUILTINS[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"cannot read scenario file {path}: {error.strerror}") from None
        except UnicodeDecodeError as error:
            line = error.object[: error.start].count(b"\n") + 1
            byte = error.object[error.start]
            raise ValueError(
                f"cannot read scenario file {path}: not UTF-8 text (line {line} has byte "
                f"{byte:#04x}); TOML files are UTF-8"
            ) from None
        return from_toml(text, str(path))
    raise ValueError(
        f"unknown scenario {name_or_path!r}: one of {', '.join(BUILTINS)} or a .toml file"
    )
