"""Which of the client's calls are retried after UNAVAILABLE, method by method.

The README and ``EtcdClient.txn`` promise clientv3's rule: reads and lease calls
are retried, a write that went out is not (it may have been applied) unless the
caller marks it idempotent, as a compare-guarded create is, and a write that
never left the client always is. Run through ``EtcdClient`` itself on a
FakeClock over the fake connections of tests/client/fake_network.py, whose
channels here answer from a script (``ScriptedChannel``, a fake of the members'
gRPC services, not etcd), so each call's safety flag is what is tested.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from etcdlab.client.errors import ClusterUnavailableError
from etcdlab.client.etcd import EtcdClient, create_revision_is, put_op
from etcdlab.common.clock import FakeClock
from etcdlab.protos import rpc_pb2
from tests.client.fake_network import FakeNetwork, FakeTransport

ENDPOINTS = ["m0:2379", "m1:2379", "m2:2379"]
TIMED_OUT = "etcdserver: request timed out"


class ScriptedChannel:
    """Answers each unary method from ``script``: the next queued error, else an
    empty response; every attempt is logged as (address, method)."""

    def __init__(self, address: str, script: Script) -> None:
        self.address = address
        self.script = script

    def unary_unary(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
        **_: Any,
    ) -> Callable[..., Awaitable[object]]:  # fmt: skip
        name = method.rsplit("/", 1)[-1]

        async def call(request: object, timeout: float | None = None, **_: Any) -> object:
            self.script.attempts.append((self.address, name))
            if self.script.errors[name]:
                raise self.script.errors[name].pop(0)
            return response_deserializer(b"")

        return call

    def stream_stream(self, method: str, *_: Any, **__: Any) -> Callable[..., object]:
        # Stubs bind every method of their service; these tests make unary calls only.
        def call(*_: Any, **__: Any) -> object:
            raise AssertionError(f"{method}: streams are not scripted")

        return call

    unary_stream = stream_unary = stream_stream


class Script:
    def __init__(self) -> None:
        self.errors: dict[str, list[grpc.aio.AioRpcError]] = collections.defaultdict(list)
        self.attempts: list[tuple[str, str]] = []

    def fail(self, method: str, details: str, times: int = 1) -> None:
        error = grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details
        )
        self.errors[method] += [error] * times

    def methods(self) -> list[str]:
        return [method for _, method in self.attempts]


@pytest.fixture
async def client() -> AsyncIterator[tuple[EtcdClient, Script]]:
    clock, script = FakeClock(), Script()
    network = FakeNetwork(clock)

    def dial(address: str, connect_timeout: float) -> FakeTransport:
        transport = network.dial(address, connect_timeout)
        transport.fake_channel = ScriptedChannel(address, script)  # type: ignore[assignment]
        return transport

    async with EtcdClient(ENDPOINTS, clock=clock, dial=dial, name="scripted") as etcd:
        await etcd.connect()
        await clock.advance(0)
        yield etcd, script


KEY = b"/registry/leases/kube-system/kcm"


def guarded_create(etcd: EtcdClient, *, idempotent: bool) -> Awaitable[rpc_pb2.TxnResponse]:
    return etcd.txn([create_revision_is(KEY, 0)], [put_op(KEY, b"v")], idempotent=idempotent)


async def test_an_idempotent_compare_guarded_txn_is_retried_on_another_member(
    client: tuple[EtcdClient, Script],
) -> None:
    etcd, script = client
    script.fail("Txn", TIMED_OUT)
    await guarded_create(etcd, idempotent=True)
    assert script.methods() == ["Txn", "Txn"]
    first, second = (address for address, _ in script.attempts)
    assert first != second
    assert etcd.stats.retries == {"unavailable": 1}


async def test_a_txn_not_marked_idempotent_is_not_retried(
    client: tuple[EtcdClient, Script],
) -> None:
    etcd, script = client
    script.fail("Txn", TIMED_OUT)
    with pytest.raises(ClusterUnavailableError, match="may have been applied"):
        await guarded_create(etcd, idempotent=False)
    assert script.methods() == ["Txn"]


@pytest.mark.parametrize("idempotent", [False, True])
async def test_writes_are_retried_only_when_marked_idempotent(
    client: tuple[EtcdClient, Script], idempotent: bool
) -> None:
    etcd, script = client
    script.fail("Put", TIMED_OUT)
    script.fail("DeleteRange", TIMED_OUT)
    if idempotent:
        await etcd.put(KEY, b"v", idempotent=True)
        await etcd.delete(KEY, idempotent=True)
        assert script.methods() == ["Put", "Put", "DeleteRange", "DeleteRange"]
    else:
        with pytest.raises(ClusterUnavailableError):
            await etcd.put(KEY, b"v")
        with pytest.raises(ClusterUnavailableError):
            await etcd.delete(KEY)
        assert script.methods() == ["Put", "DeleteRange"]


async def test_reads_lease_reads_and_status_are_retried(client: tuple[EtcdClient, Script]) -> None:
    etcd, script = client
    for method in ("Range", "LeaseTimeToLive", "Status"):
        script.fail(method, TIMED_OUT)
    await etcd.get(KEY)
    await etcd.lease_time_to_live(1)
    await etcd.status()
    assert script.methods() == [m for m in ("Range", "LeaseTimeToLive", "Status") for _ in "12"]


async def test_a_write_that_never_reached_a_member_is_retried(
    client: tuple[EtcdClient, Script],
) -> None:
    etcd, script = client
    script.fail("Txn", "failed to connect to all addresses")
    await guarded_create(etcd, idempotent=False)
    assert script.methods() == ["Txn", "Txn"]
    assert etcd.stats.retries == {"dial": 1}


async def test_compaction_is_a_write_and_not_retried(client: tuple[EtcdClient, Script]) -> None:
    etcd, script = client
    script.fail("Compact", TIMED_OUT)
    with pytest.raises(ClusterUnavailableError):
        await etcd.compact(5)
    assert script.methods() == ["Compact"]
