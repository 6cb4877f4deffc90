"""etcd-native Election under member faults: five candidates, each with its own
client over every member (round-robin, the apiserver-like client).

A leader's belief ends when its lease's local deadline passes without an answered
keep-alive; etcd deletes its key only when the server-side lease expires, which
is never earlier, so the successor's campaign (a watch on the predecessor's
key) can only finish after the old leader stopped believing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import grpc

from etcdlab.client.config import ClientConfig
from etcdlab.client.connection import ConnectivityState, Dialer, Transport, grpc_dialer
from etcdlab.client.etcd import EtcdClient
from etcdlab.cluster.local import LocalCluster
from etcdlab.election.safety import FencedWriter
from etcdlab.proxy.faults.blackhole import Blackhole
from etcdlab.proxy.faults.loss import Loss
from etcdlab.scenario.candidates import (
    Campaign,
    Connection,
    campaign,
    preferred_first,
    proxied,
    rotating,
)
from tests.conftest import segments_lost
from tests.waiting import eventually

TIME_SCALE = 0.2
# etcd leases are whole seconds; 2 s is the shortest that survives a loaded machine.
TTL = 2
SLACK = 1.0
CLIENT = ClientConfig().scaled(TIME_SCALE)
KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"


class StreamTap:
    """Dials as ``dial`` does, and notes in ``streams`` the address and method of
    every stream started over the connections it made."""

    def __init__(self, dial: Dialer) -> None:
        self._dial = dial
        self.streams: list[tuple[str, str]] = []

    def __call__(self, address: str, connect_timeout: float) -> Transport:
        return _TappedTransport(
            self._dial(address, connect_timeout),
            lambda method: self.streams.append((address, method)),
        )

    def last(self, method: str) -> str:
        """The address the latest ``method`` stream went to."""
        return [address for address, started in self.streams if started == method][-1]


class _TappedTransport:
    def __init__(self, inner: Transport, note: Callable[[str], None]) -> None:
        self._inner = inner
        self._channel = _TappedChannel(inner.channel, note)

    @property
    def channel(self) -> grpc.aio.Channel:
        return cast(grpc.aio.Channel, self._channel)

    async def connect(self) -> None:
        await self._inner.connect()

    async def lost(self) -> None:
        await self._inner.lost()

    async def close(self, grace: float | None) -> None:
        await self._inner.close(grace)


class _TappedChannel:
    def __init__(self, channel: grpc.aio.Channel, note: Callable[[str], None]) -> None:
        self._channel = channel
        self._note = note

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        start = self._channel.stream_stream(method, *args, **kwargs)

        def started(*call_args: Any, **call_kwargs: Any) -> Any:
            self._note(method)
            return start(*call_args, **call_kwargs)

        return started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)


TAPS: dict[EtcdClient, StreamTap] = {}


@contextlib.asynccontextmanager
async def tapped(
    cluster: LocalCluster, member: int, time_scale: float
) -> AsyncIterator[Connection]:
    """:func:`rotating`, its streams noted in ``TAPS``, once every member is
    connected: the balancer then spreads each client's calls and streams the
    same way every run, whichever connection happened to be ready first."""
    config = ClientConfig().scaled(time_scale)
    tap = StreamTap(grpc_dialer(config))
    endpoints = preferred_first(cluster, member)
    async with EtcdClient(endpoints, config, name=f"m{member}", dial=tap) as client:
        TAPS[client] = tap
        try:
            await eventually(
                lambda: all(c.state is ConnectivityState.READY for c in client.connections),
                10,
                "every connection",
            )
            yield Connection(client)
        finally:
            del TAPS[client]


async def queued(run: Campaign) -> None:
    """Wait until every candidate's key is in etcd: a fault before then would also
    fail the campaigns still putting theirs."""
    await eventually(lambda: all(c.election.rev for c in run.campaigners), 10, "every key")


async def run_fault(cluster: LocalCluster, fault: str) -> None:
    connect = {"blackhole": proxied, "pause": tapped}.get(fault, rotating)
    async with campaign(cluster, ttl=TTL, time_scale=TIME_SCALE, connect=connect) as run:
        checker = run.checker
        old = await run.agreed_leader(timeout=10)
        await queued(run)
        old_fence = old.election.fence()
        if fault == "pause":
            # The member the leader's keep-alives go to (not always its first
            # endpoint: calls go round-robin), so that its lease is lost; the
            # candidates whose keep-alives go elsewhere keep theirs.
            paused = cluster.endpoints.index(TAPS[old.connection.client].last(KEEPALIVE))
            others = [c for c in run.campaigners if c is not old]
            assert any(
                TAPS[c.connection.client].last(KEEPALIVE) != cluster.endpoints[paused]
                for c in others
            ), "every candidate's keep-alives go to one member"
        fault_at = checker.mark_fault(fault)
        if fault == "kill":
            cluster.kill(old.member)
        elif fault == "pause":
            cluster.pause(paused)
        else:
            await run.faults.add(old.identity, Blackhole(name="cut"))
        try:
            lease = old.election.lease

            def decided() -> bool:
                # Kept: a keep-alive sent after the fault was answered.
                return not old.election.leading or lease.deadline > fault_at + TTL

            await eventually(decided, 3 * TTL + 10, "the old leader to lose or keep its lease")
            kept = old.election.leading
            if not kept:
                await eventually(
                    lambda: run.leader() not in (None, old), 3 * TTL + 10, "a new leader"
                )
                new = run.leader()
                assert new is not None
                # The deposed leader's write arrives late: over its own connection
                # once the blackhole lifts, else relayed by a live member.
                writer_client = new.connection.client
                if fault == "blackhole":
                    await run.faults.remove(old.identity, "cut")
                    writer_client = old.connection.client
                writer = FencedWriter(writer_client, checker=checker, timeout=5)
                assert not await writer.put(old_fence, b"/fenced" + old_fence.key, b"stale")
        finally:
            if fault == "pause":
                cluster.resume(paused)
        report = checker.report()
    assert report.overlaps == (), f"two leaders at once: {report.overlaps}"
    (failover,) = report.failovers
    print(f"\nnative election, {fault}: old leader {'kept' if kept else 'lost'} its lease", end="")
    if not kept:
        assert failover.since_fault is not None
        # The server forgets the lease at most TTL after the last keep-alive it saw
        # (before the fault), plus a raft election if the member led raft. A
        # successor whose watch stream went to a paused member sees the delete
        # once keepalive has closed that connection and the watch resumed.
        expiry: float = TTL + 1
        if fault == "pause":
            expiry = max(expiry, CLIENT.keepalive_time + CLIENT.keepalive_timeout)
        assert failover.since_fault <= expiry + SLACK
        assert report.stale_writes_blocked == 1 and report.stale_writes_accepted == 0
        print(
            f"; stepped down {failover.step_down_after_fault:.2f}s and successor elected "
            f"{failover.since_fault:.2f}s after the fault (TTL {TTL}s)",
            end="",
        )


async def test_kill_the_leaders_member(cluster: LocalCluster) -> None:
    await run_fault(cluster, "kill")


async def test_pause_the_member_the_leaders_keep_alives_go_to(cluster: LocalCluster) -> None:
    await run_fault(cluster, "pause")


async def test_blackhole_only_the_leaders_connection(cluster: LocalCluster) -> None:
    await run_fault(cluster, "blackhole")


async def test_thirty_percent_loss_on_the_leaders_member(cluster: LocalCluster) -> None:
    async with campaign(cluster, ttl=TTL, time_scale=TIME_SCALE, connect=proxied) as run:
        made, checker = run.campaigners, run.checker
        old = await run.agreed_leader(timeout=10)
        checker.mark_fault("loss 30%")
        lossy = [c for c in made if c.member == old.member]
        await run.faults.apply((c.identity, Loss(probability=0.3)) for c in lossy)
        # An observation window, not a wait for a condition.
        await asyncio.sleep(4 * TTL)
        report = checker.report()
        # The loss acted: keep-alives and watches crossing it lost segments.
        lost = segments_lost(c.connection.link for c in lossy)
    assert lost > 0, "no segment was lost: the fault did nothing"
    assert report.overlaps == (), f"two leaders at once: {report.overlaps}"
    print(
        f"\nnative election, 30% loss on the leader's member for {4 * TTL}s: "
        f"{report.transitions} transitions, {report.leaderless_seconds:.2f}s without leader, "
        f"{lost} segments lost"
    )
