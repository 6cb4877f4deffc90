"""Safety and liveness of an election, judged from what candidates believed.

Each candidate reports when it started and stopped believing it leads (on a
clock shared by all candidates in one run). The checker finds overlaps (two
believers at once: a safety violation), counts transitions, sums time without a
leader, and measures failover after each marked fault. Fenced writes report
here too, so stale writes attempted and blocked are counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from etcdlab.common.clock import Clock
from etcdlab.election.lock import TxnKV
from etcdlab.protos import rpc_pb2


@dataclass
class Interval:
    """One stretch of a candidate believing it leads."""

    identity: str
    start: float
    term: int
    """Fencing token of this leadership (record or leader-key revision)."""
    end: float | None = None
    last_renewed: float | None = None


@dataclass(frozen=True)
class Overlap:
    first: str
    second: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Failover:
    """What happened to leadership after one fault."""

    fault: str
    fault_at: float
    old_leader: str | None
    old_last_renewed: float | None
    old_stepped_down: float | None
    """``None`` when the old leader never stopped believing it leads."""
    new_leader: str | None
    new_started: float | None

    @property
    def since_fault(self) -> float | None:
        return None if self.new_started is None else self.new_started - self.fault_at

    @property
    def since_last_renewal(self) -> float | None:
        if self.new_started is None or self.old_last_renewed is None:
            return None
        return self.new_started - self.old_last_renewed

    @property
    def step_down_after_fault(self) -> float | None:
        return None if self.old_stepped_down is None else self.old_stepped_down - self.fault_at


@dataclass(frozen=True)
class SafetyReport:
    intervals: tuple[Interval, ...]
    overlaps: tuple[Overlap, ...]
    transitions: int
    """Times leadership began after a previous leadership (same holder or not)."""
    leaderless_seconds: float
    """Time between the first leadership and the end of the run with no leader."""
    longest_leaderless: float
    failovers: tuple[Failover, ...]
    writes: int
    stale_writes_attempted: int
    stale_writes_blocked: int
    stale_writes_accepted: int

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, failover durations included, for reports."""
        return {
            "overlaps": [dataclasses.asdict(o) | {"seconds": o.seconds} for o in self.overlaps],
            "transitions": self.transitions,
            "leaderless_seconds": self.leaderless_seconds,
            "longest_leaderless": self.longest_leaderless,
            "intervals": [dataclasses.asdict(i) for i in self.intervals],
            "failovers": [
                dataclasses.asdict(f)
                | {
                    "since_fault": f.since_fault,
                    "since_last_renewal": f.since_last_renewal,
                    "step_down_after_fault": f.step_down_after_fault,
                }
                for f in self.failovers
            ],
            "writes": self.writes,
            "stale_writes_attempted": self.stale_writes_attempted,
            "stale_writes_blocked": self.stale_writes_blocked,
            "stale_writes_accepted": self.stale_writes_accepted,
        }


