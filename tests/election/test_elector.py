"""The client-go elector's state machine on a FakeClock with an in-memory lock
(tests/memory_lock.py, a fake standing in for etcd: no etcd runs here; the
elector on real etcd is tests/scenario/test_candidates.py).

Default timings (15/10/2 s, jitter 1.2): no test sleeps, the clock is advanced.
"""

from __future__ import annotations

import itertools
import statistics

import pytest

from etcdlab.common.clock import FakeClock
from etcdlab.election.record import LeaderElectionRecord
from etcdlab.election.safety import SafetyChecker
from tests.memory_lock import Candidate, MemoryStore, make

LD, RD, RP, JITTER = 15.0, 10.0, 2.0, 1.2


async def test_first_candidate_creates_the_record_and_renews_on_the_fast_path(
    world: tuple[FakeClock, MemoryStore, list[Candidate]],
) -> None:
    clock, store, _ = world
    a = make(world, "a")
    a.start()
    await clock.advance(0)
    assert a.elector.leading and a.events == [("started", 0.0)]
    assert a.leaders_seen == ["a"]
    await clock.advance(10 * RP)
    # create, then (as wait.Until runs at once) a renewal at 0 and one per period
    assert store.writes == 12
    assert a.lock.gets == 1  # the first probe; renewals never read
    assert a.elector.slow_path_renewals == 0
    assert a.elector.last_renewed == 10 * RP


async def test_leader_cut_off_steps_down_renew_deadline_after_its_first_failed_renewal(
    world: tuple[FakeClock, MemoryStore, list[Candidate]],
) -> None:
    clock, _, _ = world
    a = make(world, "a")
    a.start()
    await clock.advance(5.0)  # renewed at 2 and 4
    a.lock.failing = True
    await clock.advance(30.0)
    assert a.elector.last_renewed == 4.0
    first_failed_round = 4.0 + RP
    assert a.time_of("work cancelled") == first_failed_round + RD
    assert a.time_of("stopped") == first_failed_round + RD
    assert not a.elector.leading and a.task is not None and a.task.done()


async def test_hung_renewal_is_abandoned_at_the_renew_deadline(
    world: tuple[FakeClock, MemoryStore, list[Candidate]],
) -> None:
    clock, _, _ = world
    a = make(world, "a")
    a.start()
    await clock.advance(5.0)
    a.lock.hanging = True
    await clock.advance(30.0)
    assert a.time_of("stopped") == 4.0 + RP + RD
    assert clock.sleepers == 0  # nothing left waiting on the clock


async def test_follower_waits_a_full_lease_after_it_last_saw_a_change(
    world: tuple[FakeClock, MemoryStore, list[Candidate]],
) -> None:
    clock, _, _ = world
    a, b = make(world, "a"), make(world, "b")
    a.start()
    await clock.advance(0)
    b.start()
    await clock.advance(60.0)
    assert not b.elector.leading and b.leaders_seen == ["a"]  # a kept renewing
    a.lock.failing = True
    await clock.advance(2 * LD)
    assert b.elector.leading and b.leaders_seen == ["a", "b"]
    last_renewal = a.elector.last_renewed
    assert last_renewal is not None
    saw_last_renewal = min(t for t in b.elector.attempts if t > last_renewal)
    took_over = b.time_of("started")
    assert saw_last_renewal + LD <= took_over < saw_last_renewal + LD + RP * (1 + JITTER)
    assert took_over > a.time_of("stopped")  # never two leaders


