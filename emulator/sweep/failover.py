"""A dead member's cost: how long leadership takes to move when the leader's
etcd member dies.

In a stacked control plane (kubeadm's default) each apiserver talks to its own
node's etcd member only, so when that member dies the controller-manager
leading through that apiserver can no longer renew: it steps down after
RenewDeadline and a candidate on another node takes the lease once
LeaseDuration has passed since it last saw the record change. That is the
price of a long lease, and what this cell measures: three client-go electors
with the set's timings, candidate ``i`` pinned to member ``i``
(:func:`~etcdlab.scenario.candidates.pinned`), the leader's member killed once
they agree, then watched for the cell's duration. Its figures: the failover
(kill to the successor leading), the lease lost, the time without a leader;
the apiserver figures do not apply (None).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from etcdlab.cluster.local import LocalCluster, ServerFlags
from etcdlab.election.config import LeaderElectionConfig
from etcdlab.scenario.candidates import contest, pinned
from etcdlab.sweep.grid import Cell
from etcdlab.sweep.metrics import METRICS

CANDIDATES = 3  # one per member
LEASE = "etcdlab-sweep-failover"


async def measure(cell: Cell) -> dict[str, Any]:
    """The cell's figures (:data:`~etcdlab.sweep.metrics.METRICS`, unscaled) and
    ``successor``: whether a new leader took over within the window."""
    scale = cell.time_scale
    s = cell.settings
    config = LeaderElectionConfig(
        identity="-",
        name=LEASE,
        lease_duration=s.lease_duration,
        renew_deadline=s.renew_deadline,
        retry_period=s.retry_period,
    ).scaled(scale)
    async with (
        LocalCluster(CANDIDATES, flags=ServerFlags.scaled(scale)) as cluster,
        contest(
            cluster,
            config,
            time_scale=scale,
            connect=pinned,
            candidates=CANDIDATES,
            seed=cell.seed,
        ) as electors,
    ):
        leader = await electors.agreed_leader(timeout=3 * config.lease_duration + 10)
        electors.checker.mark_fault("kill")
        cluster.kill(leader.member)
        await asyncio.sleep(cell.duration * scale)
        report = electors.checker.report()
    (failover,) = report.failovers
    hours = cell.duration / 3600
    figures: dict[str, float | None] = {m.name: None for m in METRICS}
    since = failover.since_fault
    figures["failover_seconds"] = None if since is None else since / scale
    figures["lease_losses_per_hour"] = (failover.old_stepped_down is not None) / hours
    figures["leaderless_seconds_per_hour"] = report.leaderless_seconds / scale / hours
    figures["overlapping_leaders"] = float(len(report.overlaps))
    return {
        "metrics": figures,
        "successor": since is not None,
        "failover": dataclasses.asdict(failover),
    }