class SafetyChecker:
    """Collects beliefs from any number of candidates; a ``LeadershipListener``."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._intervals: list[Interval] = []
        self._open: dict[str, Interval] = {}
        self._faults: list[tuple[str, float]] = []
        self._writes = 0
        self._stale = {"attempted": 0, "blocked": 0, "accepted": 0}

    # -- reports from candidates ------------------------------------------

    def started_leading(self, identity: str, at: float, term: int) -> None:
        if identity in self._open:
            raise ValueError(f"{identity} started leading twice without stopping")
        interval = Interval(identity, at, term, last_renewed=at)
        self._intervals.append(interval)
        self._open[identity] = interval

    def renewed(self, identity: str, at: float) -> None:
        interval = self._open.get(identity)
        if interval is not None:
            interval.last_renewed = at

    def stopped_leading(self, identity: str, at: float) -> None:
        interval = self._open.pop(identity, None)
        if interval is not None:
            interval.end = at

    def mark_fault(self, name: str) -> float:
        """Note that a fault was injected now; returns the time noted."""
        at = self._clock.now()
        self._faults.append((name, at))
        return at

    def write_attempted(self, term: int, accepted: bool) -> None:
        """A fenced write under ``term``, and whether etcd took it.

        It is stale when a later leadership (higher term) had begun by now: the
        term says whose leadership it was, so the writer's name adds nothing.
        """
        self._writes += 1
        newest = max((i.term for i in self._intervals if i.start <= self._clock.now()), default=0)
        if term < newest:
            self._stale["attempted"] += 1
            self._stale["accepted" if accepted else "blocked"] += 1

    # -- questions ----------------------------------------------------------

    def leaders(self) -> list[str]:
        """Who believes it leads right now."""
        return sorted(self._open)

    def report(self) -> SafetyReport:
        until = self._clock.now()
        intervals = tuple(dataclasses.replace(i) for i in self._intervals)
        ordered = sorted(intervals, key=lambda i: i.start)
        gaps = _gaps(ordered, until)
        return SafetyReport(
            intervals=intervals,
            overlaps=_overlaps(ordered, until),
            transitions=max(0, len(ordered) - 1),
            leaderless_seconds=sum(gaps),
            longest_leaderless=max(gaps, default=0.0),
            failovers=tuple(_failover(ordered, name, at) for name, at in self._faults),
            writes=self._writes,
            stale_writes_attempted=self._stale["attempted"],
            stale_writes_blocked=self._stale["blocked"],
            stale_writes_accepted=self._stale["accepted"],
        )


def _overlaps(ordered: Sequence[Interval], until: float) -> tuple[Overlap, ...]:
    found = []
    for index, first in enumerate(ordered):
        first_end = until if first.end is None else first.end
        for second in ordered[index + 1 :]:
            if second.start >= first_end:
                break
            second_end = until if second.end is None else second.end
            end = min(first_end, second_end)
            if end > second.start and first.identity != second.identity:
                found.append(Overlap(first.identity, second.identity, second.start, end))
    return tuple(found)


def _gaps(ordered: Sequence[Interval], until: float) -> list[float]:
    if not ordered:
        return []
    gaps = []
    covered_to = ordered[0].start
    for interval in ordered:
        if interval.start > covered_to:
            gaps.append(interval.start - covered_to)
        covered_to = max(covered_to, until if interval.end is None else interval.end)
    if until > covered_to:
        gaps.append(until - covered_to)
    return gaps


def _failover(ordered: Sequence[Interval], fault: str, at: float) -> Failover:
    holding = [i for i in ordered if i.start <= at and (i.end is None or i.end > at)]
    old = holding[0] if holding else None
    if old is None:
        before = [i for i in ordered if i.start <= at]
        old = before[-1] if before else None
    new = next((i for i in ordered if i.start >= at and i is not old), None)
    return Failover(
        fault=fault,
        fault_at=at,
        old_leader=old.identity if old else None,
        old_last_renewed=old.last_renewed if old else None,
        old_stepped_down=old.end if old else None,
        new_leader=new.identity if new else None,
        new_started=new.start if new else None,
    )


@dataclass(frozen=True)
class Fence:
    """The condition a leader's write is guarded by."""

    key: bytes
    target: Literal["create", "mod"]
    revision: int
    term: int

    @classmethod
    def on_leader_key(cls, key: bytes, create_revision: int) -> Fence:
        """``concurrency.Election``: the leader key still exists as created."""
        return cls(key, "create", create_revision, create_revision)

    @classmethod
    def on_record(cls, key: bytes, mod_revision: int, term: int) -> Fence:
        """Lease lock: the record is unchanged since this leader last wrote it."""
        return cls(key, "mod", mod_revision, term)

    def compare(self) -> rpc_pb2.Compare:
        if self.target == "create":
            return rpc_pb2.Compare(
                key=self.key,
                target=rpc_pb2.Compare.CREATE,
                result=rpc_pb2.Compare.EQUAL,
                create_revision=self.revision,
            )
        return rpc_pb2.Compare(
            key=self.key,
            target=rpc_pb2.Compare.MOD,
            result=rpc_pb2.Compare.EQUAL,
            mod_revision=self.revision,
        )


class FencedWriter:
    """Writes that etcd applies only while the writer's fence still holds."""

    def __init__(
        self,
        kv: TxnKV,
        *,
        checker: SafetyChecker | None = None,
        timeout: float | None = None,
    ) -> None:
        self._kv = kv
        self._checker = checker
        self._timeout = timeout

    async def put(self, fence: Fence, key: bytes, value: bytes) -> bool:
        """True if written; False if the fence no longer held (a stale leader)."""
        put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value))
        reply = await self._kv.txn([fence.compare()], [put], timeout=self._timeout)
        if self._checker is not None:
            self._checker.write_attempted(fence.term, reply.succeeded)
        return reply.succeeded
