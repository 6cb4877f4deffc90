"""Raft's peer streams under loss through the proxy end as under the kernel's.

Real etcd, each member's peer port behind a proxy link and each member
advertising it, as the scenario engine sets it up. A stream's writer is the
server of the reader's GET, and etcd's peer listener bounds each of its writes;
under the kernel's loss the lossy socket's send buffer fills, the write times
out, etcd counts the peer inactive and the reader dials a new stream during
the fault (docs/BENCHMARKS.md, "Scenario fidelity"). Through the proxy the
loss model's send buffer blocks the writer (``Loss.send_buffer``) and the
link's ``write_deadline`` stands in for etcd's. Both are small here so that a
stall shows within seconds (at Linux's 69 KB a heartbeat stream takes about a
minute to fill it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from etcdlab.cluster.local import LocalCluster
from etcdlab.common.timescale import UNSCALED
from etcdlab.proxy.faults.loss import Loss
from etcdlab.proxy.faults.sndbuf import SKB_OVERHEAD
from etcdlab.proxy.link import ProxyLink
from etcdlab.proxy.server import ProxyServer
from etcdlab.scenario.engine import PEER_DISCONNECTS, placements_of, server_flags
from etcdlab.scenario.spec import FaultStep
from tests.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEADLINE = 1.0  # the links' stand-in for etcd's 5 s, to keep the test short
# Four heartbeats' skbs: the buffer fills at the first stall.
SEND_BUFFER = 4 * (70 + SKB_OVERHEAD)
# How soon after the heal every member must answer /health again: the stalls
# heal at their next send (a few retransmission timeouts) and a stream ended
# during the fault is dialled again within a second, as etcd's prober sees it.
RECOVERY = 5.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def peers() -> AsyncIterator[tuple[LocalCluster, dict[int, ProxyLink]]]:
    cluster = LocalCluster(3, flags=server_flags(UNSCALED))
    async with ProxyServer(seed=0) as proxies:
        links: dict[int, ProxyLink] = {}
        for member in cluster.members:
            link = await proxies.add_link(
                f"etcd-{member.index}-peer",
                (member.host, member.peer_port),
                http2=False,
                write_deadline=DEADLINE,
            )
            links[member.index] = link
            member.advertise_peer_url = f"http://{link.address[0]}:{link.address[1]}"
        try:
            await cluster.astart(timeout=60)
            yield cluster, links
        finally:
            cluster.close(graceful=False)


async def disconnects(cluster: LocalCluster) -> float:
    counts = [await asyncio.to_thread(cluster.counter, i, PEER_DISCONNECTS) for i in range(3)]
    return sum(count or 0.0 for count in counts)


async def test_a_stalled_peer_stream_is_dialled_again_during_the_loss(
    peers: tuple[LocalCluster, dict[int, ProxyLink]],
) -> None:
    cluster, links = peers
    await cluster.await_healthy(timeout=30)
    leader = await asyncio.to_thread(cluster.wait_leader, 10.0)
    follower = (leader + 1) % 3
    before = await disconnects(cluster)
    ids = [f"{m.member_id:x}" for m in cluster.members]
    # Every peer connection of the follower: its own link, and the streams it
    # dialled to the others.
    step = FaultStep(0, 60, "loss", str(follower), probability=0.3, links="peer")
    added = [
        (links[member], Loss(0.3, name=name, dialer=dialer, send_buffer=SEND_BUFFER))
        for member, _, name, dialer in placements_of(step, [follower], ids)
    ]
    for link, fault in added:
        link.add(fault)
    try:

        async def redialled() -> bool:
            return await disconnects(cluster) > before

        await eventually(redialled, 60, "etcd to count a peer inactive during the loss")
        timeouts = sum(
            count
            for link, _ in added
            for (_, what), count in link.counters.faults_applied.items()
            if what == "write_timeout"
        )
        assert timeouts >= 1, "a stream ended, but not on its write deadline"
    finally:
        for link, fault in added:
            link.remove(fault)

    async def all_healthy() -> bool:
        checks = [asyncio.to_thread(cluster.member_healthy, i, 0.5) for i in range(3)]
        return all(await asyncio.gather(*checks))

    await eventually(all_healthy, RECOVERY, "every member healthy after the heal")
