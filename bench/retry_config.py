"""What one ``etcdlab bench retries`` run is asked to do: the faults it can inject
and :class:`BenchConfig`, validated on construction (errors name the field)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from etcdlab.bench.retry_strategies import BACKOFF_BASE, STRATEGIES
from etcdlab.common.timescale import UNSCALED, TimeScale

FAULTS: dict[str, str] = {
    "kill": "the leader is SIGKILLed, restarted when the fault ends",
    "loss": "30% TCP-faithful packet loss on member 0's client link",
    "outage": "for 2 s every call fails at once with UNAVAILABLE on a ready connection "
    "(the proxy resets each request's stream): members answering errors",
    "partition": "for 2 s every client link is blackholed (nothing passes, connections "
    "stay open: attempts hang until their timeout)",
    "overload": "every link slow (latency 0.4 +/- 0.3 s each way) and bandwidth-capped "
    "at 1.5x the load measured before the fault",
}
# Outages last this long (real seconds, capped at a third of the run): shorter
# than an operation's deadline, so a retry strategy can ride them out.
SHORT_FAULTS = {"outage": 2.0, "partition": 2.0}
# Faults at whose start every client also begins one contended write (the herd).
HERD_FAULTS = frozenset({"outage"})
# Resolution at which bunched retries are looked for (the first backoff step).
DISPERSION_BUCKET = BACKOFF_BASE


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark's settings. Durations are real seconds, multiplied by
    ``time_scale``; ``rate`` is operations per wall-clock second."""

    time_scale: TimeScale = UNSCALED
    seed: int = 0
    duration: float = 30.0
    """Length of one run: the fault starts after a third of it and lasts a third
    (outages: ``SHORT_FAULTS``)."""
    rate: float = 100.0
    clients: int = 16
    members: int = 3
    write_ratio: float = 0.3
    attempt_timeout: float = 1.0
    """Deadline of one RPC attempt."""
    op_timeout: float = 6.0
    """Deadline of one operation across all its attempts."""
    recovery_window: float = 2.0
    """Recovered = this long without a failed operation after the fault ended."""
    keys: int = 32
    strategies: tuple[str, ...] = tuple(STRATEGIES)
    faults: tuple[str, ...] = tuple(FAULTS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "time_scale", TimeScale(self.time_scale))
        for name in ("duration", "rate", "attempt_timeout", "op_timeout", "recovery_window"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number")
        if self.clients < 1:
            raise ValueError("clients must be at least 1")
        if self.members < 3:
            raise ValueError("members must be at least 3 (a member kill must keep quorum)")
        if not 0 <= self.write_ratio <= 1:
            raise ValueError("write_ratio must be within [0, 1]")
        if self.keys < 1:
            raise ValueError("keys must be at least 1")
        if not self.strategies:
            raise ValueError("strategies must not be empty")
        if not self.faults:
            raise ValueError("faults must not be empty")
        for name in self.strategies:
            if name not in STRATEGIES:
                raise ValueError(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")
        for name in self.faults:
            if name not in FAULTS:
                raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")

    def wall(self, seconds: float) -> float:
        """Real seconds on the run's (scaled) clock."""
        return self.time_scale.scaled(seconds)
