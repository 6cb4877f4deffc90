"""The emulated apiserver etcd client: clientv3 as the apiserver configures it.

The pieces, each with one job:

* :mod:`~etcdlab.client.connection`: a connection per endpoint, each with its
  own keepalive and gRPC's connectivity states and reconnect backoff;
* :mod:`~etcdlab.client.balancer`: the picker over the ready connections
  (round-robin, like clientv3 since v3.4; or sticky, like etcd <= 3.3);
* :mod:`~etcdlab.client.calls`: one call's attempts, clientv3's retry rules
  and hedged reads;
* :class:`EtcdClient` (here): the etcd API on top (KV, leases, watches,
  Status), with what clientv3 retries: reads, lease calls and Status are
  repeatable; Put, DeleteRange, Txn and Compact are not, so a write that met
  UNAVAILABLE after it went out raises :class:`ClusterUnavailableError`.

Errors: every call raises :class:`ContextError` when its deadline passes (also
while it waits for a ready connection) or the server cancels it,
:class:`ClusterUnavailableError` on UNAVAILABLE that is not or no longer
retried, and :class:`ResponseError` when etcd answers with an error retrying
cannot fix. Cancelling the awaiting task cancels the RPC.
"""

from __future__ import annotations

import asyncio
import random
import weakref
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, TypeVar

import grpc

from etcdlab.client.backoff import ConnectionBackoff
from etcdlab.client.balancer import Balancer, Picker, RoundRobin, Sticky
from etcdlab.client.calls import AttemptObserver, Caller, ClientStats, Invoke
from etcdlab.client.config import ClientConfig
from etcdlab.client.connection import (
    Connection,
    ConnectionEvents,
    ConnectivityState,
    Dialer,
    Route,
    grpc_dialer,
)
from etcdlab.client.errors import ClusterUnavailableError, EtcdError, ResponseError
from etcdlab.client.lease import KeepAliveStream, Lease, LeaseKeeper, LostCallback
from etcdlab.client.retry import ClientV3Retry, RetryPolicy
from etcdlab.client.watch import Watch, WatchStream
from etcdlab.common.clock import Clock, MonotonicClock
from etcdlab.protos import rpc_pb2, rpc_pb2_grpc

T = TypeVar("T")

# clientv3's WithRequireLeader: a member without a leader ends the stream with
# an error instead of keeping it open and silent.
REQUIRE_LEADER = (("hasleader", "true"),)
# clientv3 reopens a failed watch stream after 1 ms at first, a quarter more each time.
_WATCH_RETRY_FIRST = 0.01  # of the cap: 1 ms of 100 ms
_WATCH_RETRY_GROWTH = 1.25


def prefix_end(key: bytes) -> bytes:
    """The ``range_end`` that makes a range cover every key starting with ``key``."""
    end = bytearray(key)
    for index in range(len(end) - 1, -1, -1):
        if end[index] < 0xFF:
            end[index] += 1
            return bytes(end[: index + 1])
    # All 0xff (or empty): etcd's "\0" means "to the end of the keyspace".
    return b"\0"


def put_op(key: bytes, value: bytes, *, lease: int = 0) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease))


def get_op(key: bytes, *, range_end: bytes = b"") -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key, range_end=range_end))


def delete_op(key: bytes, *, range_end: bytes = b"") -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(
        request_delete_range=rpc_pb2.DeleteRangeRequest(key=key, range_end=range_end)
    )


def mod_revision_is(key: bytes, revision: int) -> rpc_pb2.Compare:
    """Compare for compare-and-swap; revision 0 means "the key does not exist"."""
    return rpc_pb2.Compare(
        key=key, target=rpc_pb2.Compare.MOD, result=rpc_pb2.Compare.EQUAL, mod_revision=revision
    )


def create_revision_is(key: bytes, revision: int) -> rpc_pb2.Compare:
    """Compare on the key's creation; revision 0 means "the key does not exist"."""
    return rpc_pb2.Compare(
        key=key,
        target=rpc_pb2.Compare.CREATE,
        result=rpc_pb2.Compare.EQUAL,
        create_revision=revision,
    )


