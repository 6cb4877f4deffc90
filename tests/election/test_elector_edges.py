"""The elector at the edges of client-go's rules: what a listener hears, races to
create or take the record, expiry at exactly the lease's end, releases, and what
is logged when a leader steps down or its work fails.

On a FakeClock with the in-memory lock of tests/memory_lock.py (a fake of the
etcd key, not etcd); ``RefusingLock`` adds refused updates to it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import pytest

from etcdlab.common.clock import FakeClock
from etcdlab.election.config import LeaderElectionConfig
from etcdlab.election.elector import LeaderCallbacks, LeaderElector
from etcdlab.election.lock import LockConflictError
from etcdlab.election.record import LeaderElectionRecord
from etcdlab.election.safety import SafetyChecker
from tests.memory_lock import Candidate, MemoryLock, MemoryStore, World, make, stored

RP = 2.0


class Heard:
    """A LeadershipListener that keeps what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float, int | None]] = []

    def started_leading(self, identity: str, at: float, term: int) -> None:
        self.calls.append(("started", identity, at, term))

    def renewed(self, identity: str, at: float) -> None:
        self.calls.append(("renewed", identity, at, None))

    def stopped_leading(self, identity: str, at: float) -> None:
        self.calls.append(("stopped", identity, at, None))


async def test_before_running_an_elector_has_observed_and_led_nothing() -> None:
    elector = Candidate("a", MemoryStore(), FakeClock()).elector
    assert elector.leading is False and elector.leader == "" and not elector.is_leader
    assert elector.observed_time is None and elector.last_renewed is None
    assert elector.term is None and elector.attempts == []


async def leader_then_follower(
    world: World, *, release: bool = False
) -> tuple[Candidate, Candidate]:
    """a leads from 0; b (releasing on cancel if ``release``) follows from 0 on."""
    clock, _, _ = world
    a, b = make(world, "a"), make(world, "b", release=release)
    a.start()
    await clock.advance(0)
    b.start()
    await clock.advance(RP)
    return a, b


async def test_the_listener_hears_each_belief_with_its_term_and_time(world: World) -> None:
    clock, store, made = world
    heard = Heard()
    a = Candidate("a", store, clock, listener=heard)
    made.append(a)
    a.start()
    await clock.advance(2 * RP + 1)
    a.lock.failing = True
    await clock.advance(30.0)
    assert a.elector.term == 1
    assert heard.calls[0] == ("started", "a", 0.0, 1)
    renewals = [at for kind, who, at, _ in heard.calls if kind == "renewed" and who == "a"]
    assert renewals == [0.0, RP, 2 * RP]  # the acquiring write is no renewal of it
    assert heard.calls[-1] == ("stopped", "a", a.time_of("stopped"), None)
    assert a.elector.leading is False


async def test_the_safety_checker_gets_the_term_to_fence_with(world: World) -> None:
    clock, store, made = world
    checker = SafetyChecker(clock)
    a = Candidate("a", store, clock, listener=checker)
    made.append(a)
    store.put(b"placeholder")  # the record's first revision is not 1
    store.raw = None
    a.start()
    await clock.advance(RP)
    (interval,) = checker.report().intervals
    assert interval.term == a.elector.term == a.elector.fence().term == 2


async def test_a_candidate_that_never_led_has_no_fence_even_after_reading(world: World) -> None:
    _, b = await leader_then_follower(world)
    assert b.lock.revision is not None  # it read the record
    with pytest.raises(RuntimeError, match="b has never led"):
        b.elector.fence()


async def test_two_candidates_racing_to_create_the_record_make_one_leader(world: World) -> None:
    clock, _, _ = world
    a, b = make(world, "a"), make(world, "b")
    for candidate in (a, b):
        candidate.lock.reach_delay = 0.5  # both read "no record" before either creates
        candidate.start()
    await clock.advance(1.0)
    assert [c.elector.leading for c in (a, b)] == [True, False]
    assert b.elector.leader == ""  # it never read a's record yet
    await clock.advance(RP * 2.2 + 1.0)
    assert not b.elector.leading and b.elector.leader == "a"


class RefusingLock(MemoryLock):
    """A MemoryLock whose updates can be refused as if the record changed."""

    refuse = False

    async def update(self, record: LeaderElectionRecord) -> None:
        if self.refuse:
            self.updates += 1
            raise LockConflictError("changed since last read")
        await super().update(record)


def elector_on(
    lock: MemoryLock, clock: FakeClock, name: str, started: list[str], **config: float
) -> LeaderElector:
    """An elector without jitter: attempts exactly ``retry_period`` apart."""

    async def lead() -> None:
        started.append(f"{name}@{clock.now():g}")
        await asyncio.Event().wait()

    no_jitter = random.Random(0)
    no_jitter.random = lambda: 0.0  # type: ignore[method-assign]
    return LeaderElector(
        LeaderElectionConfig(identity=name, **config),  # type: ignore[arg-type]
        lock,
        LeaderCallbacks(lead, lambda: None),
        clock=clock,
        rng=no_jitter,
    )


