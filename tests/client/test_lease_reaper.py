"""The lease keeper's timing on a FakeClock: keep-alive every TTL/3, local reaping.

Fakes, not etcd: the keep-alive stream is ``FakeStream`` below and the
connections are tests/client/fake_network.py's; tests/client/test_failover.py
holds the same rules against real members."""

from __future__ import annotations

import asyncio
import random

import pytest

from etcdlab.client.balancer import RoundRobin
from etcdlab.client.connection import Route
from etcdlab.client.errors import ClusterUnavailableError
from etcdlab.client.lease import KeepAliveStream, Lease, LeaseKeeper
from etcdlab.common.clock import FakeClock
from etcdlab.protos import rpc_pb2
from tests.client.fake_network import FakeNetwork, make_balancer


class FakeStream:
    """A keep-alive stream that answers every request with ``answer_ttl``, or never."""

    def __init__(self, answer_ttl: int | None) -> None:
        self.answer_ttl = answer_ttl
        self.writes: list[int] = []
        self._responses: asyncio.Queue[rpc_pb2.LeaseKeepAliveResponse] = asyncio.Queue()

    async def write(self, request: rpc_pb2.LeaseKeepAliveRequest) -> None:
        self.writes.append(request.ID)
        if self.answer_ttl is not None:
            self._responses.put_nowait(
                rpc_pb2.LeaseKeepAliveResponse(ID=request.ID, TTL=self.answer_ttl)
            )

    async def read(self) -> object:
        return await self._responses.get()

    def cancel(self) -> bool:
        return True


async def _no_revoke(lease: Lease, timeout: float | None) -> None:
    return None


def make_keeper(clock: FakeClock, stream: FakeStream | None) -> LeaseKeeper:
    balancer, _ = make_balancer(["fake:1"], RoundRobin(random.Random(0)), clock, FakeNetwork(clock))
    balancer.start()

    async def open_stream() -> tuple[KeepAliveStream, Route]:
        if stream is None:
            raise ClusterUnavailableError("no endpoint")
        return stream, await balancer.pick(None)

    return LeaseKeeper(clock, open_stream, retry_wait=1.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_unanswered_lease_is_lost_at_its_deadline(clock: FakeClock) -> None:
    stream = FakeStream(answer_ttl=None)
    keeper = make_keeper(clock, stream)
    lost: list[Lease] = []
    lease = Lease(1, 3, clock.now(), revoke=_no_revoke, on_lost=lost.append)
    keeper.add(lease)
    await clock.advance(2.9)
    # Sent at once on stream open, then at TTL/3 intervals; nothing answered.
    assert stream.writes == [1, 1, 1] and lease.alive
    await clock.advance(0.1)
    assert lost == [lease] and lease.lost.is_set()
    assert "deadline" in (lease.lost_reason or "")
    assert keeper.leases == []
    await keeper.close()


async def test_answered_lease_lives_on(clock: FakeClock) -> None:
    stream = FakeStream(answer_ttl=3)
    keeper = make_keeper(clock, stream)
    lease = Lease(2, 3, clock.now(), revoke=_no_revoke)
    keeper.add(lease)
    for _ in range(30):
        await clock.advance(1.0)
    assert lease.alive and lease.keepalives_answered >= 29
    assert lease.deadline > clock.now() + 1.9
    await keeper.close()


async def test_server_expiry_is_reported(clock: FakeClock) -> None:
    stream = FakeStream(answer_ttl=0)
    keeper = make_keeper(clock, stream)
    lease = Lease(3, 10, clock.now(), revoke=_no_revoke)
    keeper.add(lease)
    await clock.advance(0.0)
    assert lease.lost.is_set() and "expired on the server" in (lease.lost_reason or "")
    await keeper.close()


async def test_lost_without_any_stream(clock: FakeClock) -> None:
    keeper = make_keeper(clock, None)
    lease = Lease(4, 5, clock.now(), revoke=_no_revoke)
    keeper.add(lease)
    await clock.advance(4.9)
    assert lease.alive and lease.keepalives_sent == 0
    await clock.advance(0.2)
    assert lease.lost.is_set()
    await keeper.close()


async def test_revoked_lease_is_dropped_not_lost(clock: FakeClock) -> None:
    stream = FakeStream(answer_ttl=None)
    keeper = make_keeper(clock, stream)
    lease = Lease(5, 3, clock.now(), revoke=_no_revoke)
    keeper.add(lease)
    await lease.revoke()
    await clock.advance(10.0)
    assert lease.revoked and not lease.lost.is_set() and keeper.leases == []
    await keeper.close()
