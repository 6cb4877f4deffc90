"""SafetyChecker arithmetic on a FakeClock."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdlab.common.clock import FakeClock
from etcdlab.election.safety import Fence, SafetyChecker
from etcdlab.protos import rpc_pb2


async def test_clean_handover_has_no_overlap_and_measures_failover() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.started_leading("a", 0.0, term=5)
    checker.renewed("a", 2.0)
    checker.renewed("a", 4.0)
    await clock.advance(5.0)
    assert checker.mark_fault("kill") == 5.0
    checker.stopped_leading("a", 16.0)
    checker.started_leading("b", 20.5, term=9)
    await clock.advance(25.0)
    report = checker.report()
    assert report.overlaps == ()
    assert report.transitions == 1
    assert report.leaderless_seconds == pytest.approx(4.5)
    assert report.longest_leaderless == pytest.approx(4.5)
    (failover,) = report.failovers
    assert (failover.old_leader, failover.new_leader) == ("a", "b")
    assert failover.since_fault == pytest.approx(15.5)
    assert failover.since_last_renewal == pytest.approx(16.5)
    assert failover.step_down_after_fault == pytest.approx(11.0)
    assert checker.leaders() == ["b"]
    summary = json.loads(json.dumps(report.as_dict()))
    assert summary["failovers"][0]["since_fault"] == pytest.approx(15.5)
    assert summary["intervals"][0] == {
        "identity": "a",
        "start": 0.0,
        "term": 5,
        "end": 16.0,
        "last_renewed": 4.0,
    }


async def test_overlapping_beliefs_are_reported() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.started_leading("a", 0.0, term=1)
    checker.started_leading("b", 3.0, term=2)
    checker.stopped_leading("a", 4.0)
    checker.started_leading("c", 10.0, term=3)
    await clock.advance(12.0)
    report = checker.report()
    assert [(o.first, o.second, o.start, o.end) for o in report.overlaps] == [
        ("a", "b", 3.0, 4.0),
        ("b", "c", 10.0, 12.0),
    ]
    assert report.leaderless_seconds == 0.0
    with pytest.raises(ValueError, match="started leading twice"):
        checker.started_leading("c", 12.0, term=4)


async def test_leader_that_rides_out_a_fault_has_no_successor() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.started_leading("a", 0.0, term=1)
    await clock.advance(1.0)
    checker.mark_fault("pause")
    await clock.advance(9.0)
    (failover,) = checker.report().failovers
    assert failover.old_leader == "a" and failover.new_leader is None
    assert failover.old_stepped_down is None and failover.since_fault is None


async def test_stale_writes_are_those_under_a_superseded_term() -> None:
    clock = FakeClock()
    checker = SafetyChecker(clock)
    checker.started_leading("a", 0.0, term=1)
    checker.write_attempted(1, accepted=True)
    checker.stopped_leading("a", 1.0)
    checker.started_leading("b", 2.0, term=7)
    await clock.advance(3.0)
    checker.write_attempted(1, accepted=False)
    checker.write_attempted(1, accepted=True)
    checker.write_attempted(7, accepted=True)
    report = checker.report()
    assert report.writes == 4
    assert (
        report.stale_writes_attempted,
        report.stale_writes_blocked,
        report.stale_writes_accepted,
    ) == (2, 1, 1)


def test_fences_compare_the_right_revision() -> None:
    leader_key = Fence.on_leader_key(b"/e/1", 42).compare()
    assert leader_key.target == rpc_pb2.Compare.CREATE and leader_key.create_revision == 42
    record = Fence.on_record(b"/r", 17, term=3)
    assert record.compare().target == rpc_pb2.Compare.MOD and record.compare().mod_revision == 17
    assert record.term == 3


@st.composite
def beliefs(draw: st.DrawFn) -> list[tuple[str, float, float]]:
    """Per identity, disjoint intervals on a 0.1 s grid (what candidates report)."""
    found = []
    for identity in ("a", "b", "c"):
        points = sorted(set(draw(st.lists(st.integers(0, 200), max_size=8))))
        for start, end in zip(points[::2], points[1::2], strict=False):
            found.append((identity, start / 10, end / 10))
    return found


@given(beliefs())
@settings(max_examples=200, deadline=None)
def test_overlaps_and_gaps_match_brute_force(intervals: list[tuple[str, float, float]]) -> None:
    async def check() -> None:
        clock = FakeClock()
        checker = SafetyChecker(clock)
        for at, kind, identity in sorted(
            [(s, 1, i) for i, s, _ in intervals] + [(e, 0, i) for i, _, e in intervals]
        ):
            if kind:
                checker.started_leading(identity, at, term=0)
            else:
                checker.stopped_leading(identity, at)
        await clock.advance(25.0)
        report = checker.report()
        expected = {
            (min(x, y, key=lambda v: (v[1], v[0])), max(y[1], x[1]), min(x[2], y[2]))
            for x, y in itertools.combinations(intervals, 2)
            if x[0] != y[0] and max(x[1], y[1]) < min(x[2], y[2])
        }
        got = {(o.first, o.start, o.end) for o in report.overlaps}
        assert {(first[0], start, end) for first, start, end in expected} == got
        if intervals:
            covered = sum(
                0.1
                for tick in range(int(min(s for _, s, _ in intervals) * 10), 250)
                if any(s <= tick / 10 < e for _, s, e in intervals)
            )
            window = 25.0 - min(s for _, s, _ in intervals)
            assert report.leaderless_seconds == pytest.approx(window - covered, abs=1e-6)

    asyncio.run(check())