def value_is(key: bytes, value: bytes) -> rpc_pb2.Compare:
    return rpc_pb2.Compare(
        key=key, target=rpc_pb2.Compare.VALUE, result=rpc_pb2.Compare.EQUAL, value=value
    )


class ClientListener(Protocol):
    """Told about the client's connections as they change (times: now)."""

    def connection_state(
        self, client: str, endpoint: str, state: ConnectivityState, error: str | None
    ) -> None:
        """A connection changed state; ``error`` says why a connection attempt failed."""
        ...

    def keepalive_closed(self, client: str, endpoint: str) -> None:
        """A keepalive timeout closed the connection to ``endpoint``."""
        ...


@dataclass(frozen=True)
class ConnectionStatus:
    """A snapshot of one endpoint's connection."""

    address: str
    state: ConnectivityState
    connected: int
    """Connections that became ready."""
    retries: int
    """Consecutive failed connection attempts (the backoff index)."""
    keepalive_failures: int
    last_error: str | None


class EtcdClient:
    """See the module docstring. Use as ``async with EtcdClient([...]) as client``.

    Connections start on first use (or :meth:`connect`). ``retry`` replaces
    clientv3's retry policy; ``on_attempt(method)`` is called as each attempt
    starts, hedges included; ``listener`` hears connection changes; ``dial``
    replaces the grpcio transport (tests).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        config: ClientConfig | None = None,
        *,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        name: str = "client",
        on_attempt: AttemptObserver | None = None,
        listener: ClientListener | None = None,
        dial: Dialer | None = None,
    ) -> None:
        if isinstance(endpoints, str):
            raise TypeError("endpoints must be a sequence of 'host:port' strings, not a string")
        if not endpoints:
            raise ValueError("endpoints must not be empty")
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("endpoints must not repeat")
        self.config = config or ClientConfig()
        self.clock: Clock = clock or MonotonicClock()
        self.name = name
        self._listener = listener
        self._dial = dial or grpc_dialer(self.config)
        # Clients with the same config but different names must not jitter in
        # lockstep, or their retries arrive together anyway.
        self._seed = self.config.seed ^ zlib.crc32(name.encode())
        self.retry: RetryPolicy = retry or ClientV3Retry(
            len(endpoints),
            wait_between=self.config.retry_wait_between,
            jitter=self.config.retry_jitter,
            max_attempts=self.config.retry_max_attempts,
            seed=self._seed,
        )
        picker: Picker = (
            RoundRobin(random.Random(f"{self._seed}/picker"))
            if self.config.balancer == "round_robin"
            else Sticky(endpoints)
        )
        self._balancer = Balancer(
            endpoints, self._connection, picker, self.clock, listener=_Forward(self)
        )
        self._caller = Caller(self._balancer, self.retry, self.config, self.clock, on_attempt)
        self._keeper: LeaseKeeper | None = None
        self._watches: weakref.WeakSet[Watch] = weakref.WeakSet()
        self._started = False
        self._closed = False

    def _connection(self, address: str, events: ConnectionEvents) -> Connection:
        config = self.config
        return Connection(
            address,
            dial=self._dial,
            backoff=ConnectionBackoff.of(config, random.Random(f"{self._seed}/{address}")),
            clock=self.clock,
            events=events,
            drain=config.keepalive_time + config.keepalive_timeout,
        )

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> EtcdClient:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def start(self) -> None:
        """Start connecting to every endpoint (first use does it too)."""
        if self._closed:
            raise RuntimeError("client is closed")
        if not self._started:
            self._started = True
            self._balancer.start()

    async def connect(self) -> None:
        """Wait for a first ready connection, at most ``dial_timeout`` (like
        ``clientv3.New`` with ``WithBlock``); raises ClusterUnavailableError."""
        self.start()
        try:
            await self._balancer.pick(self.config.dial_timeout)
        except TimeoutError:
            raise ClusterUnavailableError(
                f"{self.name}: no connection ready within {self.config.dial_timeout:g}s"
            ) from None

    async def close(self) -> None:
        """Revoke live leases (best effort, ``close_timeout``), end watches, close connections."""
        if self._closed:
            return
        if self._keeper is not None:
            keeper, self._keeper = self._keeper, None
            leases = [lease for lease in keeper.leases if lease.alive]
            await keeper.close()
            results = await asyncio.gather(
                *(lease.revoke(timeout=self.config.close_timeout) for lease in leases),
                return_exceptions=True,
            )
            for result in results:
                # Best effort: an unreachable cluster expires the leases itself.
                if isinstance(result, BaseException) and not isinstance(result, EtcdError):
                    raise result
        self._closed = True
        for watch in list(self._watches):
            await watch.cancel()
        await self._balancer.close()

    # -- observable state ----------------------------------------------------

    @property
    def stats(self) -> ClientStats:
        return self._caller.stats

    @property
    def connections(self) -> tuple[ConnectionStatus, ...]:
        return tuple(
            ConnectionStatus(
                c.address, c.state, c.connected, c.retries, c.keepalive_failures, c.last_error
            )
            for c in self._balancer.connections
        )

    @property
    def has_connected(self) -> bool:
        """Whether any connection has ever become ready."""
        return any(c.connected for c in self._balancer.connections)

    # -- KV ----------------------------------------------------------------

    async def get(
        self,
        key: bytes,
        *,
        range_end: bytes = b"",
        serializable: bool = False,
        revision: int = 0,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        timeout: float | None = None,
        hedge_after: float | None = None,
    ) -> rpc_pb2.RangeResponse:
        """Range read (linearizable unless ``serializable``); retried on unavailability.

        With ``hedge_after``, a read still unanswered after that many seconds is
        sent once more over another ready connection; the first answer wins and
        the other attempt is cancelled (counted in ``stats.hedges``).
        Raises ContextError, ClusterUnavailableError, ResponseError (e.g.
        compacted revision)."""
        if hedge_after is not None and not hedge_after >= 0:
            raise ValueError("hedge_after must be a non-negative number of seconds")
        request = rpc_pb2.RangeRequest(
            key=key,
            range_end=range_end,
            serializable=serializable,
            revision=revision,
            limit=limit,
            keys_only=keys_only,
            count_only=count_only,
        )

        async def invoke(channel: grpc.aio.Channel, left: float | None) -> rpc_pb2.RangeResponse:
            return await rpc_pb2_grpc.KVStub(channel).Range(request, timeout=left)

        if hedge_after is None:
            return await self._call("range", invoke, safe=True, timeout=timeout)
        self.start()
        return await self._caller.hedged("range", invoke, timeout=timeout, hedge_after=hedge_after)

    async def put(
        self,
        key: bytes,
        value: bytes,
        *,
        lease: int = 0,
        prev_kv: bool = False,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> rpc_pb2.PutResponse:
        """Write a key. Not retried after UNAVAILABLE once sent unless
        ``idempotent``. Raises ContextError, ClusterUnavailableError, ResponseError."""
        request = rpc_pb2.PutRequest(key=key, value=value, lease=lease, prev_kv=prev_kv)

        async def invoke(channel: grpc.aio.Channel, left: float | None) -> rpc_pb2.PutResponse:
            return await rpc_pb2_grpc.KVStub(channel).Put(request, timeout=left)

        return await self._call("put", invoke, safe=idempotent, timeout=timeout)

    async def delete(
        self,
        key: bytes,
        *,
        range_end: bytes = b"",
        prev_kv: bool = False,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> rpc_pb2.DeleteRangeResponse:
        """Delete a key or range; retry rules as :meth:`put`."""
        request = rpc_pb2.DeleteRangeRequest(key=key, range_end=range_end, prev_kv=prev_kv)

        async def invoke(
            channel: grpc.aio.Channel, left: float | None
        ) -> rpc_pb2.DeleteRangeResponse:
            return await rpc_pb2_grpc.KVStub(channel).DeleteRange(request, timeout=left)

        return await self._call("delete", invoke, safe=idempotent, timeout=timeout)

    async def txn(
        self,
        compare: Sequence[rpc_pb2.Compare],
        success: Sequence[rpc_pb2.RequestOp],
        failure: Sequence[rpc_pb2.RequestOp] = (),
        *,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> rpc_pb2.TxnResponse:
        """A transaction. Like any write, not retried after UNAVAILABLE once sent
        (clientv3 does not, compare-guarded or not) unless ``idempotent``.
        Raises ContextError, ClusterUnavailableError, ResponseError."""
        request = rpc_pb2.TxnRequest(compare=compare, success=success, failure=failure)

        async def invoke(channel: grpc.aio.Channel, left: float | None) -> rpc_pb2.TxnResponse:
            return await rpc_pb2_grpc.KVStub(channel).Txn(request, timeout=left)

        return await self._call("txn", invoke, safe=idempotent, timeout=timeout)

    async def compact(
        self, revision: int, *, physical: bool = False, timeout: float | None = None
    ) -> rpc_pb2.CompactionResponse:
        """Compact history up to ``revision`` (not retried after UNAVAILABLE, as
        clientv3 does not). Raises ContextError, ClusterUnavailableError, ResponseError."""
        request = rpc_pb2.CompactionRequest(revision=revision, physical=physical)

        async def invoke(
            channel: grpc.aio.Channel, left: float | None
        ) -> rpc_pb2.CompactionResponse:
            return await rpc_pb2_grpc.KVStub(channel).Compact(request, timeout=left)

        return await self._call("compact", invoke, safe=False, timeout=timeout)

    async def status(
        self, *, endpoint: str | None = None, timeout: float | None = None
    ) -> rpc_pb2.StatusResponse:
        """Maintenance.Status of a member the balancer picks (or of ``endpoint``,
        over its connection once ready, no other member, no retry).
        Raises ContextError, ClusterUnavailableError, ResponseError."""

        async def invoke(channel: grpc.aio.Channel, left: float | None) -> rpc_pb2.StatusResponse:
            return await rpc_pb2_grpc.MaintenanceStub(channel).Status(
                rpc_pb2.StatusRequest(), timeout=left
            )

        if endpoint is None:
            return await self._call("status", invoke, safe=True, timeout=timeout)
        self.start()
        connection = self._balancer.connection(endpoint)
        return await self._caller.call_on("status", connection, invoke, timeout)

    # -- leases --------------------------------------------------------------

    async def grant_lease(
        self, ttl: int, *, on_lost: LostCallback | None = None, timeout: float | None = None
    ) -> Lease:
        """Grant a lease of ``ttl`` seconds and keep it alive in the background.

        ``on_lost`` runs (and ``lease.lost`` is set) when the lease's local deadline
        passes without a keep-alive answer, or the server says it expired.
        Raises ContextError, ClusterUnavailableError, ResponseError.
        """
        if ttl < 1:
            raise ValueError("ttl must be at least 1 second")
        granted_at = self.clock.now()

        async def invoke(
            channel: grpc.aio.Channel, left: float | None
        ) -> rpc_pb2.LeaseGrantResponse:
            return await rpc_pb2_grpc.LeaseStub(channel).LeaseGrant(
                rpc_pb2.LeaseGrantRequest(TTL=ttl), timeout=left
            )

        # A repeated grant only leaves an unused lease behind to expire.
        response = await self._call("lease_grant", invoke, safe=True, timeout=timeout)
        if response.error:
            raise ResponseError(f"lease grant refused: {response.error}")
        lease = Lease(
            response.ID, response.TTL, granted_at, revoke=self._revoke_lease, on_lost=on_lost
        )
        self._lease_keeper().add(lease)
        return lease

    async def lease_time_to_live(
        self, lease_id: int, *, keys: bool = False, timeout: float | None = None
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        """The server's view of a lease (TTL -1 once expired or revoked).
        Raises ContextError, ClusterUnavailableError, ResponseError."""
        request = rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys)

        async def invoke(
            channel: grpc.aio.Channel, left: float | None
        ) -> rpc_pb2.LeaseTimeToLiveResponse:
            return await rpc_pb2_grpc.LeaseStub(channel).LeaseTimeToLive(request, timeout=left)

        return await self._call("lease_ttl", invoke, safe=True, timeout=timeout)

    def _lease_keeper(self) -> LeaseKeeper:
        if self._closed:
            raise RuntimeError("client is closed")
        if self._keeper is None:

            async def open_stream() -> tuple[KeepAliveStream, Route]:
                return await self._open_stream(
                    lambda channel: rpc_pb2_grpc.LeaseStub(channel).LeaseKeepAlive(
                        metadata=REQUIRE_LEADER
                    )
                )

            self._keeper = LeaseKeeper(
                self.clock, open_stream, retry_wait=self.config.lease_retry_wait
            )
        return self._keeper

    async def _revoke_lease(self, lease: Lease, timeout: float | None) -> None:
        if self._keeper is not None:
            self._keeper.discard(lease)

        async def invoke(
            channel: grpc.aio.Channel, left: float | None
        ) -> rpc_pb2.LeaseRevokeResponse:
            return await rpc_pb2_grpc.LeaseStub(channel).LeaseRevoke(
                rpc_pb2.LeaseRevokeRequest(ID=lease.id), timeout=left
            )

        try:
            await self._call("lease_revoke", invoke, safe=True, timeout=timeout)
        except ResponseError as error:
            if error.code != grpc.StatusCode.NOT_FOUND:
                raise

    # -- watch ---------------------------------------------------------------

    def watch(
        self,
        key: bytes,
        *,
        range_end: bytes = b"",
        start_revision: int = 0,
        progress_notify: bool = False,
        prev_kv: bool = False,
    ) -> Watch:
        """Watch a key or range from ``start_revision`` (0: from now).

        Returns an async iterator of :class:`WatchBatch` that resumes across
        lost connections without loss or duplication; see
        :class:`~etcdlab.client.watch.Watch` for what ends it with an error.
        """
        if self._closed:
            raise RuntimeError("client is closed")

        async def open_stream() -> tuple[WatchStream, Route]:
            return await self._open_stream(
                lambda channel: rpc_pb2_grpc.WatchStub(channel).Watch(metadata=REQUIRE_LEADER)
            )

        watch = Watch(
            open_stream,
            key,
            range_end=range_end,
            start_revision=start_revision,
            progress_notify=progress_notify,
            prev_kv=prev_kv,
            clock=self.clock,
            backoff=self._watch_delay,
        )
        self._watches.add(watch)
        return watch

    # -- calls and streams -----------------------------------------------------

    async def _call(
        self, method: str, invoke: Invoke[T], *, safe: bool, timeout: float | None
    ) -> T:
        self.start()
        return await self._caller.call(method, invoke, safe=safe, timeout=timeout)

    async def _open_stream(self, start: Callable[[grpc.aio.Channel], T]) -> tuple[T, Route]:
        """Start a stream over the connection the balancer picks (waiting for one)."""
        if self._closed:
            raise ClusterUnavailableError("client is closed")
        self.start()
        route = await self._balancer.pick(None)
        return start(route.channel), route

    def _watch_delay(self, failures: int) -> float:
        cap = self.config.watch_retry_cap
        return min(cap, cap * _WATCH_RETRY_FIRST * _WATCH_RETRY_GROWTH ** min(failures, 100))


class _Forward:
    """Passes the balancer's connection events on to the client's listener."""

    def __init__(self, client: EtcdClient) -> None:
        self._client = client

    def state_changed(self, connection: Connection, error: str | None) -> None:
        listener = self._client._listener
        if listener is not None:
            listener.connection_state(
                self._client.name, connection.address, connection.state, error
            )

    def keepalive_closed(self, connection: Connection) -> None:
        listener = self._client._listener
        if listener is not None:
            listener.keepalive_closed(self._client.name, connection.address)
