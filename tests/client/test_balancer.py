"""The connection state machine, the pickers and the call loop on a FakeClock,
over fake connections (tests/client/fake_network.py: no sockets, no etcd):
gRPC's subchannel states and backoff, round_robin's picks, wait-for-ready,
clientv3's retry rules. tests/client/test_failover.py holds them against real
members."""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
from collections.abc import AsyncIterator
from typing import cast

import grpc
import pytest

from etcdlab.client.balancer import Balancer, RoundRobin, Sticky
from etcdlab.client.calls import Caller, served_by
from etcdlab.client.config import ClientConfig
from etcdlab.client.connection import ConnectivityState
from etcdlab.client.errors import ClusterUnavailableError, ContextError
from etcdlab.client.retry import ClientV3Retry, NoRetry
from etcdlab.common.clock import FakeClock
from tests.client.fake_network import (
    HANG,
    REFUSE,
    FakeChannel,
    FakeNetwork,
    StateLog,
    make_balancer,
)

IDLE, CONNECTING, READY, TF = (
    ConnectivityState.IDLE,
    ConnectivityState.CONNECTING,
    ConnectivityState.READY,
    ConnectivityState.TRANSIENT_FAILURE,
)
ENDPOINTS = ["m0:2379", "m1:2379", "m2:2379"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def network(clock: FakeClock) -> FakeNetwork:
    return FakeNetwork(clock)


@pytest.fixture
async def round_robin(
    clock: FakeClock, network: FakeNetwork
) -> AsyncIterator[tuple[Balancer, StateLog]]:
    balancer, log = make_balancer(ENDPOINTS, RoundRobin(random.Random(1)), clock, network)
    balancer.start()
    await clock.advance(0)
    yield balancer, log
    await balancer.close()


def unavailable(details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details
    )


# -- one connection ---------------------------------------------------------------


async def test_refused_connection_backs_off_1s_then_1_6x_with_jitter(
    clock: FakeClock, network: FakeNetwork
) -> None:
    network.behaviour["m0:2379"] = REFUSE
    balancer, log = make_balancer(["m0:2379"], RoundRobin(random.Random(1)), clock, network)
    balancer.start()
    await clock.advance(300.0)
    times = network.dial_times("m0:2379")
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps[0] == 1.0
    for retries, gap in enumerate(gaps[1:8], start=1):
        assert 0.8 * 1.6**retries <= gap <= 1.2 * 1.6**retries
    assert all(timeout == 20.0 for _, _, timeout in network.dials[:6])
    # Every failed attempt: CONNECTING, TRANSIENT_FAILURE, then IDLE after the backoff.
    assert log.states("m0:2379")[:6] == [CONNECTING, TF, IDLE, CONNECTING, TF, IDLE]
    assert log.changes[1][3] == "connection refused"
    await balancer.close()
    assert balancer.connections[0].state is ConnectivityState.SHUTDOWN


async def test_an_attempt_that_hangs_is_given_20_s_or_the_longer_backoff(
    clock: FakeClock, network: FakeNetwork
) -> None:
    network.behaviour["m0:2379"] = HANG
    balancer, log = make_balancer(["m0:2379"], RoundRobin(random.Random(1)), clock, network)
    balancer.start()
    await clock.advance(1000.0)
    times = network.dial_times("m0:2379")
    # 20 s to connect, then the backoff (1 s, 1.6 s, ...) before the next attempt.
    assert times[:2] == [0.0, 21.0]
    timeouts = [timeout for _, _, timeout in network.dials]
    assert timeouts[:6] == [20.0] * 6
    # 1.6**7 ~ 26.8: once the backoff exceeds 20 s the attempt gets that long.
    assert all(timeout > 20.0 for timeout in timeouts[8:])
    assert "connect timeout (20s)" in (log.changes[1][3] or "")
    assert all(t.closed for t in network.transports["m0:2379"][:-1])
    await balancer.close()


async def test_lost_connection_reconnects_at_once_and_the_backoff_starts_over(
    clock: FakeClock, network: FakeNetwork, round_robin: tuple[Balancer, StateLog]
) -> None:
    balancer, log = round_robin
    network.behaviour["m0:2379"] = REFUSE
    network.drop("m0:2379")
    await clock.advance(5.0)
    # No backoff after losing a ready connection; the failures after it back off.
    assert network.dial_times("m0:2379")[:3] == [0.0, 0.0, 1.0]
    network.behaviour["m0:2379"] = "accept"
    await clock.advance(10.0)
    connection = balancer.connection("m0:2379")
    assert connection.state is READY and connection.retries == 0 and connection.connected == 2
    assert log.states("m0:2379")[:6] == [CONNECTING, READY, IDLE, CONNECTING, TF, IDLE]
    assert network.transports["m0:2379"][0].closed  # retired once lost


async def test_keepalive_close_is_counted_once_per_connection(
    clock: FakeClock, network: FakeNetwork, round_robin: tuple[Balancer, StateLog]
) -> None:
    balancer, log = round_robin
    route = await balancer.pick(None)
    error = ClusterUnavailableError("x", code=grpc.StatusCode.UNAVAILABLE, details="ping timeout")
    route.failed(error)
    route.failed(error)  # a second call on the same connection
    route.failed(ClusterUnavailableError("y", code=grpc.StatusCode.UNAVAILABLE, details="EOF"))
    assert log.keepalive == [route.address]
    assert route.connection.keepalive_failures == 1


# -- pickers ------------------------------------------------------------------------


async def test_round_robin_spreads_picks_evenly_over_ready_connections(
    clock: FakeClock, network: FakeNetwork, round_robin: tuple[Balancer, StateLog]
) -> None:
    balancer, _ = round_robin
    picks = [(await balancer.pick(None)).address for _ in range(300)]
    assert collections.Counter(picks) == {address: 100 for address in ENDPOINTS}
    # Strict rotation: every window of three picks holds every endpoint.
    assert all(len(set(picks[i : i + 3])) == 3 for i in range(len(picks) - 2))


async def test_round_robin_skips_connections_that_are_not_ready(
    clock: FakeClock, network: FakeNetwork, round_robin: tuple[Balancer, StateLog]
) -> None:
    balancer, _ = round_robin
    network.behaviour["m1:2379"] = HANG
    network.drop("m1:2379")
    await clock.advance(0)
    assert balancer.connection("m1:2379").state is CONNECTING
    picks = {(await balancer.pick(None)).address for _ in range(50)}
    assert picks == {"m0:2379", "m2:2379"}


async def test_round_robin_starts_at_a_seeded_random_connection(
    clock: FakeClock, network: FakeNetwork
) -> None:
    starts = set()
    for seed in range(12):
        balancer, _ = make_balancer(ENDPOINTS, RoundRobin(random.Random(seed)), clock, network)
        balancer.start()
        await clock.advance(0)
        starts.add((await balancer.pick(None)).address)
        await balancer.close()
    assert starts == set(ENDPOINTS)


async def test_sticky_keeps_one_connection_until_it_is_lost(
    clock: FakeClock, network: FakeNetwork
) -> None:
    balancer, _ = make_balancer(ENDPOINTS, Sticky(ENDPOINTS), clock, network)
    balancer.start()
    await clock.advance(0)
    first = {(await balancer.pick(None)).address for _ in range(20)}
    assert first == {"m0:2379"}
    network.behaviour["m0:2379"] = REFUSE
    network.drop("m0:2379")
    await clock.advance(0)
    moved = {(await balancer.pick(None)).address for _ in range(20)}
    assert moved == {"m1:2379"}
    # The old one coming back does not move it.
    network.behaviour["m0:2379"] = "accept"
    await clock.advance(5.0)
    assert balancer.connection("m0:2379").state is READY
    assert {(await balancer.pick(None)).address for _ in range(20)} == {"m1:2379"}
    await balancer.close()


async def test_a_pick_waits_for_a_ready_connection_up_to_its_deadline(
    clock: FakeClock, network: FakeNetwork
) -> None:
    for address in ENDPOINTS:
        network.behaviour[address] = REFUSE
    balancer, _ = make_balancer(ENDPOINTS, RoundRobin(random.Random(1)), clock, network)
    balancer.start()
    waiting = asyncio.create_task(balancer.pick(3.0))
    await clock.advance(3.0)
    with pytest.raises(TimeoutError):
        await waiting
    waiting = asyncio.create_task(balancer.pick(None))
    await clock.advance(10.0)
    assert not waiting.done()
    network.behaviour["m2:2379"] = "accept"
    await clock.advance(30.0)  # m2's next attempt, after its backoff
    assert (await waiting).address == "m2:2379"
    await balancer.close()


# -- calls ------------------------------------------------------------------------------


class Members:
    """Fake RPCs: each endpoint answers, fails as unavailable, or never answers
    (until the call's deadline), as the test says."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.failing: dict[str, str] = {}
        self.hanging: set[str] = set()
        self.sent: list[str] = []

    async def invoke(self, channel: grpc.aio.Channel, left: float | None) -> str:
        address = cast(FakeChannel, channel).address
        self.sent.append(address)
        if address in self.hanging:
            await (self.clock.sleep(left) if left is not None else asyncio.Event().wait())
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                "Deadline Exceeded",
            )
        if address in self.failing:
            raise unavailable(self.failing[address])
        return address


def caller(balancer: Balancer, clock: FakeClock, **config: object) -> Caller:
    retry = ClientV3Retry(len(ENDPOINTS), seed=1)
    return Caller(balancer, retry, ClientConfig(**config), clock)  # type: ignore[arg-type]


async def test_a_read_that_meets_unavailable_goes_on_to_the_next_connection(
    clock: FakeClock, network: FakeNetwork, round_robin: tuple[Balancer, StateLog]
) -> None:
    balancer, _ = round_robin
    members = Members(clock)
    members.failing["m1:2379"] = "etcdserver: no leader"
    calls = caller(balancer, clock)
    for _ in range(30):
        with served_by() as served:
            answer = await calls.call("range", members.invoke, safe=True, timeout=None)
        assert answer == served.endpoint and answer != "m1:2379"
    assert calls.stats.retries["unavailable"] == members.sent.count("m1:2379") >= 9
    assert calls.stats.served["m1:2379"] == 0
    assert calls.stats.served["m0:2379"] == calls.stats.served["m2:2379"] == 15


async def test_a_write_that_meets_unavailable_is_not_retried(
    clock: FakeClock, network: FakeNetwork, round_robin: tuple[Balancer, StateLog]
) -> None:
    balancer, _ = round_robin
    members = Members(clock)
    members.failing = {address: "keepalive watchdog timeout" for address in ENDPOINTS}
    calls = caller(balancer, clock)
    with served_by() as served, pytest.raises(ClusterUnavailableError) as error:
        await calls.call("put", members.invoke, safe=False, timeout=None)
    assert "may have been applied" in str(error.value) and error.value.attempts == 1
    assert len(members.sent) == 1 and served.endpoint == members.sent[0]
    assert calls.stats.errors == {"ClusterUnavailableError": 1} and not calls.stats.retries


async def test_a_read_gives_up_after_100_attempts_with_a_wait_per_quorum_round(
    clock: FakeClock, network: FakeNetwork, round_robin: tuple[Balancer, StateLog]
) -> None:
    balancer, _ = round_robin
    members = Members(clock)
    members.failing = {address: "etcdserver: request timed out" for address in ENDPOINTS}
    calls = caller(balancer, clock)
    call = asyncio.create_task(calls.call("range", members.invoke, safe=True, timeout=None))
    ended: list[float] = []
    call.add_done_callback(lambda _: ended.append(clock.now()))
    await clock.advance(10.0)
    with pytest.raises(ClusterUnavailableError) as error:
        await call
    assert error.value.attempts == 100 and len(members.sent) == 100
    # 49 waits of 25 ms +- 10% (after attempts 2, 4, ..., 98), none in between.
    assert 49 * 0.0225 <= ended[0] <= 49 * 0.0275


async def test_a_call_waits_for_a_ready_connection_until_its_deadline(
    clock: FakeClock, network: FakeNetwork
) -> None:
    for address in ENDPOINTS:
        network.behaviour[address] = HANG
    balancer, _ = make_balancer(ENDPOINTS, RoundRobin(random.Random(1)), clock, network)
    balancer.start()
    members = Members(clock)
    calls = caller(balancer, clock)
    call = asyncio.create_task(calls.call("range", members.invoke, safe=True, timeout=5.0))
    await clock.advance(5.0)
    with pytest.raises(ContextError) as error:
        await call
    assert error.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and members.sent == []
    await balancer.close()


async def test_a_hedge_goes_at_once_when_the_primary_already_failed(
    clock: FakeClock, network: FakeNetwork, round_robin: tuple[Balancer, StateLog]
) -> None:
    balancer, _ = round_robin
    members = Members(clock)
    first = (await balancer.pick(None)).address  # the next pick is the one after it
    members.failing[ENDPOINTS[(ENDPOINTS.index(first) + 1) % 3]] = "etcdserver: no leader"
    calls = Caller(balancer, NoRetry(), ClientConfig(), clock)
    # No retries: the primary fails at once, and the hedge does not wait 30 s.
    answer = await calls.hedged("range", members.invoke, timeout=None, hedge_after=30.0)
    assert answer not in members.failing and len(members.sent) == 2
    assert calls.stats.hedges == 1 and clock.now() == 0.0


async def test_attempt_timeout_retries_a_read_but_not_a_write(
    clock: FakeClock, network: FakeNetwork, round_robin: tuple[Balancer, StateLog]
) -> None:
    balancer, _ = round_robin
    members = Members(clock)
    members.hanging = set(ENDPOINTS[:1])
    calls = caller(balancer, clock, attempt_timeout=0.3)
    answers = []
    for _ in range(3):
        call = asyncio.create_task(calls.call("range", members.invoke, safe=True, timeout=30.0))
        await clock.advance(0.3)
        answers.append(await call)
    assert "m0:2379" not in answers and calls.stats.retries == {"attempt_timeout": 1}
    writes = []
    for _ in range(3):
        call = asyncio.create_task(calls.call("put", members.invoke, safe=False, timeout=30.0))
        await clock.advance(0.3)
        writes.append(call)
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    (cut,) = [o for o in outcomes if isinstance(o, ContextError)]
    assert cut.code == grpc.StatusCode.DEADLINE_EXCEEDED and cut.endpoint == "m0:2379"
    assert calls.stats.retries == {"attempt_timeout": 1}