async def test_a_refused_takeover_is_not_leadership() -> None:
    clock, store, started = FakeClock(), MemoryStore(), list[str]()
    a_lock, b_lock = MemoryLock(store, clock), RefusingLock(store, clock)
    tasks = [asyncio.create_task(elector_on(a_lock, clock, "a", started).run())]
    await clock.advance(0)
    b = elector_on(b_lock, clock, "b", started)
    tasks.append(asyncio.create_task(b.run()))
    await clock.advance(1.0)
    a_lock.failing = True
    b_lock.refuse = True
    await clock.advance(40.0)
    assert started == ["a@0"] and not b.leading and b_lock.updates > 5
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)


async def test_a_lease_expires_at_exactly_its_duration_after_the_last_change() -> None:
    clock, store, started = FakeClock(), MemoryStore(), list[str]()
    a_lock = MemoryLock(store, clock)
    tasks = [asyncio.create_task(elector_on(a_lock, clock, "a", started).run())]
    await clock.advance(0)
    # a's record says 15 s; b tries every 2.5 s, so once at exactly 15.
    b = elector_on(MemoryLock(store, clock), clock, "b", started, retry_period=2.5)
    tasks.append(asyncio.create_task(b.run()))
    await clock.advance(0)
    assert b.observed_time == 0.0
    a_lock.failing = True
    await clock.advance(30.0)
    # client-go: valid while observed + duration is after now; at 15 it is not.
    assert started == ["a@0", "b@15"]
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)


async def test_slow_path_renewals_are_counted_and_keep_the_transitions(world: World) -> None:
    clock, store, _ = world
    a, b = await leader_then_follower(world)
    a.lock.failing = True
    await clock.advance(40.0)
    assert b.elector.leading and stored(store).leader_transitions == 1
    for _ in range(2):
        store.put(store.raw or b"")  # someone rewrites the record: b reads, then updates
        await clock.advance(RP)
    assert b.elector.slow_path_renewals == 2
    assert stored(store).holder_identity == "b" and stored(store).leader_transitions == 1


async def test_a_release_keeps_the_count_and_is_stamped_now(world: World) -> None:
    clock, store, _ = world
    a, b = await leader_then_follower(world, release=True)
    a.lock.failing = True
    await clock.advance(40.0)
    assert b.elector.leading
    await b.stop()
    released = stored(store)
    assert released.holder_identity == "" and released.leader_transitions == 1
    # Record times are wall time moved on by the elector's clock.
    assert released.renew_time == pytest.approx(time.time() + clock.now(), abs=2.0)
    # The release is the last record b saw, and b's run ended as cancelled, cleanly.
    assert b.elector.leader == "" and b.task is not None and b.task.cancelled()


async def test_a_leader_that_lost_the_record_to_another_does_not_release_it(
    world: World,
) -> None:
    clock, store, _ = world
    a = make(world, "a", release=True)
    a.start()
    await clock.advance(RP / 2)
    # b took the record (a's renewals are refused, its reads see b's valid lease).
    wall = time.time() + clock.now()
    store.put(LeaderElectionRecord("b", 15, wall, wall, 1).to_lease("lease", "memory"))
    await clock.advance(20.0)
    assert a.events[-1][0] == "stopped"
    assert stored(store).holder_identity == "b"


async def test_a_follower_that_stops_releases_nothing(world: World) -> None:
    clock, store, _ = world
    _, b = await leader_then_follower(world, release=True)
    await clock.advance(RP * 2)
    writes = store.writes
    await b.stop()
    assert store.writes == writes and stored(store).holder_identity == "a"


async def test_stepping_down_and_failed_leader_work_are_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    clock, store, made = world

    async def fails() -> None:
        raise RuntimeError("controller crashed")

    async def returns() -> None:
        return None

    for name, work in (("a", fails), ("b", returns)):
        caplog.clear()
        lock = MemoryLock(MemoryStore(), clock)
        elector = LeaderElector(
            LeaderElectionConfig(identity=name),
            lock,
            LeaderCallbacks(work, lambda: None),
            clock=clock,
            rng=random.Random(1),
        )
        task = asyncio.create_task(elector.run())
        with caplog.at_level(logging.INFO, logger="etcdlab.election.elector"):
            await clock.advance(1.0)
            lock.failing = True
            await clock.advance(30.0)
        await asyncio.wait((task,))
        messages = [(r.levelno, r.getMessage()) for r in caplog.records]
        assert (
            logging.INFO,
            f"{name}: failed to renew memory/lease within 10s, stepping down",
        ) in messages
        failed = [r for r in caplog.records if r.levelno == logging.ERROR]
        if name == "a":
            (record,) = failed
            assert record.getMessage() == "a: leader work failed"
            assert record.exc_info is not None and "controller crashed" in str(record.exc_info[1])
        else:
            assert failed == []
    assert store.raw is None and made == []
