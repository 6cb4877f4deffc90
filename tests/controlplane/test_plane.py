"""The control plane's recording of election steps, on a FakeClock with the
in-memory lock of tests/memory_lock.py, a fake standing in for etcd (no etcd
runs here); and the plane's config."""

from __future__ import annotations

import asyncio
import random

import pytest

from etcdlab.common.clock import FakeClock
from etcdlab.common.timeline import EventKind, Recorder, Timeline
from etcdlab.common.timescale import TimeScale
from etcdlab.controlplane.plane import PlaneConfig, RecordingLock
from etcdlab.election.config import LeaderElectionConfig
from etcdlab.election.elector import LeaderCallbacks, LeaderElector
from tests.memory_lock import MemoryLock, MemoryStore


class Listener:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def started_leading(self, identity: str, at: float, term: int) -> None:
        self.recorder.leader("lease", identity, True)

    def renewed(self, identity: str, at: float) -> None:
        pass

    def stopped_leading(self, identity: str, at: float) -> None:
        self.recorder.leader("lease", identity, False)


async def lead_forever() -> None:
    await asyncio.Event().wait()


def candidate(
    name: str, store: MemoryStore, clock: FakeClock, recorder: Recorder
) -> tuple[MemoryLock, LeaderElector]:
    inner = MemoryLock(store, clock)
    lock = RecordingLock(inner, recorder, name, "lease")
    elector = LeaderElector(
        LeaderElectionConfig(identity=name),
        lock,
        LeaderCallbacks(lead_forever, lambda: None),
        clock=clock,
        rng=random.Random(name),
        listener=Listener(recorder),
    )
    lock.elector = elector
    return inner, elector


async def test_recording_lock_records_the_analysis_election_steps() -> None:
    clock, store = FakeClock(), MemoryStore()
    recorder = Recorder(Timeline("t", seed=0, time_scale=TimeScale(1.0)), clock)
    a_lock, a = candidate("a", store, clock, recorder)
    tasks = [asyncio.create_task(a.run())]
    await clock.advance(0)
    assert a.leading
    _, b = candidate("b", store, clock, recorder)
    tasks.append(asyncio.create_task(b.run()))
    await clock.advance(1)
    a_lock.failing = True  # the leader's member stops answering
    await clock.advance(40)
    timeline = recorder.finish()
    events = [(e.kind, e.component) for e in timeline.events]
    first_renew_failure = next(e.t for e in timeline.events if e.kind is EventKind.RENEW_FAILED)
    # The fast path fails first, then the leader reads (slow path), until the deadline.
    assert events[0] == (EventKind.RENEW_FAILED, "a")
    assert (EventKind.SLOW_PATH, "a") in events
    assert all(who == "a" for _, who in events), "b only waited: it never tried a write"
    changes = [(c.candidate, c.leading, c.t) for c in timeline.leaders]
    assert [(who, leading) for who, leading, _ in changes] == [
        ("a", True),
        ("a", False),
        ("b", True),
    ]
    stepped_down = changes[1][2]
    # client-go: the leader gives up renew_deadline (10 s) after it started failing;
    # retries are every retry_period (2 s), so within one period of that.
    assert 10 - 2 <= stepped_down - first_renew_failure <= 10 + 2
    # b takes over lease_duration (15 s) after it last saw the record change.
    assert changes[2][2] - 1 >= 15
    assert not timeline.overlapping_leaders()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_plane_config_validates_and_scales() -> None:
    with pytest.raises(ValueError, match="apiservers"):
        PlaneConfig(apiservers=0)
    with pytest.raises(ValueError, match="churn_period"):
        PlaneConfig(churn_period=-1)
    scaled = PlaneConfig().scaled(0.1)
    assert scaled.election.lease_duration == pytest.approx(1.5)
    assert scaled.client.keepalive_time == pytest.approx(3.0)
    assert scaled.controllers.rate_limits.qps == pytest.approx(100.0)
    assert scaled.sample_period == pytest.approx(0.05)
    assert PlaneConfig(nodes=20, deployments=105, statefulsets=105).objects >= 1000
