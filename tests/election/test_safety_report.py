"""The safety report as the election command prints it, each failover's parts,
fences as etcd compares, and fenced writes on ``MemoryKV`` (a fake of etcd's
Txn, not etcd; test_concurrency.py fences against real members).

On a FakeClock: the checker's arithmetic, not timing, is under test.
"""

from __future__ import annotations

from etcdlab.common.clock import FakeClock
from etcdlab.election.safety import Failover, Fence, FencedWriter, SafetyChecker
from etcdlab.protos import rpc_pb2
from tests.election.memory_kv import MemoryKV


async def test_the_report_as_plain_values() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.started_leading("a", 0.0, term=1)
    checker.renewed("a", 2.0)
    await clock.advance(3.0)
    checker.mark_fault("kill")
    checker.started_leading("b", 5.0, term=4)
    checker.stopped_leading("a", 6.0)
    await clock.advance(7.0)
    checker.write_attempted(1, accepted=False)
    assert checker.report().as_dict() == {
        "overlaps": [{"first": "a", "second": "b", "start": 5.0, "end": 6.0, "seconds": 1.0}],
        "transitions": 1,
        "leaderless_seconds": 0.0,
        "longest_leaderless": 0.0,
        "intervals": [
            {"identity": "a", "start": 0.0, "term": 1, "end": 6.0, "last_renewed": 2.0},
            {"identity": "b", "start": 5.0, "term": 4, "end": None, "last_renewed": 5.0},
        ],
        "failovers": [
            {
                "fault": "kill",
                "fault_at": 3.0,
                "old_leader": "a",
                "old_last_renewed": 2.0,
                "old_stepped_down": 6.0,
                "new_leader": "b",
                "new_started": 5.0,
                "since_fault": 2.0,
                "since_last_renewal": 3.0,
                "step_down_after_fault": 3.0,
            }
        ],
        "writes": 1,
        "stale_writes_attempted": 1,
        "stale_writes_blocked": 1,
        "stale_writes_accepted": 0,
    }


async def test_reports_about_a_candidate_not_leading_change_nothing() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.renewed("ghost", 1.0)
    checker.stopped_leading("ghost", 1.0)
    checker.started_leading("a", 2.0, term=1)
    checker.stopped_leading("a", 4.0)
    checker.renewed("a", 5.0)  # after stepping down: not a renewal of that leadership
    checker.stopped_leading("a", 6.0)
    await clock.advance(10.0)
    report = checker.report()
    (interval,) = report.intervals
    assert (interval.start, interval.end, interval.last_renewed) == (2.0, 4.0, 2.0)
    # Leaderless from the first leadership on: 4-10.
    assert report.leaderless_seconds == report.longest_leaderless == 6.0
    assert checker.leaders() == []


async def test_a_leader_back_after_a_gap_is_a_transition_but_never_its_own_overlap() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.started_leading("a", 1.0, term=1)
    checker.stopped_leading("a", 3.0)
    checker.started_leading("a", 3.0, term=2)  # touching: no gap, no overlap
    checker.stopped_leading("a", 4.0)
    checker.started_leading("b", 6.0, term=3)
    checker.stopped_leading("b", 7.0)
    checker.started_leading("c", 7.0, term=4)  # starts as b stops: no overlap
    await clock.advance(12.0)
    report = checker.report()
    assert report.overlaps == ()
    assert report.transitions == 3
    assert report.leaderless_seconds == 2.0 and report.longest_leaderless == 2.0


async def test_the_report_does_not_move_with_later_beliefs() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.started_leading("a", 0.0, term=1)
    await clock.advance(1.0)
    report = checker.report()
    checker.renewed("a", 1.0)
    checker.stopped_leading("a", 1.0)
    assert report.intervals[0].end is None and report.intervals[0].last_renewed == 0.0


def failover(checker: SafetyChecker) -> Failover:
    (found,) = checker.report().failovers
    return found


async def test_the_old_leader_is_the_one_holding_at_the_fault_else_the_last_before() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.started_leading("a", 0.0, term=1)
    checker.stopped_leading("a", 1.0)
    checker.started_leading("b", 2.0, term=2)
    checker.stopped_leading("b", 3.0)
    checker.started_leading("c", 3.0, term=3)
    checker.stopped_leading("c", 4.0)
    await clock.advance(5.0)
    checker.mark_fault("pause")  # nobody leads at 5: c led last
    checker.started_leading("d", 9.0, term=4)
    await clock.advance(5.0)
    found = failover(checker)
    assert (found.old_leader, found.old_stepped_down, found.new_leader) == ("c", 4.0, "d")
    assert found.since_fault == 4.0 and found.step_down_after_fault == -1.0


async def test_a_belief_that_ended_as_the_fault_came_is_not_holding() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.started_leading("a", 0.0, term=1)
    checker.started_leading("b", 1.0, term=2)
    await clock.advance(2.0)
    checker.stopped_leading("a", 2.0)
    checker.mark_fault("kill")
    await clock.advance(1.0)
    assert failover(checker).old_leader == "b"


