"""The sweep's grid: network conditions x settings sets x seeds, one run per point.

A network condition is packet loss on every link (client and peer) of one etcd
member, that member being the raft leader or a follower (resolved when the
fault begins), for the whole measured window of a scenario run; 0% is the
baseline (no fault, no target). ``dead-leader`` is the etcd member of the
lease's leader killed, its candidates each pinned to one member
(:mod:`~etcdlab.sweep.failover`): what a set costs when a member really dies.

A latency (``--latency``, with ``--jitter``) is part of every loss condition:
the same member's links also delay each byte that long each way (a ``latency``
scenario step beside the ``loss`` one, on the same member). The baseline then
becomes that latency alone on the leader or a follower (0% loss), since what a
user asks with a latency is how each loss level does on a network that slow;
the dead member has no proxies and no latency.

A cell is one condition and one settings set; it runs once per seed. Every
length is real (unscaled) seconds; a run's time scale shrinks them all.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from etcdlab.common.timescale import TimeScale
from etcdlab.proxy.faults.base import parse_duration
from etcdlab.scenario import fidelity
from etcdlab.scenario.spec import FaultStep, Scenario
from etcdlab.sweep.settings import BUILTINS, Settings

TARGETS = ("leader", "follower")
LOSSES = (0, 5, 10, 20, 30, 50)  # percent on one member: the full grid's
DEAD = "dead"
LOSS = "loss"


def check_latency(latency: float, jitter: float, names: tuple[str, str]) -> None:
    """ValueError naming ``names`` (latency, jitter) unless both fit: seconds, the
    jitter no more than the latency (beyond it delays would be cut at 0)."""
    if not (latency >= 0 and math.isfinite(latency)):
        raise ValueError(f"{names[0]}: must be a finite duration >= 0, not {latency:g} s")
    if not (0 <= jitter <= latency):
        raise ValueError(
            f"{names[1]}: must be from 0 up to the latency ({_ms(latency)}), not {_ms(jitter)}"
        )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"


@dataclass(frozen=True)
class Network:
    """Loss of ``loss`` percent on ``target``'s links, each byte also delayed
    ``latency`` +/- ``jitter`` seconds each way there; or ``target`` dead."""

    kind: str = LOSS
    loss: float = 0.0
    target: str | None = None
    latency: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in (LOSS, DEAD):
            raise ValueError(f"network kind must be {LOSS} or {DEAD}, not {self.kind!r}")
        if not 0 <= self.loss < 100:
            raise ValueError(f"loss must be a percentage in [0, 100), not {self.loss:g}")
        check_latency(self.latency, self.jitter, ("latency", "jitter"))
        if self.kind == DEAD and self.latency:
            raise ValueError("a dead member has no latency (its cell runs without proxies)")
        if (self.kind == DEAD or self.faulted) and self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {self.target!r}")
        if self.kind == LOSS and not self.faulted and self.target is not None:
            raise ValueError("a loss of 0 has no target")

    @property
    def faulted(self) -> bool:
        """Is anything wrong with the target's links (loss or latency)?"""
        return self.loss > 0 or self.latency > 0

    @property
    def key(self) -> str:
        """``loss-0``, ``loss-30-leader``, ``loss-30-latency-50ms-jitter-10ms-leader``,
        ``dead-leader``: a part of the cell's key."""
        if self.kind == DEAD:
            return f"{DEAD}-{self.target}"
        if not self.faulted:
            return "loss-0"
        slow = f"-latency-{_ms(self.latency)}" if self.latency else ""
        slow += f"-jitter-{_ms(self.jitter)}" if self.jitter else ""
        return f"loss-{self.loss:g}{slow}-{self.target}"

    @property
    def label(self) -> str:
        """``0%``, ``30% leader``, ``30% +50±10ms leader``, ``dead leader``: a heatmap column."""
        if self.kind == DEAD:
            return f"dead {self.target}"
        if not self.faulted:
            return "0%"
        slow = f" +{self.latency * 1000:g}" if self.latency else ""
        slow += f"±{self.jitter * 1000:g}" if self.jitter else ""
        return f"{self.loss:g}%{slow}{'ms' if self.latency else ''} {self.target}"

    def faults(self, duration: float) -> tuple[FaultStep, ...]:
        """The loss and the latency over the whole measured window (none for the
        baseline); both begin at 0 on the same target, so they fault one member."""
        if self.kind == DEAD:
            raise ValueError("a dead member is measured by etcdlab.sweep.failover, not a scenario")
        target = self.target or "leader"
        steps = []
        if self.loss:
            steps.append(FaultStep(0, duration, "loss", target, probability=self.loss / 100))
        if self.latency:
            steps.append(
                FaultStep(0, duration, "latency", target, latency=self.latency, jitter=self.jitter)
            )
        return tuple(steps)


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
    latency: float = 0.0  # seconds each way on the lossy member's links (with every loss)
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not self.losses:
            raise ValueError("losses: give at least one loss level")
        for loss in self.losses:
            if not 0 <= loss < 100:
                raise ValueError(f"losses: {loss:g} is not a percentage in [0, 100)")
        if len(set(self.losses)) != len(self.losses):
            raise ValueError("losses: a loss level is given twice")
        check_latency(self.latency, self.jitter, ("latency", "jitter"))
        if (self.latency or any(loss > 0 for loss in self.losses)) and not self.targets:
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
            if loss == 0 and not self.latency:
                found.append(Network())
            else:
                found.extend(
                    Network(LOSS, loss, t, self.latency, self.jitter) for t in self.targets
                )
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
            "latency_seconds": self.latency,
            "jitter_seconds": self.jitter,
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


def parse_latency(latency: str | None, jitter: str | None) -> tuple[float, float]:
    """``--latency 50ms --jitter 10ms`` in seconds; a unit is required, as for
    ``etcdlab proxy --latency``."""
    if jitter is not None and latency is None:
        raise ValueError("--jitter: needs --latency (the jitter is around it)")
    values = []
    for option, text in (("--latency", latency), ("--jitter", jitter)):
        try:
            values.append(0.0 if text is None else parse_duration(text))
        except ValueError as error:
            raise ValueError(f"{option}: {error}") from None
    check_latency(values[0], values[1], ("--latency", "--jitter"))
    return values[0], values[1]


def parse_names(option: str, text: str, known: Sequence[str]) -> tuple[str, ...]:
    """``--target leader,follower`` / ``--settings client-go,mine``: names among ``known``."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in names:
        if name not in known:
            raise ValueError(f"{option}: unknown {name!r}; one of {', '.join(known)}")
    if not names:
        raise ValueError(f"{option}: give at least one of {', '.join(known)}")
    return names
