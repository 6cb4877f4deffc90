"""Peer links: raw TCP in front of an etcd member's peer port, dialers told apart."""

from __future__ import annotations

import re

import pytest

from etcdlab.cluster.local import LocalCluster, ServerFlags
from etcdlab.proxy.faults.blackhole import Blackhole
from etcdlab.proxy.faults.latency import Latency
from etcdlab.proxy.faults.registry import to_toxic
from etcdlab.proxy.link import ProxyLink
from tests.waiting import eventually


async def test_peer_connections_are_attributed_to_their_dialer() -> None:
    cluster = LocalCluster(3, flags=ServerFlags.scaled(0.2))
    target = cluster.members[0]
    async with ProxyLink("peer0", (target.host, target.peer_port), http2=False) as link:
        host, port = link.address
        target.advertise_peer_url = f"http://{host}:{port}"
        async with cluster:
            await cluster.await_healthy()
            others = {f"{m.member_id:x}" for m in cluster.members[1:]}
            await eventually(lambda: set(link.counters.dialers) == others, 30, "both dialers")
            slow_one, other = sorted(others)
            fault = link.add(Latency(0.001, dialer=slow_one))
            assert to_toxic(fault)["attributes"]["dialer"] == slow_one
            # rafthttp: the dialer's GET stream carries the target's messages
            # back to it, so that member's traffic to the dialer is downstream.
            hole = link.add(Blackhole(direction="downstream", dialer=other))
            held = ("blackhole_downstream", "held")
            await eventually(
                lambda: link.counters.faults_applied.get(held, 0) > 0, 30, "held bytes"
            )
            for conn in link._connections:
                plan = link.plans[conn.down.plan_key]
                assert (plan.blackhole is not None) == (conn.dialer == other)
                assert bool(plan.shapers) == (conn.dialer == slow_one)
            link.remove(hole)
            await cluster.await_healthy()
            cluster.close(graceful=False)


def test_dialer_filters_need_a_raw_link() -> None:
    link = ProxyLink("grpc", ("127.0.0.1", 1))
    with pytest.raises(
        ValueError,
        match=re.escape('dialer: a dialer filter needs raw TCP, and proxy "grpc" speaks HTTP/2'),
    ):
        link.add(Latency(0.1, dialer="8e9e05c52164694d"))
    with pytest.raises(ValueError, match="member ID"):
        Latency(0.1, dialer="not-hex")
