"""What a time scale cannot shrink, and down to which scale a run stays faithful.

Every timing etcdlab owns is multiplied by the run's ``time_scale`` (client,
elector, control plane, the proxy's TCP model, etcd's raft and keepalive
flags). A few timers live where no option reaches them; at a scale below 1
each of them is, in unscaled terms, longer than in a real-timing run:

* etcd's request timeout, ``5 s + 2 x election timeout`` (``ReqTimeout`` in
  etcd's server config): a request stuck on a member that cannot reach its
  leader fails after ``5/scale + 2`` unscaled seconds instead of 7;
* etcd's linearizable-read retry (``readIndexRetryTime``, 500 ms);
* a peer stream whose write blocks for 5 s is dropped (the peer listener's
  write deadline, rafthttp ``ConnWriteTimeout``; the readers' read deadline
  never takes effect: their transport dials through ``DialContext``) and
  dialled again within ``1 s + election timeout``;
* the CPU time of every request (etcd, proxy, client and event loop share two
  cores here: 1-5 ms each), which a scaled run's latencies divide by the scale;
* starting a killed member again (about a second of real time).

The benchmark ``bench/scale_invariance.py`` measures which scales still give
the report's figures within ±25% of real timing; :data:`FAITHFUL_SCALE` is
the smallest it found (docs/BENCHMARKS.md, "Scale invariance": at 0.75 the
figures stayed within the spread of real-timing runs with other seeds and
etcd's request timeout within 25% of its real 7 s; at 0.5 a request that waits
it out fails after 12 s unscaled, and the median latencies read twice as long).
Below :data:`MIN_SCALE` etcd's raft heartbeat no longer shrinks at all
(:meth:`~etcdlab.cluster.local.ServerFlags.scaled` keeps it at 10 ms or more).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MIN_SCALE = 0.1
FAITHFUL_SCALE = 0.75
BOUND = 0.25  # what "faithful" allows: the benchmark's ±25%
ELECTION = 1.0  # etcd's --election-timeout at scale 1 (ServerFlags), seconds
# rafthttp's ConnWriteTimeout: the peer listener's deadline on each write, seconds.
PEER_WRITE_DEADLINE = 5.0


@dataclass(frozen=True)
class FixedTimer:
    """A timer no option scales: its real value and what it amounts to, in
    unscaled seconds, at a given time scale."""

    name: str
    where: str
    real: float
    at_scale: Callable[[float], float]

    def describe(self, time_scale: float) -> str:
        return (
            f"{self.name} ({self.where}): {self.at_scale(time_scale):.3g} s unscaled "
            f"instead of {self.real:.3g} s"
        )

    def distorted(self, time_scale: float) -> bool:
        return abs(self.at_scale(time_scale) - self.real) > BOUND * self.real


FIXED_TIMERS = (
    FixedTimer(
        "request timeout, 5 s + 2 election timeouts",
        "inside etcd",
        5.0 + 2 * ELECTION,
        lambda s: 5.0 / s + 2 * ELECTION,
    ),
    FixedTimer("linearizable read retry", "inside etcd", 0.5, lambda s: 0.5 / s),
    FixedTimer(
        "peer stream write deadline",
        "inside etcd's rafthttp",
        PEER_WRITE_DEADLINE,
        lambda s: PEER_WRITE_DEADLINE / s,
    ),
    FixedTimer(
        "peer dial timeout, 1 s + election timeout",
        "inside etcd's rafthttp",
        1.0 + ELECTION,
        lambda s: 1.0 / s + ELECTION,
    ),
)


def check(time_scale: float) -> None:
    """Refuse a scale at which raft's timings no longer shrink."""
    if time_scale < MIN_SCALE:
        raise ValueError(
            f"time scale {time_scale:g} is below {MIN_SCALE:g}: etcd's raft heartbeat "
            f"cannot go under 10 ms on this machine, so raft would no longer be scaled "
            f"with everything else"
        )


def warning(time_scale: float) -> str | None:
    """What ``etcdlab run`` says before a run below :data:`FAITHFUL_SCALE`."""
    if time_scale >= FAITHFUL_SCALE:
        return None
    return (
        f"time scale {time_scale:g} is below {FAITHFUL_SCALE:g}, the smallest at which "
        "the report's figures match real timing: timers inside etcd and each request's "
        "CPU time do not shrink (the report's header lists them)"
    )


def notes(time_scale: float) -> list[str]:
    """What the report's header says about the scale: the timers it did not
    shrink, the CPU time in every latency and, below :data:`FAITHFUL_SCALE`,
    that the figures may differ."""
    distorted = [t.describe(time_scale) for t in FIXED_TIMERS if t.distorted(time_scale)]
    if not distorted:
        return []
    lines = [f"Not scaled at time scale {time_scale:g}: " + "; ".join(distorted) + "."]
    if 1 / time_scale - 1 > BOUND:
        lines.append(
            "Every request's CPU time is real time too: latencies short of the fault's "
            f"retransmission-bound tail read up to {1 / time_scale:.3g} times longer than at "
            'real timing (docs/BENCHMARKS.md, "Scale invariance").'
        )
    if time_scale < FAITHFUL_SCALE:
        lines.append(
            f"Time scale {time_scale:g} is below {FAITHFUL_SCALE:g}, the smallest at which "
            f"the scale-invariance benchmark found the report's figures within "
            f"±{BOUND:.0%} of real timing: figures that hang on the timers above "
            "or on CPU time may differ from a real-timing run."
        )
    return lines
