"""Scenarios: a named timeline of faults, built in or read from a TOML file.

Every time here is in real (unscaled) seconds; the engine multiplies them by
the run's ``time_scale``. ``at`` counts from the end of the warm-up (the control
plane is up and the workloads have converged).

A TOML scenario::

    name = "loss-on-two"
    description = "20% loss on two members for a minute"
    duration = 180          # seconds after the warm-up
    [[fault]]
    at = 30
    duration = 60
    kind = "loss"           # loss, partition-minority, partition-majority, kill, pause, flapping
    target = "0,1"          # member indexes, or "leader" / "follower" (resolved when it starts)
    probability = 0.2       # loss only
    links = "all"           # client | peer | all
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAULT_KINDS = (
    "loss",
    "partition-minority",
    "partition-majority",
    "kill",
    "pause",
    "flapping",
)
LINKS = ("client", "peer", "all")


@dataclass(frozen=True)
class FaultStep:
    at: float
    duration: float
    kind: str
    target: str = "0"
    probability: float = 0.3
    links: str = "all"
    period: float = 10.0  # flapping: one down-and-up cycle

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}, not {self.kind!r}")
        if self.at < 0:
            raise ValueError("at must not be negative")
        if self.duration <= 0:
            raise ValueError("duration must be positive")
        if not 0 < self.probability <= 1:
            raise ValueError("probability must be in (0, 1]")
        if self.links not in LINKS:
            raise ValueError(f"links must be one of {', '.join(LINKS)}")
        if self.period <= 0:
            raise ValueError("period must be positive")
        if self.target not in ("leader", "follower"):
            parts = self.target.split(",")
            if not all(p.strip().isdigit() for p in parts):
                raise ValueError(
                    f"target must be member indexes like '0,1', 'leader' or 'follower', "
                    f"not {self.target!r}"
                )

    @property
    def end(self) -> float:
        return self.at + self.duration


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration: float
    faults: tuple[FaultStep, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")
        if self.duration <= 0:
            raise ValueError("duration must be positive")
        for step in self.faults:
            if step.end > self.duration:
                raise ValueError(
                    f"a {step.kind} fault ends at {step.end:g} s, after the scenario's "
                    f"duration {self.duration:g} s"
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


def from_toml(text: str, source: str = "scenario") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{source}: not valid TOML: {error}") from None
    try:
        steps = tuple(_step(raw) for raw in data.get("fault", []))
        return Scenario(
            name=str(data.get("name", Path(source).stem)),
            description=str(data.get("description", "")),
            duration=float(data["duration"]),
            faults=steps,
        )
    except KeyError as error:
        raise ValueError(f"{source}: missing {error.args[0]!r}") from None
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: {error}") from None


def _step(raw: Any) -> FaultStep:
    if not isinstance(raw, dict):
        raise ValueError("each [[fault]] must be a table")
    known = {"at", "duration", "kind", "target", "probability", "links", "period"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
    return FaultStep(
        at=float(raw["at"]),
        duration=float(raw["duration"]),
        kind=str(raw["kind"]),
        target=str(raw.get("target", "0")),
        probability=float(raw.get("probability", 0.3)),
        links=str(raw.get("links", "all")),
        period=float(raw.get("period", 10.0)),
    )


def load(name_or_path: str) -> Scenario:
    """A built-in by name, or a TOML file by path."""
    if name_or_path in BUILTINS:
        return BUILTINS[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        try:
            text = path.read_text()
        except OSError as error:
            raise ValueError(f"cannot read scenario file {path}: {error.strerror}") from None
        return from_toml(text, str(path))
    raise ValueError(
        f"unknown scenario {name_or_path!r}: one of {', '.join(BUILTINS)} or a .toml file"
    )
