"""The sweep's grid: network conditions x settings sets x seeds, one run per point.

A network condition is packet loss on every link (client and peer) of one etcd
member, that member being the raft leader or a follower (resolved when the
fault begins), for the whole measured window of a scenario run; 0% is the
baseline (no fault, no target). ``dead-leader`` is the etcd member of the
lease's leader killed, its candidates each pinned to one member
(:mod:`~etcdlab.sweep.failover`): what a set costs when a member really dies.

A cell is one condition and one settings set; it runs once per seed. Every
length is real (unscaled) seconds; a run's time scale shrinks them all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from etcdlab.common.timescale import TimeScale
from etcdlab.scenario import fidelity
from etcdlab.scenario.spec import FaultStep, Scenario
from etcdlab.sweep.settings import BUILTINS, Settings

TARGETS = ("leader", "follower")
LOSSES = (0, 5, 10, 20, 30, 50)  # percent on one member: the full grid's
DEAD = "dead"
LOSS = "loss"


@dataclass(frozen=True)
class Network:
    """Loss of ``loss`` percent on ``target``'s links, or ``target`` dead."""

    kind: str = LOSS
    loss: float = 0.0
    target: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in (LOSS, DEAD):
            raise ValueError(f"network kind must be {LOSS} or {DEAD}, not {self.kind!r}")
        if not 0 <= self.loss < 100:
            raise ValueError(f"loss must be a percentage in [0, 100), not {self.loss:g}")
        if (self.kind == DEAD or self.loss > 0) and self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {self.target!r}")
        if self.kind == LOSS and self.loss == 0 and self.target is not None:
            raise ValueError("a loss of 0 has no target")

    @property
    def key(self) -> str:
        """``loss-0``, ``loss-30-leader``, ``dead-leader``: a part of the cell's key."""
        if self.kind == DEAD:
            return f"{DEAD}-{self.target}"
        if self.loss == 0:
            return "loss-0"
        return f"loss-{self.loss:g}-{self.target}"

    @property
    def label(self) -> str:
        """``0%``, ``30% leader``, ``dead leader``: a heatmap column."""
        if self.kind == DEAD:
            return f"dead {self.target}"
        return "0%" if self.loss == 0 else f"{self.loss:g}% {self.target}"

    def faults(self, duration: float) -> tuple[FaultStep, ...]:
        """The loss over the whole measured window (none for the baseline)."""
        if self.kind == DEAD:
            raise ValueError("a dead member is measured by etcdlab.sweep.failover, not a scenario")
        if self.loss == 0:
            return ()
        return (
            FaultStep(0, duration, "loss", self.target or "leader", probability=self.loss / 100),
        )


@dataclass(frozen=True)
class Cell:
    """One run of the grid: a condition, a settings set, a seed, and the run's length."""

    network: Network
    settings: Settings
    seed: int
    duration: float  # unscaled seconds measured (after the warm-up)
    time_scale: float

    @property
    def key(self) -> str:
        """What the resume file knows the run by: ``loss-30-leader/tight/seed-1``."""
        return f"{self.network.key}/{self.settings.name}/seed-{self.seed}"

    @property
    def group(self) -> tuple[str, str]:
        """The cell its seeds are aggregated in: (network key, settings name)."""
        return self.network.key, self.settings.name

    def spec(self) -> dict[str, Any]:
        """Everything that decides the run, as JSON: a resumed sweep reruns a key
        whose spec changed (another duration, other timings under the same name)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Cell:
        return cls(
            Network(**spec["network"]),
            Settings(**spec["settings"]),
            spec["seed"],
            spec["duration"],
            spec["time_scale"],
        )

    def scenario(self) -> Scenario:
        return Scenario(
            f"sweep-{self.network.key}",
            f"sweep cell {self.key}: {self.network.label} under {self.settings.words()}",
            self.duration,
            self.network.faults(self.duration),
        )


@dataclass(frozen=True)
class Grid:
    losses: tuple[float, ...] = LOSSES
    targets: tuple[str, ...] = TARGETS
    settings: tuple[Settings, ...] = tuple(BUILTINS.values())
    seeds: int = 3
    first_seed: int = 0
    duration: float = 600.0
    time_scale: float = fidelity.FAITHFUL_SCALE
    dead_member: bool = True

    def __post_init__(self) -> None:
        if not self.losses:
            raise ValueError("losses: give at least one loss level")
        for loss in self.losses:
            if not 0 <= loss < 100:
                raise ValueError(f"losses: {loss:g} is not a percentage in [0, 100)")
        if len(set(self.losses)) != len(self.losses):
            raise ValueError("losses: a loss level is given twice")
        if any(loss > 0 for loss in self.losses) and not self.targets:
            raise ValueError("targets: give leader, follower or both")
        for target in self.targets:
            if target not in TARGETS:
                raise ValueError(f"targets: must be {' or '.join(TARGETS)}, not {target!r}")
        if not self.settings:
            raise ValueError("settings: give at least one settings set")
        names = [s.name for s in self.settings]
        if len(set(names)) != len(names):
            raise ValueError("settings: a set is named twice")
        if self.seeds < 1:
            raise ValueError(f"seeds: at least 1, not {self.seeds}")
        if self.duration <= 0:
            raise ValueError(f"duration: must be above 0, not {self.duration:g}")
        scale = TimeScale(self.time_scale)
        fidelity.check(scale)
        object.__setattr__(self, "time_scale", float(scale))

    def networks(self) -> list[Network]:
        found = []
        for loss in sorted(self.losses):
            if loss == 0:
                found.append(Network())
            else:
                found.extend(Network(LOSS, loss, t) for t in self.targets)
        if self.dead_member:
            found.append(Network(DEAD, 0, "leader"))
        return found

    def cells(self) -> Iterator[Cell]:
        """Seed by seed, so a stopped sweep has every cell's first seed first."""
        for seed in range(self.first_seed, self.first_seed + self.seeds):
            for network in self.networks():
                for settings in self.settings:
                    yield Cell(network, settings, seed, self.duration, self.time_scale)

    def describe(self) -> dict[str, Any]:
        return {
            "losses_percent": list(self.losses),
            "targets": list(self.targets),
            "settings": {s.name: s.values() for s in self.settings},
            "seeds": list(range(self.first_seed, self.first_seed + self.seeds)),
            "duration_seconds": self.duration,
            "time_scale": self.time_scale,
            "dead_member": self.dead_member,
            "networks": [n.label for n in self.networks()],
        }


# --quick: a few minutes on two cores (docs/RECOMMENDATIONS.md gives its cost).
QUICK = Grid(losses=(0, 30), targets=("leader",), seeds=2, duration=30.0)


def parse_losses(text: str) -> tuple[float, ...]:
    """``--loss 0,5,30``: percentages."""
    values = []
    for part in text.split(","):
        try:
            value = float(part.strip().rstrip("%"))
        except ValueError:
            raise ValueError(f"--loss: {part.strip()!r} is not a number") from None
        if not 0 <= value < 100:
            raise ValueError(f"--loss: {value:g} is not a percentage in [0, 100)")
        values.append(value)
    return tuple(values)


def parse_names(option: str, text: str, known: Sequence[str]) -> tuple[str, ...]:
    """``--target leader,follower`` / ``--settings client-go,mine``: names among ``known``."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in names:
        if name not in known:
            raise ValueError(f"{option}: unknown {name!r}; one of {', '.join(known)}")
    if not names:
        raise ValueError(f"{option}: give at least one of {', '.join(known)}")
    return names