async def test_the_new_leader_is_the_first_other_to_start_from_the_fault_on() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.started_leading("a", 0.0, term=1)
    await clock.advance(4.0)
    checker.mark_fault("kill")
    checker.started_leading("b", 4.0, term=2)  # at the very moment of the fault
    checker.stopped_leading("a", 6.0)
    checker.started_leading("c", 7.0, term=3)
    await clock.advance(4.0)
    found = failover(checker)
    assert (found.old_leader, found.new_leader, found.new_started) == ("a", "b", 4.0)
    assert found.since_fault == 0.0 and found.step_down_after_fault == 2.0


async def test_a_fault_before_any_leadership_has_no_old_leader() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.mark_fault("early")
    checker.started_leading("a", 2.0, term=1)
    await clock.advance(3.0)
    found = failover(checker)
    assert found.old_leader is None and found.old_last_renewed is None
    assert found.new_leader == "a" and found.since_last_renewal is None
    assert found.step_down_after_fault is None


async def test_the_earliest_of_two_holders_is_the_old_leader() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.started_leading("b", 1.0, term=2)
    checker.started_leading("a", 0.0, term=1)
    await clock.advance(2.0)
    checker.mark_fault("kill")
    await clock.advance(1.0)
    found = failover(checker)
    assert found.old_leader == "a" and found.new_leader is None


async def test_nothing_to_report_before_anyone_led() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.write_attempted(0, accepted=True)  # no leadership yet: not stale
    await clock.advance(5.0)
    report = checker.report()
    assert (report.transitions, report.leaderless_seconds, report.longest_leaderless) == (0, 0, 0)
    assert (report.writes, report.stale_writes_attempted) == (1, 0)


async def test_a_belief_of_no_length_overlaps_nothing() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.started_leading("a", 0.0, term=1)
    checker.started_leading("b", 2.0, term=2)  # renewal failed at once
    checker.stopped_leading("b", 2.0)
    await clock.advance(4.0)
    assert checker.report().overlaps == ()


async def test_a_stale_write_is_judged_against_leaderships_begun_by_now() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.started_leading("a", 0.0, term=3)
    checker.started_leading("b", 5.0, term=9)  # reported ahead of the clock
    checker.write_attempted(3, accepted=True)
    await clock.advance(5.0)
    checker.write_attempted(3, accepted=True)
    checker.write_attempted(2, accepted=False)
    checker.write_attempted(3, accepted=False)
    checker.write_attempted(1, accepted=True)
    report = checker.report()
    assert report.writes == 5
    assert report.stale_writes_attempted == 4
    assert (report.stale_writes_accepted, report.stale_writes_blocked) == (2, 2)


def test_fences_are_equality_compares_on_the_key() -> None:
    assert Fence.on_leader_key(b"/e/1", 42) == Fence(b"/e/1", "create", 42, 42)
    assert Fence.on_leader_key(b"/e/1", 42).compare() == rpc_pb2.Compare(
        key=b"/e/1",
        target=rpc_pb2.Compare.CREATE,
        result=rpc_pb2.Compare.EQUAL,
        create_revision=42,
    )
    assert Fence.on_record(b"/r", 17, term=3) == Fence(b"/r", "mod", 17, 3)
    assert Fence.on_record(b"/r", 17, term=3).compare() == rpc_pb2.Compare(
        key=b"/r", target=rpc_pb2.Compare.MOD, result=rpc_pb2.Compare.EQUAL, mod_revision=17
    )


async def test_a_fenced_write_lands_only_while_the_fence_holds_and_is_counted() -> None:
    clock, kv = FakeClock(), MemoryKV()
    checker = SafetyChecker(clock)
    kv.put(b"/lease", b"a")
    fence = Fence.on_record(b"/lease", kv.revision, term=2)
    checker.started_leading("a", 0.0, term=2)
    writer = FencedWriter(kv, checker=checker, timeout=1.5)
    assert await writer.put(fence, b"/data", b"1")
    assert kv.kvs[b"/data"].value == b"1" and kv.calls == [(False, 1.5)]
    kv.put(b"/lease", b"b")  # another leader took the record
    checker.started_leading("b", 0.0, term=kv.revision)
    assert not await writer.put(fence, b"/data", b"2")
    assert kv.kvs[b"/data"].value == b"1"
    report = checker.report()
    assert (report.writes, report.stale_writes_attempted, report.stale_writes_blocked) == (2, 1, 1)
    # A successor the checker heard of before it wrote the record: etcd still
    # takes the old leader's write, and the checker counts it as a stale one accepted.
    fresh = Fence.on_record(b"/lease", kv.revision, term=kv.revision)
    checker.started_leading("c", 0.0, term=kv.revision + 1)
    assert await writer.put(fresh, b"/data", b"2")
    assert checker.report().stale_writes_accepted == 1
    # Without a checker the write is only written, or not.
    assert not await FencedWriter(kv).put(fence, b"/data", b"3")
    assert kv.kvs[b"/data"].value == b"2"
