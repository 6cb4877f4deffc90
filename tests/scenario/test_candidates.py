"""client-go electors on a real cluster under member and link faults, time-scaled.

Five candidates, each with its own client preferring member i % 3. With clients
that know only that member (or reach it only through their own proxy link),
killing or pausing the leader's member, or blackholing its link, forces a
failover: the leader must step down within
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

import asyncio
import itertools
import statistics
import uuid

import grpc
import pytest

from etcdlab.cluster.local import LocalCluster
from etcdlab.election.config import LeaderElectionConfig
from etcdlab.election.safety import Failover, FencedWriter, SafetyReport
from etcdlab.protos import rpc_pb2, rpc_pb2_grpc
from etcdlab.proxy.faults.blackhole import Blackhole
from etcdlab.proxy.faults.loss import Loss
from etcdlab.scenario.candidates import Candidate, Contest, contest, pinned, proxied, rotating
from tests.conftest import segments_lost
from tests.waiting import eventually, wait_until

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


async def settled_leader(run: Contest) -> Candidate:
    return await run.agreed_leader(timeout=run.config.lease_duration + 10)


async def await_failover(run: Contest, old: Candidate) -> SafetyReport:
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


def check_failover(report: SafetyReport, run: Contest, old: Candidate) -> Failover:
    config = run.config
    assert report.overlaps == (), f"two leaders at once: {report.overlaps}"
    (failover,) = report.failovers
    assert failover.old_leader == old.identity
    last_renewed, stepped_down = failover.old_last_renewed, failover.old_stepped_down
    assert stepped_down is not None and last_renewed is not None
    step_down = stepped_down - last_renewed
    assert step_down <= step_down_bound(config)
    assert failover.since_last_renewal is not None and failover.new_started is not None
    assert failover.since_last_renewal <= failover_bound(config)
    # The successor waited a full lease from when it saw the last renewal, which
    # etcd applied before the leader heard back (hence the slack).
    assert failover.since_last_renewal >= config.lease_duration - SLACK
    # Detection: the successor's first attempt after the last renewal. From then
    # on it is one lease and at most one jittered retry period.
    (new,) = [c for c in run.candidates if c.identity == failover.new_leader]
    detected = min(t for t in new.elector.attempts if t > last_renewed)
    after_detection = failover.new_started - detected
    assert after_detection <= config.lease_duration + jittered_max(config) + SLACK
    print(
        f"\n{failover.fault}: step-down {step_down:.2f}s after last renewal "
        f"(bound {step_down_bound(config):.2f}); successor {failover.since_last_renewal:.2f}s "
        f"after last renewal (bound {failover_bound(config):.2f}, "
        f"LD + 1.2 RP = {config.lease_duration + 1.2 * config.retry_period:.2f}), "
        f"detection {detected - last_renewed:.2f}s + {after_detection:.2f}s "
        f"(LD + (1 + J) RP = {config.lease_duration + jittered_max(config):.2f}); "
        f"{failover.since_fault:.2f}s after the fault"
    )
    return failover


def check_no_overlap_and_bounded_failovers(
    report: SafetyReport, config: LeaderElectionConfig
) -> None:
    """For every leadership that ended, the next one began within the bound."""
    assert report.overlaps == (), f"two leaders at once: {report.overlaps}"
    ordered = sorted(report.intervals, key=lambda i: i.start)
    for ended, successor in itertools.pairwise(ordered):
        assert ended.end is not None and ended.last_renewed is not None
        assert ended.end - ended.last_renewed <= step_down_bound(config)
        assert successor.start - ended.last_renewed <= failover_bound(config)


async def test_kill_the_leaders_member(cluster: LocalCluster) -> None:
    config = scaled_config("kill")
    async with contest(cluster, config, time_scale=TIME_SCALE, connect=pinned) as run:
        old = await settled_leader(run)
        run.checker.mark_fault("kill")
        cluster.kill(old.member)
        report = await await_failover(run, old)
    check_failover(report, run, old)


async def test_pause_the_leaders_member(cluster: LocalCluster) -> None:
    config = scaled_config("pause")
    async with contest(cluster, config, time_scale=TIME_SCALE, connect=pinned) as run:
        old = await settled_leader(run)
        run.checker.mark_fault("pause")
        cluster.pause(old.member)
        try:
            report = await await_failover(run, old)
        finally:
            cluster.resume(old.member)
    check_failover(report, run, old)


async def test_blackhole_only_the_leaders_connection(cluster: LocalCluster) -> None:
    config = scaled_config("blackhole")
    async with contest(cluster, config, time_scale=TIME_SCALE, connect=proxied) as run:
        old = await settled_leader(run)
        assert old.connection.link is not None
        stale_fence = old.elector.fence()
        run.checker.mark_fault("blackhole")
        await run.faults.add(old.identity, Blackhole(name="cut"))
        await await_failover(run, old)
        new = run.leader()
        assert new is not None
        target = f"/fenced/{config.name}".encode()
        # Back on the network, the deposed leader acts on its old belief: refused.
        await run.faults.remove(old.identity, "cut")
        old_writer = FencedWriter(old.connection.client, checker=run.checker, timeout=5)
        assert not await old_writer.put(stale_fence, target, b"stale")
        # The new leader's fence also lapses at its own next renewal: retry afresh.
        new_writer = FencedWriter(new.connection.client, checker=run.checker, timeout=5)
        for _ in range(3):
            if await new_writer.put(new.elector.fence(), target, b"current"):
                break
        else:
            raise AssertionError("the leader's fenced write was refused three times")
        report = run.checker.report()
    check_failover(report, run, old)
    assert (report.stale_writes_attempted, report.stale_writes_blocked) == (1, 1)
    assert report.stale_writes_accepted == 0


def move_raft_leader(cluster: LocalCluster, to: int) -> None:
    """Make member ``to`` lead raft (etcd's MoveLeader, sent to the current leader)."""
    current = cluster.wait_leader()
    if current != to:
        target = cluster.members[to].member_id
        with grpc.insecure_channel(cluster.endpoints[current]) as channel:
            rpc_pb2_grpc.MaintenanceStub(channel).MoveLeader(
                rpc_pb2.MoveLeaderRequest(targetID=target), timeout=10
            )
    wait_until(lambda: cluster.leader() == to, 10, f"member {to} to lead raft")


@pytest.mark.parametrize("raft_role", ["follower", "leader"])
async def test_kill_with_clients_that_fail_over(cluster: LocalCluster, raft_role: str) -> None:
    """With the apiserver-like client (all members, sticky, rotating on failure).

    If the killed member is a raft follower the client's next member answers at
    once and the leader keeps its lease. If it led raft, the retried renewal sits
    on a proposal lost in the raft election until its deadline, and the leader may
    step down. Either way there is never a second leader.
    """
    config = scaled_config(f"kill-rotating-{raft_role}")
    async with contest(cluster, config, time_scale=TIME_SCALE, connect=rotating) as run:
        old = await settled_leader(run)
        others = [m for m in range(len(cluster.members)) if m != old.member]
        await asyncio.to_thread(
            move_raft_leader, cluster, old.member if raft_role == "leader" else others[0]
        )
        old = await settled_leader(run)  # moving raft leadership may cost a renewal
        fault_at = run.checker.mark_fault(f"kill raft {raft_role}")
        cluster.kill(old.member)

        def settled() -> bool:
            renewed_elsewhere = (old.elector.last_renewed or 0) > fault_at
            return renewed_elsewhere or run.leader() not in (None, old)

        await eventually(settled, failover_bound(config) + 1, "a renewal or a new leader")
        report = run.checker.report()
        renewed_after_fault = (old.elector.last_renewed or 0) > fault_at
        kept = old.elector.leading
    check_no_overlap_and_bounded_failovers(report, config)
    if raft_role == "follower":
        assert kept and renewed_after_fault and report.transitions == 0
    print(
        f"\nkill raft {raft_role} under the leader, failover clients: leader "
        f"{'kept' if kept else 'lost'} leadership ({report.transitions} transitions)"
    )


async def test_thirty_percent_loss_on_the_leaders_member(cluster: LocalCluster) -> None:
    """The analysis's scenario: every client connection to one member loses 30% of its
    packets (TCP-faithful: retransmitted after a scaled RTO)."""
    config = scaled_config("loss")
    async with contest(cluster, config, time_scale=TIME_SCALE, connect=proxied) as run:
        old = await settled_leader(run)
        run.checker.mark_fault("loss 30%")
        lossy = [c for c in run.candidates if c.member == old.member]
        await run.faults.apply((candidate.identity, Loss(probability=0.3)) for candidate in lossy)
        # An observation window, not a wait for a condition.
        await asyncio.sleep(4 * config.lease_duration)
        report = run.checker.report()
        # The loss acted: the renewals crossing it lost segments (and waited for them).
        lost = segments_lost(c.connection.link for c in lossy)
    assert lost > 0, "no segment was lost: the fault did nothing"
    check_no_overlap_and_bounded_failovers(report, config)
    print(
        f"\n30% loss on the leader's member for {4 * config.lease_duration:.1f}s: "
        f"{report.transitions} transitions, {report.leaderless_seconds:.2f}s without leader, "
        f"{lost} segments lost"
    )


async def test_jitter_spreads_acquire_attempts(cluster: LocalCluster) -> None:
    config = scaled_config("jitter")
    async with contest(cluster, config, time_scale=TIME_SCALE) as run:
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


@pytest.mark.slow
async def test_kill_the_leaders_member_at_real_timings() -> None:
    """The analysis's numbers unscaled (15/10/2 s, real etcd and client timings): one
    failover, about half a minute."""
    config = LeaderElectionConfig(identity="-", name=f"real-{uuid.uuid4().hex[:8]}")
    async with (
        LocalCluster(3) as cluster,
        contest(cluster, config, time_scale=1.0, connect=pinned) as run,
    ):
        old = await settled_leader(run)
        run.checker.mark_fault("kill (real timings)")
        cluster.kill(old.member)
        report = await await_failover(run, old)
    check_failover(report, run, old)
