"""client-go electors on a real cluster under member faults, time-scaled.

Five candidates, each pinned to one member (candidate i to member i % 3). The
leader's member is killed or paused; the leader must step down within
``retry_period + renew_deadline`` of its last renewal (the renewal round that
starts one period later gives up after ``renew_deadline``), a successor must
take over within the failover bound, and no two candidates may ever believe
they lead at once.

Failover bound, from the old leader's last successful renewal: a follower
notices that renewal at its next attempt (``wait.Jitter`` waits up to
``(1 + jitter_factor) * retry_period``), waits ``lease_duration`` from then,
and acquires at its first attempt after that (another jittered wait).
"""

from __future__ import annotations

import itertools
import statistics
import uuid

from emulator.cluster import LocalCluster
from emulator.election.config import LeaderElectionConfig
from emulator.election.safety import Failover, SafetyReport
from tests.election_harness import Candidate, Election, election
from tests.waiting import eventually

TIME_SCALE = 0.2
# Scheduling noise on a shared 2-core machine, added to every bound.
SLACK = 0.5


def scaled_config(test: str) -> LeaderElectionConfig:
    return LeaderElectionConfig(identity="-", name=f"{test}-{uuid.uuid4().hex[:8]}").scaled(
        TIME_SCALE
    )


def jittered_max(config: LeaderElectionConfig) -> float:
    return (1 + config.jitter_factor) * config.retry_period


def failover_bound(config: LeaderElectionConfig) -> float:
    return config.lease_duration + 2 * jittered_max(config) + SLACK


def step_down_bound(config: LeaderElectionConfig) -> float:
    return config.retry_period + config.renew_deadline + SLACK


async def settled_leader(run: Election) -> Candidate:
    def agreed() -> bool:
        leader = run.leader()
        return leader is not None and all(
            c.leaders_seen[-1:] == [leader.identity] for c in run.candidates
        )

    await eventually(
        agreed,
        timeout=run.config.lease_duration + 10,
        what="one leader seen by every candidate",
    )
    leader = run.leader()
    assert leader is not None
    return leader


async def await_failover(run: Election, old: Candidate) -> SafetyReport:
    config = run.config
    await eventually(
        lambda: not old.elector.leading, step_down_bound(config) + 1, "the old leader to step down"
    )
    await eventually(
        lambda: run.leader() not in (None, old),
        failover_bound(config) + 1,
        "a new leader",
    )
    return run.checker.report()


def check_failover(report: SafetyReport, config: LeaderElectionConfig, old: Candidate) -> Failover:
    assert report.overlaps == (), f"two leaders at once: {report.overlaps}"
    (failover,) = report.failovers
    assert failover.old_leader == old.identity
    assert failover.old_stepped_down is not None and failover.old_last_renewed is not None
    step_down = failover.old_stepped_down - failover.old_last_renewed
    assert step_down <= step_down_bound(config)
    assert failover.since_last_renewal is not None
    assert failover.since_last_renewal <= failover_bound(config)
    # The successor waited out a full lease from (at latest) the last renewal.
    assert failover.since_last_renewal >= config.lease_duration
    print(
        f"\n{failover.fault}: step-down {step_down:.2f}s after last renewal "
        f"(bound {step_down_bound(config):.2f}); failover {failover.since_last_renewal:.2f}s "
        f"after last renewal (bound {failover_bound(config):.2f}, "
        f"LD + 1.2 RP = {config.lease_duration + 1.2 * config.retry_period:.2f}); "
        f"{failover.since_fault:.2f}s after the fault"
    )
    return failover


async def test_kill_the_leaders_member(cluster: LocalCluster) -> None:
    config = scaled_config("kill")
    async with election(cluster, config) as run:
        old = await settled_leader(run)
        run.checker.mark_fault("kill")
        cluster.kill(old.member)
        report = await await_failover(run, old)
    check_failover(report, config, old)


async def test_pause_the_leaders_member(cluster: LocalCluster) -> None:
    config = scaled_config("pause")
    async with election(cluster, config) as run:
        old = await settled_leader(run)
        run.checker.mark_fault("pause")
        cluster.pause(old.member)
        try:
            report = await await_failover(run, old)
        finally:
            cluster.resume(old.member)
    check_failover(report, config, old)


async def test_jitter_spreads_acquire_attempts(cluster: LocalCluster) -> None:
    config = scaled_config("jitter")
    async with election(cluster, config) as run:
        leader = await settled_leader(run)
        followers = [c for c in run.candidates if c is not leader]
        await eventually(
            lambda: all(len(c.elector.attempts) >= 12 for c in followers),
            timeout=20 * jittered_max(config),
            what="a dozen attempts per follower",
        )
        report = run.checker.report()
    gaps = [b - a for c in followers for a, b in itertools.pairwise(c.elector.attempts)]
    assert report.overlaps == () and report.transitions == 0
    # Sliding: each wait starts after the attempt ends, so a gap is at least one period.
    assert min(gaps) >= config.retry_period
    # Uniform jitter over [1, 1 + 1.2) periods has a stdev of ~0.35 periods; retries in
    # lockstep would have ~0. Loaded-machine noise only adds spread, so bound from below.
    assert statistics.stdev(gaps) > 0.2 * config.retry_period
    assert statistics.median(gaps) < jittered_max(config) + SLACK
