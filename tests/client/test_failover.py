"""The client on a real cluster whose members are killed, paused or blackholed.

Client timings run at TIME_SCALE (keepalive 3 s + 1 s, connect timeout 2 s,
reconnect backoff from 0.1 s); the cluster fixture's etcd accepts pings that
frequent. Every upper bound on elapsed time is a configured (scaled) timeout
the behaviour must beat, plus SLACK for a loaded 2-core machine; a bound that
could only be a speed measurement is not asserted here (benchmarks measure).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time

import grpc
import pytest

from etcdlab.client.config import ClientConfig
from etcdlab.client.connection import ConnectivityState
from etcdlab.client.errors import ClusterUnavailableError, ContextError
from etcdlab.client.etcd import EtcdClient
from etcdlab.client.health import LIVEZ, EtcdCheck
from etcdlab.cluster.local import LocalCluster
from etcdlab.testing.fault_proxy import FaultProxy, Faults
from tests.waiting import eventually

TIME_SCALE = 0.1
CONFIG = ClientConfig().scaled(TIME_SCALE)
# Scheduling noise and an election on a shared machine.
SLACK = 2.0
KEEPALIVE_DETECTION = CONFIG.keepalive_time + CONFIG.keepalive_timeout
# A read held by a silent member waits for keepalive to close its connection;
# one that takes less than this went elsewhere.
QUICK = CONFIG.keepalive_timeout
READY = ConnectivityState.READY


class Transitions:
    """A ClientListener keeping what it hears, with the time it heard it."""

    def __init__(self) -> None:
        self.states: list[tuple[float, str, ConnectivityState]] = []
        self.keepalive: list[tuple[float, str]] = []

    def connection_state(
        self, client: str, endpoint: str, state: ConnectivityState, error: str | None
    ) -> None:
        self.states.append((time.monotonic(), endpoint, state))

    def keepalive_closed(self, client: str, endpoint: str) -> None:
        self.keepalive.append((time.monotonic(), endpoint))

    def left_ready(self, endpoint: str) -> list[float]:
        return [t for t, e, s in self.states if e == endpoint and s is ConnectivityState.IDLE]


async def test_calls_spread_round_robin_over_the_members(shared_cluster: LocalCluster) -> None:
    async with EtcdClient(shared_cluster.endpoints, CONFIG) as client:
        await client.connect()
        await eventually(
            lambda: all(c.state is READY for c in client.connections), 5, "every connection"
        )
        for _ in range(300):
            await client.get(b"/failover/spread")
        assert set(client.stats.served) == set(shared_cluster.endpoints)
        assert all(95 <= n <= 105 for n in client.stats.served.values()), client.stats.served


async def test_idle_connections_are_not_pinged_into_a_goaway(shared_cluster: LocalCluster) -> None:
    # etcd (its enforcement policy permits no pings without streams) answers an
    # idle connection's third ping within two hours with GOAWAY too_many_pings; a
    # client pinging idle connections every keepalive_time (grpcio with
    # keepalive_permit_without_calls) lost them after 4 periods. Go clients,
    # the apiserver's included, do not ping without calls, and neither does this.
    heard = Transitions()
    # A shorter period than CONFIG's, so that five of them pass sooner.
    config = dataclasses.replace(CONFIG, keepalive_time=1.0)
    async with EtcdClient(shared_cluster.endpoints, config, listener=heard) as client:
        await client.connect()
        await eventually(
            lambda: all(c.state is READY for c in client.connections), 5, "every connection"
        )
        # An observation window of five keepalive periods, not a wait for a condition.
        await asyncio.sleep(5 * config.keepalive_time)
        assert all(c.state is READY and c.connected == 1 for c in client.connections)
        assert not any(heard.left_ready(e) for e in shared_cluster.endpoints)


async def test_blackholed_member_is_closed_by_keepalive_while_calls_go_on_elsewhere(
    shared_cluster: LocalCluster,
) -> None:
    heard = Transitions()
    async with (
        FaultProxy(shared_cluster.endpoints, seed=3) as proxy,
        EtcdClient(proxy.addresses, CONFIG, listener=heard) as client,
    ):
        dead = proxy.addresses[0]
        await client.connect()
        await eventually(
            lambda: all(c.state is READY for c in client.connections), 5, "every connection"
        )
        answered: list[tuple[float, float]] = []

        async def read() -> None:
            started = time.monotonic()
            await client.get(b"/failover/blackhole")
            answered.append((started, time.monotonic()))

        with Faults(proxy).blackhole(0):
            holed = time.monotonic()
            # Open-loop arrivals: a third of them meet the blackholed member.
            async with asyncio.TaskGroup() as calls:
                while time.monotonic() - holed < KEEPALIVE_DETECTION + SLACK:
                    calls.create_task(read())
                    await asyncio.sleep(0.02)
            closed = heard.left_ready(dead)
            # Calls kept the connection busy, so keepalive pinged it and closed it
            # a keepalive time plus timeout after its last read.
            assert closed and CONFIG.keepalive_timeout <= closed[0] - holed
            assert closed[0] - holed <= KEEPALIVE_DETECTION + SLACK
            assert [e for _, e in heard.keepalive] == [dead]
            # Meanwhile the other members answered at once; every stuck read was
            # retried on them after the close.
            quick = [end for start, end in answered if end - start < QUICK and end < closed[0]]
            assert len(quick) > 20
            assert all(end >= closed[0] - 0.1 for start, end in answered if end - start >= QUICK)
            # Reconnecting through the blackhole times out: no call goes there.
            served = client.stats.served[dead]
            for _ in range(30):
                await client.get(b"/failover/blackhole")
            assert client.stats.served[dead] == served
            assert client.connections[0].state is not READY


async def test_a_write_is_not_retried_after_unavailable_but_a_read_is(
    cluster: LocalCluster,
) -> None:
    follower = (cluster.wait_leader() + 1) % 3
    paused = cluster.endpoints[follower]
    async with EtcdClient(cluster.endpoints, CONFIG) as client:
        await client.connect()
        await eventually(
            lambda: all(c.state is READY for c in client.connections), 5, "every connection"
        )
        cluster.pause(follower)
        failures: list[ClusterUnavailableError] = []
        for index in range(3):
            # Round-robin: one of three consecutive puts meets the paused member.
            try:
                await client.put(b"/failover/write", b"%d" % index)
            except ClusterUnavailableError as failure:
                failures.append(failure)
        (unavailable,) = failures
        assert unavailable.endpoint == paused and unavailable.attempts == 1
        assert "may have been applied" in str(unavailable)
        assert client.connections[follower].keepalive_failures == 1
        assert not client.stats.retries
        cluster.resume(follower)


async def test_attempt_timeout_retries_safe_calls_and_not_unsafe_writes(
    cluster: LocalCluster,
) -> None:
    follower = (cluster.wait_leader() + 1) % 3
    paused = cluster.endpoints[follower]
    config = dataclasses.replace(CONFIG, attempt_timeout=0.3)
    methods: list[str] = []
    async with EtcdClient(cluster.endpoints, config, on_attempt=methods.append) as client:
        await client.connect()
        await eventually(
            lambda: all(c.state is READY for c in client.connections), 5, "every connection"
        )
        cluster.pause(follower)
        cut: list[float] = []
        stored = b""  # the last put that was not cut: the value reads must see
        for index in range(3):
            # Round-robin: one of three consecutive puts meets the paused member,
            # where the attempt's deadline, long before the call's, cuts it. It
            # is not retried: it may have been applied.
            started = time.monotonic()
            try:
                await client.put(b"/failover/per-try", b"%d" % index, timeout=30.0)
                stored = b"%d" % index
            except ContextError as error:
                assert error.endpoint == paused
                cut.append(time.monotonic() - started)
        assert len(cut) == 1 and cut[0] < 0.3 + SLACK
        assert methods == ["put"] * 3 and not client.stats.retries
        # A read is safe to repeat: each attempt that meets the paused member is
        # retried on the next after its attempt deadline.
        for _ in range(3):
            got = await client.get(b"/failover/per-try", timeout=30.0)
            assert got.kvs[0].value == stored
        assert set(client.stats.retries) == {"attempt_timeout"}
        assert methods.count("range") == 3 + client.stats.retries["attempt_timeout"]
        cluster.resume(follower)


async def test_reads_pass_a_killed_member_by(cluster: LocalCluster) -> None:
    follower = (cluster.wait_leader() + 1) % 3
    async with EtcdClient(cluster.endpoints, CONFIG) as client:
        await client.connect()
        await eventually(
            lambda: all(c.state is READY for c in client.connections), 5, "every connection"
        )
        cluster.kill(follower)
        for _ in range(30):
            started = time.monotonic()
            await client.get(b"/failover/kill")
            # Refused at once and retried elsewhere: no read waits out a
            # (re)connect attempt to the dead member.
            assert time.monotonic() - started < CONFIG.min_connect_timeout
        killed = client.connections[follower]
        assert killed.state is not READY and killed.last_error
        # At most the calls sent before the client saw the connection close.
        assert client.stats.retries["unavailable"] <= 2


async def test_a_read_is_retried_after_keepalive_closes_its_connection(
    cluster: LocalCluster,
) -> None:
    follower = (cluster.wait_leader() + 1) % 3
    async with EtcdClient([cluster.endpoints[follower]], CONFIG) as only:
        await only.get(b"/failover/pause")
        cluster.pause(follower)
        started = time.monotonic()
        with pytest.raises(ContextError):
            # Its one connection is closed by keepalive, then cannot reconnect:
            # the read waits for a ready connection until its deadline.
            await only.get(b"/failover/pause", timeout=KEEPALIVE_DETECTION + 1.0)
        assert time.monotonic() - started >= KEEPALIVE_DETECTION + 1.0
        assert only.connections[0].keepalive_failures == 1
        assert only.stats.retries["keepalive"] == 1
        cluster.resume(follower)
        await only.get(b"/failover/pause", timeout=CONFIG.reconnect_backoff_cap + SLACK)


async def test_deadline_and_cancellation_on_paused_member(cluster: LocalCluster) -> None:
    async with EtcdClient([cluster.endpoints[0]], CONFIG) as client:
        await client.put(b"/failover/deadline", b"1")
        cluster.pause(0)
        attempts = client.stats.attempts
        call = asyncio.create_task(client.get(b"/failover/deadline"))
        await eventually(lambda: client.stats.attempts > attempts, 5, "the attempt to start")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(call, 1.0)
        deadline = CONFIG.keepalive_time / 4
        started = time.monotonic()
        with pytest.raises(ContextError) as error:
            await client.get(b"/failover/deadline", timeout=deadline)
        assert error.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert deadline <= time.monotonic() - started < deadline + SLACK
        cluster.resume(0)


async def test_with_every_member_down_calls_wait_for_a_connection_until_their_deadline(
    cluster: LocalCluster,
) -> None:
    async with EtcdClient(cluster.endpoints, CONFIG) as client:

        async def answered_by_every_member() -> bool:
            await client.get(b"/failover/all")
            return set(client.stats.served) == set(cluster.endpoints)

        # From connections the members have answered on: one whose first handshake
        # was still in flight when its member was killed stayed CONNECTING until
        # its connect timeout (2 s) in 1 run of 10 under load, so it had not
        # retried by the calls' 1 s deadline; an answered one leaves READY within
        # milliseconds of the kill and is refused at once.
        await eventually(answered_by_every_member, 5, "an answer from every member")
        for index in range(3):
            cluster.kill(index)
        await eventually(
            lambda: not any(c.state is READY for c in client.connections), 5, "no connection"
        )
        attempts = client.stats.attempts
        started = time.monotonic()
        results = await asyncio.gather(
            *(client.get(b"/failover/all", timeout=1.0) for _ in range(20)),
            return_exceptions=True,
        )
        assert all(isinstance(r, ContextError) for r in results), results
        assert 1.0 <= time.monotonic() - started < 1.0 + SLACK
        # Waiting for a ready connection sends nothing.
        assert client.stats.attempts == attempts
        assert all(c.retries >= 1 for c in client.connections)
        await asyncio.gather(cluster.arestart(1), cluster.arestart(2))
        got = await client.get(b"/failover/all", timeout=CONFIG.reconnect_backoff_cap + SLACK)
        assert got.header.revision > 0


async def test_hedged_reads_answer_while_a_member_hangs(cluster: LocalCluster) -> None:
    # Pause a follower: a paused leader would stall every read for an election.
    follower = (cluster.wait_leader() + 1) % 3
    async with EtcdClient(cluster.endpoints, CONFIG) as client:
        await client.put(b"/failover/hedge", b"1")
        # Round-robin picks only ready connections: one to the follower still
        # connecting when it is paused is never picked, and no read hangs on it
        # to be hedged (no hedge in 6 reads: once in five full CI runs).
        await eventually(
            lambda: all(c.state is READY for c in client.connections), 5, "every connection"
        )
        cluster.pause(follower)
        for _ in range(6):
            got = await client.get(b"/failover/hedge", hedge_after=0.05)
            assert got.kvs[0].value == b"1"
        # The hedges answered: keepalive never closed the paused member's
        # connection, which would have sent the stuck reads elsewhere.
        assert client.connections[follower].keepalive_failures == 0
        assert client.stats.hedges >= 2
        cluster.resume(follower)


async def test_sticky_balancer_keeps_one_member_until_its_connection_is_lost(
    cluster: LocalCluster,
) -> None:
    sticky = dataclasses.replace(CONFIG, balancer="sticky")
    async with EtcdClient(cluster.endpoints, sticky) as client:
        await client.connect()
        await eventually(
            lambda: all(c.state is READY for c in client.connections), 5, "every connection"
        )
        for _ in range(20):
            await client.get(b"/failover/sticky")
        ((pinned, count),) = client.stats.served.items()
        assert count == 20
        cluster.kill(cluster.endpoints.index(pinned))
        for _ in range(20):
            await client.get(b"/failover/sticky")
        (moved,) = set(client.stats.served) - {pinned}
        assert client.stats.served[moved] == 20


async def test_lease_lost_while_member_paused(cluster: LocalCluster) -> None:
    # Keepalive far slower than the TTL: the network reports nothing in time, so
    # only the lease's local deadline can notice.
    quiet = dataclasses.replace(CONFIG, keepalive_time=30.0, keepalive_timeout=10.0)
    async with EtcdClient([cluster.endpoints[0]], quiet) as client:
        lost_at: list[float] = []
        lease = await client.grant_lease(2, on_lost=lambda _: lost_at.append(time.monotonic()))
        await eventually(lambda: lease.keepalives_answered > 0, 5, "a keep-alive answer")
        cluster.pause(0)
        paused_at = time.monotonic()
        await asyncio.wait_for(lease.lost.wait(), lease.ttl + SLACK)
        # The local deadline, not keepalive (30 s + 10 s here), noticed.
        assert lost_at and lost_at[0] - paused_at <= lease.ttl + SLACK
        assert "deadline" in (lease.lost_reason or "")
        cluster.resume(0)


async def test_livez_fails_on_probes_that_meet_a_paused_member_until_keepalive(
    cluster: LocalCluster,
) -> None:
    follower = (cluster.wait_leader() + 1) % 3
    paused_endpoint = cluster.endpoints[follower]
    heard = Transitions()
    async with EtcdClient(cluster.endpoints, CONFIG, name="livez", listener=heard) as client:
        check = EtcdCheck(LIVEZ, client, CONFIG.health_check_timeout, CONFIG.health_key)
        await client.connect()
        await eventually(
            lambda: all(c.state is READY for c in client.connections), 5, "every connection"
        )
        assert await check.check() is None
        cluster.pause(follower)
        paused = time.monotonic()
        answers: list[tuple[float, str | None]] = []
        # Probes are short calls, so the paused member's connection is idle part
        # of the time, and grpcio's keepalive (unlike Go's, which pings as soon as
        # a call wakes it) may take a few keepalive periods to catch it idle-free.
        limit = 4 * KEEPALIVE_DETECTION + SLACK
        while time.monotonic() - paused < limit:
            answers.append((time.monotonic(), await check.check()))
            lost = heard.left_ready(paused_endpoint)
            if lost and sum(t > lost[0] for t, _ in answers) >= 10:
                break
            await asyncio.sleep(CONFIG.health_check_interval)
        failed = [t for t, error in answers if error is not None]
        # A probe the balancer sent to the paused member timed out, while the
        # others passed...
        assert failed and failed[0] - paused <= 3 * (
            CONFIG.health_check_interval + CONFIG.health_check_timeout
        )
        assert all("deadline" in (error or "deadline").lower() for _, error in answers)
        assert len(failed) < len(answers)
        # ...until keepalive closed that connection; then every probe passed.
        (closed, *_) = heard.left_ready(paused_endpoint)
        assert all(error is None for t, error in answers if t > closed)
        cluster.resume(follower)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ETCDLAB_SLOW"), reason="set ETCDLAB_SLOW=1 (real timings)")
async def test_keepalive_closes_a_paused_member_at_the_seeds_real_timings() -> None:
    real = ClientConfig()
    async with (
        LocalCluster(3) as local,
        EtcdClient([local.endpoints[0]], real) as client,
    ):
        await client.put(b"/failover/real", b"1")
        local.pause(0)
        started = time.monotonic()
        with pytest.raises(ContextError):
            await client.get(b"/failover/real", timeout=60)
        # The seed's keepalive 30 s + 10 s bounds detection of a silent member.
        assert client.connections[0].keepalive_failures == 1
        assert time.monotonic() - started >= 60
        local.resume(0)
