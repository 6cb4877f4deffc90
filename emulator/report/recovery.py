"""Each etcd member's recovery after each heal: the lab's own check.

Once a fault heals, real TCP delivers what was held within about one
retransmission timeout and a follower hears the leader's next heartbeat, so
every member should be healthy (``/health``: a leader and quorum) again within
a few seconds; a member that stays unhealthy long after the network is clean
is an artefact of the lab, and every recovery claim would be measured on top
of it (DESIGN.md, "After a fault heals").

Read from the engine's member health samples, so a time is known to within
one sample period (:attr:`HealRecovery.resolution`). Seconds are unscaled.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass

from etcdlab.common.timeline import FaultWindow, Health, Timeline

MEMBER = "etcd-"


@dataclass(frozen=True)
class HealRecovery:
    """What each member did after one fault healed.

    ``members`` maps each member to the unscaled seconds from the heal until
    its health samples turned healthy for good (up to the next fault or the
    end of the run): 0 if none was unhealthy from the heal on, None if the last
    one before then was unhealthy.
    """

    fault: FaultWindow
    healed_at: float  # unscaled seconds since the first fault began
    members: dict[str, float | None]
    resolution: float | None  # unscaled seconds between a member's samples (median)

    @property
    def slowest(self) -> float | None:
        """The last member's time, None if one never recovered (or none was sampled)."""
        times = list(self.members.values())
        if not times or any(t is None for t in times):
            return None
        return max(t or 0.0 for t in times)


def healthy_again(samples: list[Health], since: float, until: float) -> float | None:
    """Run-clock seconds after ``since`` until ``samples`` (one component's, in
    time order) were healthy for good before ``until``: 0 if none in between
    was unhealthy, None if the last one was (or there was none)."""
    window = [h for h in samples if since <= h.t < until]
    if not window or not window[-1].healthy:
        return None
    down = [i for i, h in enumerate(window) if not h.healthy]
    if not down:
        return 0.0
    return window[down[-1] + 1].t - since


def member_recovery(timeline: Timeline) -> list[HealRecovery]:
    """For each fault in the order they healed, every sampled member's recovery."""
    members = sorted({h.component for h in timeline.health if h.component.startswith(MEMBER)})
    samples = {
        name: sorted((h for h in timeline.health if h.component == name), key=lambda h: h.t)
        for name in members
    }
    gaps = [b.t - a.t for series in samples.values() for a, b in itertools.pairwise(series)]
    resolution = timeline.unscaled(statistics.median(gaps)) if gaps else None
    heals = []
    for fault in sorted(timeline.faults, key=lambda w: w.end):
        # A later fault starting is where this heal's effect can no longer be told apart.
        until = min(
            (w.start for w in timeline.faults if w.start > fault.end), default=timeline.duration
        )
        times: dict[str, float | None] = {}
        for name in members:
            back = healthy_again(samples[name], fault.end, until)
            times[name] = None if back is None else round(timeline.unscaled(back), 3)
        healed_at = timeline.unscaled_since_fault(fault.end)
        heals.append(HealRecovery(fault, healed_at, times, resolution))
    return heals