async def test_expiry_ignores_timestamps_in_the_record_and_only_sees_changes(
    world: tuple[FakeClock, MemoryStore, list[Candidate]],
) -> None:
    clock, store, _ = world
    # A holder whose clock is decades behind: its renew time is long "expired".
    stale = LeaderElectionRecord("far-away", 15, 0.0, 0.0).to_lease("lease", "memory")
    store.put(stale)
    b = make(world, "b")
    b.start()
    await clock.advance(LD - 1)
    assert not b.elector.leading  # renewTime of 1970 does not make it expire
    # The holder "renews" with a record from an even more skewed clock: any change
    # restarts the wait, whatever the time written.
    store.put(LeaderElectionRecord("far-away", 15, 0.0, -1e6).to_lease("lease", "memory"))
    await clock.advance(LD - 1)
    assert not b.elector.leading
    # Rewriting identical bytes is no sign of life.
    store.put(store.raw or b"")
    await clock.advance(LD)
    assert b.elector.leading
    assert b.elector.observed_time is not None


async def test_failed_optimistic_renew_falls_back_to_read_then_update(
    world: tuple[FakeClock, MemoryStore, list[Candidate]],
) -> None:
    clock, store, _ = world
    a = make(world, "a")
    a.start()
    await clock.advance(1.0)
    # Someone else touches the record (same holder): the cached revision is stale.
    assert store.raw is not None
    store.put(store.raw)
    await clock.advance(RP)
    assert a.elector.leading
    assert a.elector.slow_path_renewals == 1
    assert a.lock.gets == 2
    record = LeaderElectionRecord.from_lease(store.raw)
    assert record.holder_identity == "a" and record.leader_transitions == 0


async def test_release_on_cancel_lets_a_successor_in_without_waiting_a_lease(
    world: tuple[FakeClock, MemoryStore, list[Candidate]],
) -> None:
    clock, store, _ = world
    a, b = make(world, "a", release=True), make(world, "b")
    a.start()
    await clock.advance(0)
    b.start()
    await clock.advance(3.0)
    await a.stop()
    assert store.raw is not None
    assert LeaderElectionRecord.from_lease(store.raw).holder_identity == ""
    assert a.events[-1][0] == "stopped"
    await clock.advance(RP * (1 + JITTER))
    assert b.elector.leading
    assert b.leaders_seen == ["a", "", "b"] or b.leaders_seen == ["a", "b"]
    assert LeaderElectionRecord.from_lease(store.raw).leader_transitions == 1


async def test_cancel_without_release_keeps_the_record(
    world: tuple[FakeClock, MemoryStore, list[Candidate]],
) -> None:
    clock, store, _ = world
    a = make(world, "a")
    a.start()
    await clock.advance(3.0)
    await a.stop()
    assert store.raw is not None
    assert LeaderElectionRecord.from_lease(store.raw).holder_identity == "a"
    assert [name for name, _ in a.events] == ["started", "work cancelled", "stopped"]


async def test_acquire_retries_are_jittered_between_one_and_one_plus_factor_periods(
    world: tuple[FakeClock, MemoryStore, list[Candidate]],
) -> None:
    clock, _, _ = world
    a = make(world, "a")
    a.start()
    await clock.advance(0)
    followers = [make(world, f"f{index}") for index in range(4)]
    for follower in followers:
        follower.start()
    await clock.advance(200.0)
    gaps = [
        later - earlier
        for follower in followers
        for earlier, later in itertools.pairwise(follower.elector.attempts)
    ]
    assert len(gaps) > 100
    assert all(RP <= gap < RP * (1 + JITTER) for gap in gaps)
    # Uniform on [RP, 2.2 RP): mean 1.6 RP, stdev 1.2 RP / sqrt(12) ~ 0.35 RP.
    assert statistics.mean(gaps) == pytest.approx(RP * (1 + JITTER / 2), rel=0.1)
    assert statistics.stdev(gaps) > 0.25 * RP
    # Candidates drift apart instead of retrying in lockstep.
    last_attempts = {round(follower.elector.attempts[-1], 3) for follower in followers}
    assert len(last_attempts) == len(followers)


async def test_fence_follows_the_record_revision_and_needs_a_term(
    world: tuple[FakeClock, MemoryStore, list[Candidate]],
) -> None:
    clock, store, _ = world
    a = make(world, "a")
    with pytest.raises(RuntimeError, match="never led"):
        a.elector.fence()
    a.start()
    await clock.advance(0)
    fence = a.elector.fence()
    assert fence.key == a.lock.key and fence.revision == store.revision
    assert fence.term == a.elector.term


