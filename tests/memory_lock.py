"""An in-memory resource lock, and candidates on it, for elector state-machine
tests on a FakeClock: a fake standing in for etcd (the real lock is
etcdlab.election.lock.EtcdLeaseLock, tested on real etcd).

Several ``MemoryLock``s share one ``MemoryStore`` like candidates share an etcd
key; each keeps its own last-seen revision, and each can be cut off (calls fail)
or hung (calls never return) on its own.
"""

from __future__ import annotations

import asyncio
import random

from etcdlab.common.clock import FakeClock
from etcdlab.election.config import LeaderElectionConfig
from etcdlab.election.elector import LeaderCallbacks, LeaderElector, LeadershipListener
from etcdlab.election.lock import LockConflictError, LockNotFoundError, ObservedRecord
from etcdlab.election.record import LeaderElectionRecord


class MemoryStore:
    def __init__(self) -> None:
        self.raw: bytes | None = None
        self.revision = 0
        self.writes = 0

    def put(self, raw: bytes) -> int:
        self.revision += 1
        self.raw = raw
        self.writes += 1
        return self.revision


class MemoryLock:
    def __init__(self, store: MemoryStore, clock: FakeClock) -> None:
        self.store = store
        self.clock = clock
        self.key = b"/memory/lease"
        self._revision: int | None = None
        self.failing = False
        self.hanging = False
        self.answer_delay = 0.0
        """Seconds an applied update takes to be acknowledged (a slow response)."""
        self.reach_delay = 0.0
        """Seconds every call takes before it is served or fails (a slow network)."""
        self.gets = 0
        self.updates = 0

    def describe(self) -> str:
        return "memory/lease"

    @property
    def revision(self) -> int | None:
        return self._revision

    async def _reach(self) -> None:
        if self.reach_delay:
            await self.clock.sleep(self.reach_delay)
        if self.hanging:
            await asyncio.Event().wait()
        if self.failing:
            raise ConnectionError("lock unreachable")

    async def get(self) -> ObservedRecord:
        self.gets += 1
        await self._reach()
        if self.store.raw is None:
            raise LockNotFoundError("no record")
        self._revision = self.store.revision
        return ObservedRecord(
            LeaderElectionRecord.from_lease(self.store.raw), self.store.raw, self.store.revision
        )

    async def create(self, record: LeaderElectionRecord) -> None:
        await self._reach()
        if self.store.raw is not None:
            raise LockConflictError("exists")
        self._revision = self.store.put(record.to_lease("lease", "memory"))

    async def update(self, record: LeaderElectionRecord) -> None:
        self.updates += 1
        await self._reach()
        if self._revision is None or self._revision != self.store.revision:
            raise LockConflictError("stale revision")
        self._revision = self.store.put(record.to_lease("lease", "memory"))
        if self.answer_delay:
            await self.clock.sleep(self.answer_delay)


class Candidate:
    def __init__(
        self,
        name: str,
        store: MemoryStore,
        clock: FakeClock,
        *,
        release: bool = False,
        listener: LeadershipListener | None = None,
        renew_deadline: float = 10.0,
    ) -> None:
        self.clock = clock
        self.lock = MemoryLock(store, clock)
        self.events: list[tuple[str, float]] = []
        self.leaders_seen: list[str] = []
        config = LeaderElectionConfig(
            identity=name, release_on_cancel=release, renew_deadline=renew_deadline
        )
        self.elector = LeaderElector(
            config,
            self.lock,
            LeaderCallbacks(self._work, self._stopped, self.leaders_seen.append),
            clock=clock,
            rng=random.Random(name),
            listener=listener,
        )
        self.task: asyncio.Task[None] | None = None

    async def _work(self) -> None:
        self.events.append(("started", self.clock.now()))
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.events.append(("work cancelled", self.clock.now()))
            raise

    def _stopped(self) -> None:
        self.events.append(("stopped", self.clock.now()))

    def start(self) -> None:
        self.task = asyncio.create_task(self.elector.run())

    def time_of(self, event: str) -> float:
        return next(at for name, at in self.events if name == event)

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait((self.task,))


World = tuple[FakeClock, MemoryStore, list[Candidate]]
"""A clock, the shared record, and the candidates made on it (stopped at the end)."""


def make(world: World, name: str, *, release: bool = False) -> Candidate:
    """A candidate in ``world``, stopped with it."""
    clock, store, made = world
    candidate = Candidate(name, store, clock, release=release)
    made.append(candidate)
    return candidate


def stored(store: MemoryStore) -> LeaderElectionRecord:
    """The record as it is in the store now."""
    assert store.raw is not None, "no record written"
    return LeaderElectionRecord.from_lease(store.raw)
