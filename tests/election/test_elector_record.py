"""What the elector writes into the lease record, as client-go does: who holds it,
for how long, since when (``acquireTime``, kept while the same holder renews),
last renewed when, and how many times it changed hands.

On a FakeClock with the in-memory lock of tests/memory_lock.py (a fake of the
etcd key, not etcd), so a wrong field fails in milliseconds.
"""

from __future__ import annotations

import time

import pytest

from etcdlab.common.clock import FakeClock
from tests.memory_lock import Candidate, MemoryStore, World, make, stored

LD, RP = 15.0, 2.0
# Record times are written with microseconds; the wall offset is taken once.
TICK = 1e-5


async def test_renewals_keep_acquire_time_and_advance_renew_time(world: World) -> None:
    clock, store, _ = world
    a = make(world, "a")
    a.start()
    await clock.advance(0)
    first = stored(store)
    assert first.holder_identity == "a"
    assert first.lease_duration_seconds == LD
    assert first.renew_time == pytest.approx(first.acquire_time, abs=TICK)
    assert first.leader_transitions == 0
    await clock.advance(5 * RP)  # fast-path renewals only
    assert a.elector.slow_path_renewals == 0
    renewed = stored(store)
    assert renewed.acquire_time == first.acquire_time
    assert renewed.renew_time == pytest.approx(first.acquire_time + 5 * RP, abs=TICK)
    assert renewed.leader_transitions == 0
    # Someone rewrites the same record: the next renewal reads, then updates.
    store.put(store.raw or b"")
    await clock.advance(RP)
    assert a.elector.slow_path_renewals == 1
    slow = stored(store)
    assert slow.acquire_time == first.acquire_time
    assert slow.renew_time == pytest.approx(first.acquire_time + 6 * RP, abs=TICK)
    assert slow.holder_identity == "a" and slow.leader_transitions == 0


async def test_a_takeover_counts_a_transition_and_starts_a_new_acquire_time(
    world: World,
) -> None:
    clock, store, _ = world
    a, b = make(world, "a"), make(world, "b")
    a.start()
    await clock.advance(0)
    b.start()
    await clock.advance(3 * RP)
    held_by_a = stored(store)
    a.lock.failing = True
    await clock.advance(2 * LD)
    assert b.elector.leading
    took_over = b.time_of("started")
    by_b = stored(store)
    assert by_b.holder_identity == "b"
    assert by_b.leader_transitions == held_by_a.leader_transitions + 1 == 1
    # b's acquire time is its own takeover, not a's acquisition (nor a renewal).
    assert by_b.acquire_time == pytest.approx(held_by_a.acquire_time + took_over, abs=1e-2)
    await clock.advance(3 * RP)
    assert stored(store).acquire_time == by_b.acquire_time
    assert stored(store).leader_transitions == 1


async def test_release_empties_the_holder_and_keeps_the_transition_count(world: World) -> None:
    clock, store, _ = world
    a = make(world, "a", release=True)
    a.start()
    await clock.advance(3 * RP)
    await a.stop()
    released = stored(store)
    assert released.holder_identity == ""
    assert released.lease_duration_seconds == 1
    assert released.leader_transitions == 0
    # A new holder after a release is a transition like any other.
    b = make(world, "b")
    b.start()
    await clock.advance(RP)
    assert b.elector.leading and stored(store).leader_transitions == 1


async def test_record_times_are_wall_clock_whatever_the_clock_origin() -> None:
    # A monotonic clock counts from an arbitrary origin; readers of the key see wall time.
    clock, store = FakeClock(start=5000.0), MemoryStore()
    a = Candidate("a", store, clock)
    a.start()
    await clock.advance(0)
    try:
        assert stored(store).acquire_time == pytest.approx(time.time(), abs=5.0)
    finally:
        await a.stop()


async def test_seeded_candidates_repeat_their_jitter(world: World) -> None:
    clock, _, made = world
    a = make(world, "a")
    a.start()
    await clock.advance(0)
    twins = [Candidate("twin", world[1], clock) for _ in range(2)]
    made.extend(twins)
    for twin in twins:
        twin.start()
    await clock.advance(60.0)
    first, second = (twin.elector.attempts for twin in twins)
    assert len(first) > 10 and first == second


async def test_new_leaders_are_reported_as_client_go_does(world: World) -> None:
    """``on_new_leader`` runs when the observed holder differs from the last one
    reported, which starts empty (client-go's ``reportedLeader``): a candidate
    that never reached the lock has no leader to report."""
    clock, _, _ = world
    a = make(world, "a", release=True)
    a.lock.failing = True
    a.start()
    await clock.advance(10.0)
    assert len(a.elector.attempts) > 2 and a.leaders_seen == []
    a.lock.failing = False
    await clock.advance(RP * 2.2)
    assert a.leaders_seen == ["a"]
    b = make(world, "b")
    b.start()
    await clock.advance(RP * 3)
    assert b.leaders_seen == ["a"]  # once, not at every read
    await a.stop()
    await clock.advance(RP * 2.2)
    # b saw the released record and took it in the same attempt: "" was never
    # the holder when it reported.
    assert b.elector.leading and b.leaders_seen == ["a", "b"]