async def test_slow_acknowledgement_lets_two_believe_they_lead_and_the_checker_says_so(
    world: tuple[FakeClock, MemoryStore, list[Candidate]],
) -> None:
    """client-go does not fence: a renewal applied at t_w but acknowledged d later
    (d under the request timeout, RD/2, or the elector abandons it) keeps the
    leader believing until t_w + d + RP + RD, while followers may take over from
    t_w + LD. With RD = 14.9 s (a valid config: 15 > 14.9 > 2.4) and d = 7.4 s
    the two beliefs overlap whatever the jitter."""
    clock, store, made = world
    checker = SafetyChecker(clock)
    a = Candidate("a", store, clock, listener=checker, renew_deadline=14.9)
    b = Candidate("b", store, clock, listener=checker, renew_deadline=14.9)
    made.extend((a, b))
    a.start()
    await clock.advance(0)
    b.start()
    await clock.advance(5.0)  # renewed at 0, 2 and 4
    a.lock.answer_delay = 7.4
    await clock.advance(1.0)  # the renewal at 6 is applied, its answer comes at 13.4
    a.lock.failing = True
    await clock.advance(40.0)
    assert a.elector.last_renewed == pytest.approx(13.4)
    assert a.time_of("stopped") == pytest.approx(13.4 + RP + 14.9)
    assert b.time_of("started") < 6.0 + 2 * RP * (1 + JITTER) + LD
    (overlap,) = checker.report().overlaps
    assert (overlap.first, overlap.second) == ("a", "b")
    assert overlap.seconds > 13.4 + RP + 14.9 - (6.0 + 2 * RP * (1 + JITTER) + LD)


async def test_an_answer_slower_than_the_request_timeout_is_abandoned(
    world: tuple[FakeClock, MemoryStore, list[Candidate]],
) -> None:
    clock, _, _ = world
    a = make(world, "a")
    a.start()
    await clock.advance(5.0)  # renewed at 0, 2 and 4
    a.lock.answer_delay = RD / 2 + 1
    await clock.advance(1.0)
    # The renewal at 6 was applied but its answer never came within RD/2.
    await clock.advance(RD / 2)
    assert a.elector.last_renewed == 4.0
    # The first probe, then the slow path's read as the update was abandoned.
    assert a.lock.gets == 2


async def test_each_lock_request_is_abandoned_after_its_own_timeout(
    world: tuple[FakeClock, MemoryStore, list[Candidate]],
) -> None:
    clock, _, _ = world
    a, b = make(world, "a"), make(world, "b")
    a.start()
    await clock.advance(0)
    b.lock.hanging = True
    b.start()
    await clock.advance(100.0)
    # Each acquire attempt is one read that hangs until the request timeout
    # (max(1 s, RD/2)), then the jittered pause.
    timeout = max(1.0, RD / 2)
    gaps = [later - earlier for earlier, later in itertools.pairwise(b.elector.attempts)]
    assert len(gaps) > 10
    assert all(timeout + RP <= gap < timeout + RP * (1 + JITTER) for gap in gaps)


@pytest.mark.parametrize(("delay", "tries"), [(0.0, 5), (1.5, 4)])
async def test_failing_renewals_are_retried_every_retry_period_start_to_start(
    world: tuple[FakeClock, MemoryStore, list[Candidate]], delay: float, tries: int
) -> None:
    clock, _, _ = world
    a = make(world, "a")
    a.start()
    await clock.advance(5.0)  # renewed at 0, 2 and 4
    updates = a.lock.updates
    a.lock.failing = True
    a.lock.reach_delay = delay
    await clock.advance(30.0)
    # From 6 to 6 + RD: a try every RP, or at once after a try longer than RP
    # (an update and a read of `delay` each).
    assert a.lock.updates - updates == tries
    assert a.time_of("stopped") == 6.0 + RD
