"""Failover of the client on a real cluster whose members are killed or paused.

Client timings run at TIME_SCALE (keepalive 3 s + 1 s, dial 2 s); the cluster
fixture's etcd accepts pings that frequent. Bounds are derived from the
configured timeouts plus an explicit allowance for a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time

import grpc
import pytest

from etcdlab.client.config import ClientConfig
from etcdlab.client.errors import ClusterUnavailableError, ContextError
from etcdlab.client.etcd import EtcdClient
from etcdlab.client.health import HealthChecker
from etcdlab.client.retry import FixedDelay, NoRetry, ThrottledRetry
from etcdlab.cluster.local import LocalCluster
from etcdlab.testing.fault_proxy import FaultProxy, Faults
from tests.waiting import eventually

TIME_SCALE = 0.1
CONFIG = ClientConfig().scaled(TIME_SCALE)
# Scheduling noise, an election and one retry backoff on a shared machine.
SLACK = 2.0 + CONFIG.retry_backoff_cap
KEEPALIVE_DETECTION = CONFIG.keepalive_time + CONFIG.keepalive_timeout


async def test_failover_when_member_in_use_is_killed(cluster: LocalCluster) -> None:
    async with EtcdClient(cluster.endpoints, CONFIG) as client:
        # Idempotent: etcd answers "request timed out" (UNAVAILABLE, maybe
        # applied) when a leader change drops the proposal, and only a write
        # that says it may be repeated is retried after that.
        await client.put(b"/failover/kill", b"1", idempotent=True)
        in_use = cluster.endpoints.index(client.current_endpoint)
        cluster.kill(in_use)
        started = time.monotonic()
        got = await client.get(b"/failover/kill")
        assert got.kvs[0].value == b"1"
        assert time.monotonic() - started < CONFIG.dial_timeout + SLACK
        state = client.endpoints_state
        assert state.current != cluster.endpoints[in_use]
        # More than one switch when the killed member led and a peer answered
        # "no leader" during the election.
        assert state.switches >= 1 and state.last_switch is not None
        dead = state.endpoints[in_use]
        assert dead.failing and dead.failures >= 1 and dead.last_error
        assert sum(client.stats.retries.values()) >= 1


async def test_failover_when_member_in_use_is_paused(cluster: LocalCluster) -> None:
    async with EtcdClient(cluster.endpoints, CONFIG) as client:
        await client.put(b"/failover/pause", b"1", idempotent=True)
        in_use = cluster.endpoints.index(client.current_endpoint)
        cluster.pause(in_use)
        started = time.monotonic()
        # No deadline: only keepalive can end the attempt on the paused member.
        got = await client.get(b"/failover/pause")
        elapsed = time.monotonic() - started
        assert got.kvs[0].value == b"1"
        assert elapsed < KEEPALIVE_DETECTION + SLACK
        assert client.current_endpoint != cluster.endpoints[in_use]
        assert client.stats.retries["keepalive"] == 1
        cluster.resume(in_use)


async def test_idle_connection_to_paused_member_is_dropped_by_keepalive(
    cluster: LocalCluster,
) -> None:
    async with EtcdClient(cluster.endpoints, CONFIG) as client:
        await client.put(b"/failover/idle", b"1", idempotent=True)
        in_use = cluster.endpoints.index(client.current_endpoint)
        assert client.endpoints_state.endpoints[in_use].connectivity == "READY"
        cluster.pause(in_use)
        # No call in flight: only pings without calls can notice.
        await eventually(
            lambda: client.endpoints_state.endpoints[in_use].connectivity != "READY",
            KEEPALIVE_DETECTION + SLACK,
            "keepalive to close the idle connection",
        )
        cluster.resume(in_use)


async def test_hedged_read_answers_while_member_in_use_hangs(cluster: LocalCluster) -> None:
    # Pause a follower: a paused leader would stall every read for an election.
    follower = (cluster.wait_leader() + 1) % 3
    endpoints = cluster.endpoints[follower:] + cluster.endpoints[:follower]
    async with EtcdClient(endpoints, CONFIG) as client:
        await client.put(b"/failover/hedge", b"1", idempotent=True)
        got = await client.get(b"/failover/hedge", hedge_after=1.0)
        assert got.kvs[0].value == b"1" and client.stats.hedges == 0
        cluster.pause(follower)
        started = time.monotonic()
        got = await client.get(b"/failover/hedge", hedge_after=0.05)
        # Keepalive cannot end the stuck attempt sooner than keepalive_timeout.
        assert time.monotonic() - started < CONFIG.keepalive_timeout
        assert got.kvs[0].value == b"1" and client.stats.hedges == 1
        # The hedge does not move the sticky client: only failures do.
        assert client.current_endpoint == endpoints[0]
        cluster.resume(follower)


async def test_attempt_timeout_retries_safe_calls_and_not_unsafe_writes(
    cluster: LocalCluster,
) -> None:
    follower = (cluster.wait_leader() + 1) % 3
    endpoints = cluster.endpoints[follower:] + cluster.endpoints[:follower]
    config = dataclasses.replace(CONFIG, attempt_timeout=0.3)
    methods: list[str] = []
    async with EtcdClient(endpoints, config, on_attempt=methods.append) as client:
        await client.put(b"/failover/per-try", b"1", idempotent=True)
        assert methods == ["put"]
        cluster.pause(follower)
        started = time.monotonic()
        with pytest.raises(ContextError):
            await client.put(b"/failover/per-try", b"2", timeout=30.0)
        # Cut at the attempt's deadline, long before the call's: not retried, it
        # may have been applied.
        assert time.monotonic() - started < 0.3 + SLACK
        assert methods == ["put", "put"] and not client.stats.retries
        # A read is safe to repeat: retried after each attempt deadline until the
        # check that followed the first marks the paused member failed.
        got = await client.get(b"/failover/per-try", timeout=30.0)
        assert got.kvs[0].value == b"1"
        assert client.stats.retries["attempt_timeout"] >= 1
        assert methods.count("range") == 1 + sum(client.stats.retries.values())
        assert client.current_endpoint != endpoints[0]
        cluster.resume(follower)


async def test_hedged_read_is_sent_at_once_when_the_primary_fails(cluster: LocalCluster) -> None:
    follower = (cluster.wait_leader() + 1) % 3
    endpoints = cluster.endpoints[follower:] + cluster.endpoints[:follower]
    methods: list[str] = []
    async with EtcdClient(endpoints, CONFIG, retry=NoRetry(), on_attempt=methods.append) as client:
        await client.put(b"/failover/hedge-now", b"1", idempotent=True)
        cluster.kill(follower)
        started = time.monotonic()
        # Without retries the primary fails at once (connection refused); the
        # hedge does not wait out hedge_after.
        got = await client.get(b"/failover/hedge-now", hedge_after=30.0)
        assert time.monotonic() - started < SLACK
        assert got.kvs[0].value == b"1" and client.stats.hedges == 1
        assert methods == ["put", "range", "range"]


async def test_unsafe_write_is_not_retried_after_keepalive_failure(
    cluster: LocalCluster,
) -> None:
    async with EtcdClient(cluster.endpoints, CONFIG) as client:
        await client.put(b"/failover/write", b"1", idempotent=True)
        in_use = cluster.endpoints.index(client.current_endpoint)
        attempts, retries = client.stats.attempts, client.stats.retries.total()
        cluster.pause(in_use)
        with pytest.raises(ClusterUnavailableError) as error:
            await client.put(b"/failover/write", b"2")
        assert error.value.endpoint == cluster.endpoints[in_use] and error.value.attempts == 1
        assert "may have been applied" in str(error.value)
        assert client.stats.attempts == attempts + 1
        assert client.stats.retries.total() == retries
        cluster.resume(in_use)
        # The failure moved the client off the member: sticky on the new one.
        await client.put(b"/failover/write", b"3", idempotent=True)
        assert client.current_endpoint != cluster.endpoints[in_use]


async def test_deadline_and_cancellation_on_paused_member(cluster: LocalCluster) -> None:
    async with EtcdClient(cluster.endpoints, CONFIG) as client:
        await client.put(b"/failover/deadline", b"1", idempotent=True)
        cluster.pause(0)
        attempts = client.stats.attempts
        call = asyncio.create_task(client.get(b"/failover/deadline"))
        await eventually(lambda: client.stats.attempts > attempts, 5, "the attempt to start")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(call, 1.0)
        # Cancelling is the caller's choice: it casts no doubt on the member.
        assert not client.endpoints_state.endpoints[0].checking

        deadline = CONFIG.keepalive_time / 4
        started = time.monotonic()
        with pytest.raises(ContextError) as error:
            await client.get(b"/failover/deadline", timeout=deadline)
        assert error.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert deadline <= time.monotonic() - started < deadline + 1.0
        # A deadline is not the endpoint's failure by itself, but it is checked:
        # a paused member answers no Status call (dial, then keepalive_timeout).
        dead = client.endpoints_state.endpoints[0]
        assert not dead.failing and dead.checking
        await eventually(
            lambda: client.endpoints_state.endpoints[0].failing,
            CONFIG.dial_timeout + CONFIG.keepalive_timeout + SLACK,
            "the check to fail the paused member",
        )
        assert "no Status answer" in client.endpoints_state.endpoints[0].last_error
        got = await client.get(b"/failover/deadline", timeout=deadline + SLACK)
        assert got.kvs[0].value == b"1" and client.current_endpoint != cluster.endpoints[0]
        cluster.resume(0)


async def test_callers_with_deadlines_leave_a_blackholed_member(
    shared_cluster: LocalCluster,
) -> None:
    # Keepalive far slower than the deadlines (and than the shared cluster's
    # --grpc-keepalive-min-time): only the check after a timed-out attempt can
    # move the client off a connection that passes nothing.
    slow_keepalive = dataclasses.replace(CONFIG, keepalive_time=30.0)
    deadline = 0.2
    async with (
        FaultProxy(shared_cluster.endpoints, seed=3) as proxy,
        EtcdClient(proxy.addresses, slow_keepalive) as client,
    ):
        await client.get(b"/failover/blackhole")
        with Faults(proxy).blackhole(0):
            started = time.monotonic()
            timeouts = 0
            while True:
                try:
                    await client.get(b"/failover/blackhole", timeout=deadline)
                    break
                except ContextError:
                    timeouts += 1
            # Calls time out until the check (Status within keepalive_timeout) fails.
            assert time.monotonic() - started < deadline + slow_keepalive.keepalive_timeout + SLACK
            assert timeouts >= 1 and client.current_endpoint != proxy.addresses[0]
            assert client.endpoints_state.endpoints[0].failing


async def test_member_slower_than_the_deadline_stays_in_use(
    shared_cluster: LocalCluster,
) -> None:
    # The round trip (twice the one-way latency) exceeds the caller's deadline
    # but not keepalive_timeout, by 2.6 s to spare for a loaded machine.
    latency = 0.2
    patient = dataclasses.replace(CONFIG, keepalive_time=30.0, keepalive_timeout=3.0)
    async with (
        FaultProxy(shared_cluster.endpoints, seed=4) as proxy,
        EtcdClient(proxy.addresses, patient) as client,
    ):
        await client.get(b"/failover/slow")
        with Faults(proxy).latency(0, latency):
            with pytest.raises(ContextError):
                await client.get(b"/failover/slow", timeout=latency / 2)
            assert client.endpoints_state.endpoints[0].checking
            await eventually(
                lambda: not client.endpoints_state.endpoints[0].checking,
                patient.keepalive_timeout + SLACK,
                "the check to finish",
            )
        status = client.endpoints_state.endpoints[0]
        assert not status.failing and status.failures == 0
        assert client.current_endpoint == proxy.addresses[0]


async def test_all_members_down_raises_cluster_error_with_bounded_attempts(
    cluster: LocalCluster,
) -> None:
    async with EtcdClient(cluster.endpoints, CONFIG) as client:
        await client.put(b"/failover/all", b"1", idempotent=True)
        before = client.stats.attempts
        for index in range(3):
            cluster.kill(index)
        callers = 20
        started = time.monotonic()
        results = await asyncio.gather(
            *(client.get(b"/failover/all") for _ in range(callers)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
        assert all(isinstance(result, ClusterUnavailableError) for result in results), results
        attempts = [r.attempts for r in results if isinstance(r, ClusterUnavailableError)]
        assert attempts == [CONFIG.retry_max_attempts] * callers
        # Every attempt is followed by a backoff: the total attempt count is fixed
        # by the policy, not by how fast endpoints fail.
        assert client.stats.attempts == before + callers * CONFIG.retry_max_attempts
        max_backoff = CONFIG.retry_backoff_cap * (CONFIG.retry_max_attempts - 1)
        assert elapsed < max_backoff + SLACK
        assert client.stats.errors == {"ClusterUnavailableError": callers}

    # With gRFC A6 throttling, a client whose attempts keep failing stops retrying.
    throttle = ThrottledRetry(FixedDelay(0.01, max_attempts=5), max_tokens=10, token_ratio=0.1)
    async with EtcdClient(cluster.endpoints, CONFIG, retry=throttle) as throttled:
        for _ in range(10):
            with pytest.raises(ClusterUnavailableError):
                await throttled.get(b"/failover/all")
        # 5 failures drain the bucket to half: every later call makes 1 attempt.
        assert throttled.stats.attempts == 5 + 9
        assert throttle.throttled == 10 and throttle.tokens == 0


async def test_lease_lost_while_member_paused(cluster: LocalCluster) -> None:
    # Keepalive far slower than the TTL: the network reports nothing in time, so
    # only the lease's local deadline can notice. (grpcio applies the ping timeout
    # to its flow-control pings too, so that must be long as well.)
    quiet = dataclasses.replace(CONFIG, keepalive_time=30.0, keepalive_timeout=10.0)
    async with EtcdClient(cluster.endpoints, quiet) as client:
        lost_at: list[float] = []
        lease = await client.grant_lease(2, on_lost=lambda _: lost_at.append(time.monotonic()))
        await eventually(lambda: lease.keepalives_answered > 0, 5, "a keep-alive answer")
        cluster.pause(0)
        paused_at = time.monotonic()
        await asyncio.wait_for(lease.lost.wait(), lease.ttl + SLACK)
        assert lost_at and lost_at[0] - paused_at <= lease.ttl + 0.5
        assert client.endpoints_state.switches == 0
        assert "deadline" in (lease.lost_reason or "")
        cluster.resume(0)


async def test_health_checker_flips_within_its_timeout(cluster: LocalCluster) -> None:
    async with (
        EtcdClient(cluster.endpoints, CONFIG) as client,
        HealthChecker(client) as checker,
    ):
        checker_started = time.monotonic()
        await eventually(lambda: checker.healthy is True, 5, "the first probe")
        cluster.pause(0)
        paused_at = time.monotonic()
        flip_bound = CONFIG.health_check_interval + CONFIG.health_check_timeout
        await eventually(lambda: checker.healthy is False, flip_bound + SLACK, "unhealthy")
        assert checker.last_error and checker.last_change is not None
        # The probe in flight at the pause, or the next one (at most one interval
        # later), times out after health_check_timeout.
        assert checker.last_change - paused_at <= flip_bound + 1.0
        cluster.resume(0)
        await eventually(lambda: checker.healthy is True, KEEPALIVE_DETECTION + SLACK, "healthy")
        assert [t.healthy for t in checker.history] == [True, False, True]
        assert checker.history[1].at < checker.history[2].at
        # Rate limit: probes start at most once per interval.
        elapsed = time.monotonic() - checker_started
        assert checker.probes <= 2 + elapsed / CONFIG.health_check_interval


async def test_health_probe_never_delays_requests(cluster: LocalCluster) -> None:
    # A long probe deadline, so a request queued behind a probe would show.
    config = dataclasses.replace(CONFIG, health_check_timeout=2.0)
    async with (
        EtcdClient(cluster.endpoints, config) as client,
        HealthChecker(client) as checker,
    ):
        await eventually(lambda: checker.healthy is True, 5, "the first probe")
        cluster.pause(0)
        paused_at = time.monotonic()
        await eventually(
            lambda: checker.probing and (checker.last_probe or 0.0) > paused_at,
            2 * config.health_check_interval + SLACK,
            "a probe stuck on the paused member",
        )
        for _ in range(5):
            started = time.monotonic()
            await client.status(endpoint=cluster.endpoints[1], timeout=2)
            assert time.monotonic() - started < config.health_check_timeout / 4
        assert checker.probing
        cluster.resume(0)


async def test_failed_member_is_probed_in_background_and_readmitted(
    cluster: LocalCluster,
) -> None:
    async with EtcdClient(cluster.endpoints, CONFIG) as client:
        await client.put(b"/failover/probe", b"1", idempotent=True)
        in_use = cluster.endpoints.index(client.current_endpoint)
        cluster.pause(in_use)
        await client.get(b"/failover/probe")
        assert client.endpoints_state.endpoints[in_use].failing
        # Requests never wait on the paused member's dial timeout: probes do.
        for _ in range(10):
            started = time.monotonic()
            await client.get(b"/failover/probe")
            assert time.monotonic() - started < CONFIG.dial_timeout / 2
            await asyncio.sleep(CONFIG.endpoint_probe_interval)
        assert client.endpoints_state.endpoints[in_use].failing
        cluster.resume(in_use)
        await eventually(
            lambda: not client.endpoints_state.endpoints[in_use].failing,
            CONFIG.endpoint_probe_interval + CONFIG.dial_timeout + SLACK,
            "the resumed member to be readmitted",
        )
        # Sticky: readmission does not move the client back.
        assert client.current_endpoint != cluster.endpoints[in_use]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ETCDLAB_SLOW"), reason="set ETCDLAB_SLOW=1 (real timings)")
async def test_failover_on_pause_at_the_analysis_real_timings() -> None:
    real = ClientConfig()
    async with (
        LocalCluster(3) as local,
        EtcdClient(local.endpoints, real) as client,
    ):
        await client.put(b"/failover/real", b"1")
        local.pause(0)
        started = time.monotonic()
        await client.get(b"/failover/real")
        elapsed = time.monotonic() - started
        # The analysis's keepalive 30 s + 10 s bounds detection of a silent member.
        assert (
            real.keepalive_timeout - 0.5
            <= elapsed
            < real.keepalive_time + real.keepalive_timeout + 5
        )
        assert client.stats.retries["keepalive"] == 1
        local.resume(0)
