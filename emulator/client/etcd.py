"""An asyncio etcd v3 client that connects the way the apiserver's client does.

* One ``grpc.aio`` channel per endpoint, created on first use, with gRPC
  keepalive (time 30 s, timeout 10 s, pings allowed without calls) so a dead
  member is detected by keepalive, not only by request deadlines; dials wait at
  most the dial timeout (20 s).
* Sticky endpoint: every call goes to the current endpoint until it fails
  (UNAVAILABLE, keepalive ping timeout, dial failure or timeout); then the client
  rotates to the next endpoint that has not failed. A failed endpoint is skipped
  until a background probe sees it answer again (at most one probe per
  ``endpoint_probe_interval``), so requests never pay a dial timeout to find out
  whether a dead member is back. Only when every endpoint failed do requests
  try them again themselves, paced by the retry policy.
* A deadline that passes during an attempt is the caller's, not the endpoint's,
  failure, but it makes the endpoint suspect: a background Status call checks
  it (one at a time per endpoint), and an endpoint that does not answer within
  ``keepalive_timeout`` counts as failed. Without that, a connection that
  stays open but passes nothing (a blackholed or head-of-line blocked link) is
  only noticed by keepalive, and callers with deadlines shorter than keepalive
  keep sending into it; a member that is merely slower than the caller's
  deadline answers the check and stays in use.
* Retries follow a :class:`~etcdlab.client.retry.RetryPolicy`; :func:`retry_reason`
  decides which failures are retryable at all (writes that may have been
  applied are not, unless marked idempotent or compare-guarded).

Errors: every call raises :class:`ContextError` when its deadline passes or it
is cancelled by the server, :class:`ClusterUnavailableError` when the retry
policy gives up on unavailable endpoints (or a non-idempotent write met
UNAVAILABLE after it was sent), and :class:`ResponseError` when etcd answers
with a non-retryable error. Cancelling the awaiting task cancels the RPC.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import weakref
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

import grpc

from etcdlab.client.config import ClientConfig
from etcdlab.client.errors import (
    ClusterUnavailableError,
    ContextError,
    EtcdError,
    ResponseError,
    from_rpc_error,
)
from etcdlab.client.lease import KeepAliveStream, Lease, LeaseKeeper, LostCallback
from etcdlab.client.retry import ExponentialFullJitter, RetryPolicy, retry_reason
from etcdlab.client.watch import Watch, WatchStream
from etcdlab.common.clock import Clock, MonotonicClock
from etcdlab.protos import rpc_pb2, rpc_pb2_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")

# clientv3's WithRequireLeader: a member without a leader ends the stream with
# an error instead of keeping it open and silent.
REQUIRE_LEADER = (("hasleader", "true"),)
Invoke = Callable[[grpc.aio.Channel, float | None], Awaitable[T]]


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


@dataclass
class EndpointStatus:
    """What the client knows about one endpoint."""

    address: str
    failures: int = 0
    consecutive_failures: int = 0
    last_failure: float | None = None
    last_error: str = ""
    last_success: float | None = None
    connectivity: str = "NONE"
    """gRPC state of the endpoint's channel when the snapshot was taken
    (IDLE, CONNECTING, READY, TRANSIENT_FAILURE, SHUTDOWN; NONE before first use)."""
    failing: bool = False
    """Set on failure; cleared when a call or the background probe succeeds here.
    Failing endpoints are skipped while any other is not failing."""
    checking: bool = False
    """True while the Status check that follows an attempt's passed deadline runs."""


@dataclass(frozen=True)
class EndpointsState:
    """A snapshot of endpoint selection (times on the client's clock)."""

    current: str
    switches: int
    last_switch: float | None
    endpoints: tuple[EndpointStatus, ...]


@dataclass
class ClientStats:
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    """Calls started, by method."""
    attempts: int = 0
    retries: collections.Counter[str] = field(default_factory=collections.Counter)
    """Retries, by reason (``dial``, ``unavailable``, ``keepalive``, ``exhausted``)."""
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    """Failed calls, by error class (a hedged read whose primary failed while
    the hedge answered counts too)."""
    hedges: int = 0
    """Hedged reads sent (second attempts on another endpoint)."""


class _DialError(Exception):
    pass


class _Endpoint:
    def __init__(self, address: str) -> None:
        self.status = EndpointStatus(address)
        self.channel: grpc.aio.Channel | None = None
        self.prober: asyncio.Task[None] | None = None
        self.checker: asyncio.Task[None] | None = None
        self.channel_created = 0.0

    @property
    def address(self) -> str:
        return self.status.address


class EtcdClient:
    """See the module docstring. Use as ``async with EtcdClient([...]) as client``."""

    def __init__(
        self,
        endpoints: Sequence[str],
        config: ClientConfig | None = None,
        *,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        name: str = "client",
        on_attempt: Callable[[str], None] | None = None,
    ) -> None:
        """``on_attempt(method)`` is called as each RPC attempt starts, hedges
        included: for callers that account attempts per call (benchmarks)."""
        if isinstance(endpoints, str):
            raise TypeError("endpoints must be a sequence of 'host:port' strings, not a string")
        if not endpoints:
            raise ValueError("endpoints must not be empty")
        self.config = config or ClientConfig()
        self.clock: Clock = clock or MonotonicClock()
        self.name = name
        # Clients with the same config but different names must not jitter in
        # lockstep, or their retries arrive together anyway.
        seed = self.config.seed ^ zlib.crc32(name.encode())
        self.retry: RetryPolicy = retry or ExponentialFullJitter(
            self.config.retry_backoff_base,
            self.config.retry_backoff_cap,
            max_attempts=self.config.retry_max_attempts,
            seed=seed,
        )
        self.stats = ClientStats()
        self._on_attempt = on_attempt
        self._endpoints = [_Endpoint(address) for address in endpoints]
        self._current = 0
        self._switches = 0
        self._last_switch: float | None = None
        self._stream_backoff = ExponentialFullJitter(
            self.config.retry_backoff_base,
            self.config.retry_backoff_cap,
            max_attempts=2**31,
            seed=seed + 1,
        )
        self._keeper: LeaseKeeper | None = None
        self._watches: weakref.WeakSet[Watch] = weakref.WeakSet()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Revoke live leases (best effort, ``close_timeout``), end watches, close channels."""
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
        for endpoint in self._endpoints:
            for task in (endpoint.prober, endpoint.checker):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        for endpoint in self._endpoints:
            if endpoint.channel is not None:
                await endpoint.channel.close()
                endpoint.channel = None

    # -- observable state ----------------------------------------------------

    @property
    def endpoints_state(self) -> EndpointsState:
        return EndpointsState(
            current=self._endpoints[self._current].address,
            switches=self._switches,
            last_switch=self._last_switch,
            endpoints=tuple(
                dataclasses.replace(
                    e.status,
                    connectivity="NONE" if e.channel is None else e.channel.get_state().name,
                    checking=e.checker is not None,
                )
                for e in self._endpoints
            ),
        )

    @property
    def current_endpoint(self) -> str:
        return self._endpoints[self._current].address

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
        """Range read; retried on unavailability.

        With ``hedge_after``, a read still unanswered after that many seconds is
        sent once more to another endpoint that has not failed; the first answer
        wins and the other attempt is cancelled (counted in ``stats.hedges``).
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
        return await self._hedged("range", invoke, timeout=timeout, hedge_after=hedge_after)

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
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> rpc_pb2.TxnResponse:
        """A transaction. Retried after UNAVAILABLE when compare-guarded (a repeat
        of an applied txn fails its compare instead of applying twice) or
        ``idempotent``. Raises ContextError, ClusterUnavailableError, ResponseError."""
        request = rpc_pb2.TxnRequest(compare=compare, success=success, failure=failure)
        safe = len(compare) > 0 if idempotent is None else idempotent

        async def invoke(channel: grpc.aio.Channel, left: float | None) -> rpc_pb2.TxnResponse:
            return await rpc_pb2_grpc.KVStub(channel).Txn(request, timeout=left)

        return await self._call("txn", invoke, safe=safe, timeout=timeout)

    async def compact(
        self, revision: int, *, physical: bool = False, timeout: float | None = None
    ) -> rpc_pb2.CompactionResponse:
        """Compact history up to ``revision`` (repeatable, so retried).
        Raises ContextError, ClusterUnavailableError, ResponseError."""
        request = rpc_pb2.CompactionRequest(revision=revision, physical=physical)

        async def invoke(
            channel: grpc.aio.Channel, left: float | None
        ) -> rpc_pb2.CompactionResponse:
            return await rpc_pb2_grpc.KVStub(channel).Compact(request, timeout=left)

        return await self._call("compact", invoke, safe=True, timeout=timeout)

    async def status(
        self, *, endpoint: str | None = None, timeout: float | None = None
    ) -> rpc_pb2.StatusResponse:
        """Maintenance.Status of the current endpoint (or of ``endpoint``, with
        no failover). Raises ContextError, ClusterUnavailableError, ResponseError."""

        async def invoke(channel: grpc.aio.Channel, left: float | None) -> rpc_pb2.StatusResponse:
            return await rpc_pb2_grpc.MaintenanceStub(channel).Status(
                rpc_pb2.StatusRequest(), timeout=left
            )

        if endpoint is None:
            return await self._call("status", invoke, safe=True, timeout=timeout)
        self.stats.calls["status"] += 1
        try:
            return await self._attempt_on("status", self._endpoint(endpoint), invoke, timeout)
        except EtcdError as error:
            raise self._raise(error) from None

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

            async def open_stream() -> tuple[KeepAliveStream, str]:
                call, endpoint = await self._open_stream(
                    lambda channel: rpc_pb2_grpc.LeaseStub(channel).LeaseKeepAlive(
                        metadata=REQUIRE_LEADER
                    )
                )
                return call, endpoint

            self._keeper = LeaseKeeper(
                self.clock,
                open_stream,
                backoff=self._stream_delay,
                stream_failed=self._stream_failed,
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
        stream and endpoint failures without loss or duplication and raises
        :class:`CompactedError` when the history it needs was compacted.
        """
        if self._closed:
            raise RuntimeError("client is closed")

        async def open_stream() -> tuple[WatchStream, str]:
            call, endpoint = await self._open_stream(
                lambda channel: rpc_pb2_grpc.WatchStub(channel).Watch(metadata=REQUIRE_LEADER)
            )
            return call, endpoint

        watch = Watch(
            open_stream,
            key,
            range_end=range_end,
            start_revision=start_revision,
            progress_notify=progress_notify,
            prev_kv=prev_kv,
            clock=self.clock,
            backoff=self._stream_delay,
            stream_failed=self._stream_failed,
        )
        self._watches.add(watch)
        return watch

    # -- the call loop -------------------------------------------------------

    async def _call(
        self, method: str, invoke: Invoke[T], *, safe: bool, timeout: float | None
    ) -> T:
        if self._closed:
            raise RuntimeError("client is closed")
        if timeout is None:
            timeout = self.config.request_timeout
        deadline = None if timeout is None else self.clock.now() + timeout
        self.stats.calls[method] += 1
        self.retry.record_call()
        attempt = 0
        previous = 0.0
        while True:
            attempt += 1
            self.stats.attempts += 1
            endpoint = self._endpoints[self._pick()]
            left = None if deadline is None else deadline - self.clock.now()
            if left is not None and left <= 0:
                raise self._raise(
                    ContextError(
                        f"{method}: deadline exceeded before attempt {attempt}",
                        code=grpc.StatusCode.DEADLINE_EXCEEDED,
                    )
                )
            per_try = self._per_try(left)
            if self._on_attempt is not None:
                self._on_attempt(method)
            sent = False
            try:
                channel = await self._dial(endpoint, per_try)
                sent = True
                result = await invoke(channel, per_try)
            except _DialError as dial_error:
                error: EtcdError = ClusterUnavailableError(
                    str(dial_error), endpoint=endpoint.address, attempts=attempt
                )
            except grpc.aio.AioRpcError as rpc_error:
                error = from_rpc_error(rpc_error, endpoint.address)
            except ContextError as context_error:
                error = context_error
            else:
                self.retry.record_result(True)
                self._succeeded(endpoint)
                return result
            if isinstance(error, ContextError):
                self._suspect(endpoint, error)
                attempt_expired = (
                    per_try != left and error.code == grpc.StatusCode.DEADLINE_EXCEEDED
                )
                if not attempt_expired:
                    raise self._raise(error)
                # The attempt's own deadline passed, not the caller's: another try
                # is safe unless the request went out and may have been applied.
                reason = "attempt_timeout" if safe or not sent else None
            else:
                if isinstance(error, ClusterUnavailableError):
                    self._failed(endpoint, error)
                reason = retry_reason(error.code, error.details, sent=sent, safe=safe)
            if reason is None:
                if isinstance(error, ClusterUnavailableError):
                    raise self._raise(
                        ClusterUnavailableError(
                            f"{method}: not retried, the write may have been applied: {error}",
                            code=error.code,
                            details=error.details,
                            endpoint=endpoint.address,
                            attempts=attempt,
                        )
                    )
                raise self._raise(error)
            self.retry.record_result(False)
            wait = self.retry.delay(attempt, previous)
            if wait is None:
                if not isinstance(error, ClusterUnavailableError):
                    raise self._raise(error)
                raise self._raise(
                    ClusterUnavailableError(
                        f"{method}: gave up after {attempt} attempts; last: {error}",
                        code=error.code,
                        details=error.details,
                        endpoint=endpoint.address,
                        attempts=attempt,
                    )
                )
            if deadline is not None and self.clock.now() + wait >= deadline:
                raise self._raise(
                    ContextError(
                        f"{method}: deadline exceeded after {attempt} attempts; last: {error}",
                        code=grpc.StatusCode.DEADLINE_EXCEEDED,
                        endpoint=endpoint.address,
                    )
                )
            self.stats.retries[reason] += 1
            previous = wait
            await self.clock.sleep(wait)

    def _per_try(self, left: float | None) -> float | None:
        """An attempt's deadline: what the call has left, bounded by ``attempt_timeout``."""
        limit = self.config.attempt_timeout
        if limit is None:
            return left
        return limit if left is None else min(left, limit)

    async def _attempt_on(
        self, method: str, endpoint: _Endpoint, invoke: Invoke[T], timeout: float | None
    ) -> T:
        """One attempt on a chosen endpoint: no failover, no retry, errors not counted."""
        self.stats.attempts += 1
        if self._on_attempt is not None:
            self._on_attempt(method)
        left = self._per_try(timeout if timeout is not None else self.config.request_timeout)
        try:
            channel = await self._dial(endpoint, left)
            result = await invoke(channel, left)
        except _DialError as dial_error:
            failure: EtcdError = ClusterUnavailableError(
                str(dial_error), endpoint=endpoint.address, attempts=1
            )
        except grpc.aio.AioRpcError as rpc_error:
            failure = from_rpc_error(rpc_error, endpoint.address)
        except ContextError as context_error:
            failure = context_error
        else:
            self._succeeded(endpoint)
            return result
        if isinstance(failure, ClusterUnavailableError):
            self._failed(endpoint, failure)
        elif isinstance(failure, ContextError):
            self._suspect(endpoint, failure)
        raise failure

    async def _hedged(
        self, method: str, invoke: Invoke[T], *, timeout: float | None, hedge_after: float
    ) -> T:
        if timeout is None:
            timeout = self.config.request_timeout
        deadline = None if timeout is None else self.clock.now() + timeout
        primary = asyncio.create_task(self._call(method, invoke, safe=True, timeout=timeout))
        pending: set[asyncio.Task[T]] = {primary}
        try:
            await asyncio.wait(pending, timeout=hedge_after)
            alternative = self._alternative()
            left = None if deadline is None else max(0.0, deadline - self.clock.now())
            # As gRPC hedging (gRFC A6): a primary that already failed on an
            # unavailable endpoint or its attempt deadline is hedged at once.
            failed = primary.done() and isinstance(
                primary.exception(), ClusterUnavailableError | ContextError
            )
            if (not primary.done() or failed) and alternative is not None and left != 0.0:
                self.stats.hedges += 1
                hedge = self._attempt_on(method, alternative, invoke, left)
                pending.add(asyncio.create_task(hedge))
            first_error: BaseException | None = None
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.exception()
                    if error is None:
                        return task.result()
                    if task is primary or first_error is None:
                        first_error = error
            assert first_error is not None
            raise first_error
        finally:
            for task in pending:
                task.cancel()

    def _alternative(self) -> _Endpoint | None:
        """The next endpoint after the current one that has not failed."""
        count = len(self._endpoints)
        for step in range(1, count):
            endpoint = self._endpoints[(self._current + step) % count]
            if not endpoint.status.failing:
                return endpoint
        return None

    def _raise(self, error: EtcdError) -> EtcdError:
        self.stats.errors[type(error).__name__] += 1
        return error

    # -- endpoints -----------------------------------------------------------

    def _endpoint(self, address: str) -> _Endpoint:
        for endpoint in self._endpoints:
            if endpoint.address == address:
                return endpoint
        raise ValueError(f"unknown endpoint {address!r}")

    def _pick(self) -> int:
        """The endpoint for the next attempt: sticky, skipping failed ones."""
        count = len(self._endpoints)
        for step in range(count):
            index = (self._current + step) % count
            if not self._endpoints[index].status.failing:
                break
        else:
            # Everything failed: the one that failed longest ago.
            index = min(
                range(count),
                key=lambda i: (self._endpoints[i].status.last_failure or 0.0, i),
            )
        self._switch(index)
        return index

    def _switch(self, index: int) -> None:
        if index == self._current:
            return
        log.info(
            "%s: switching endpoint %s -> %s",
            self.name,
            self._endpoints[self._current].address,
            self._endpoints[index].address,
        )
        self._current = index
        self._switches += 1
        self._last_switch = self.clock.now()

    def _succeeded(self, endpoint: _Endpoint) -> None:
        status = endpoint.status
        status.last_success = self.clock.now()
        status.consecutive_failures = 0
        status.failing = False

    def _failed(self, endpoint: _Endpoint, error: EtcdError) -> None:
        status = endpoint.status
        status.failures += 1
        status.consecutive_failures += 1
        status.last_failure = self.clock.now()
        status.last_error = str(error)
        status.failing = True
        if self._endpoints[self._current] is endpoint:
            self._pick()
        if endpoint.prober is None and not self._closed:
            endpoint.prober = asyncio.create_task(
                self._probe_until_back(endpoint), name=f"{self.name} probe {endpoint.address}"
            )

    def _suspect(self, endpoint: _Endpoint, error: ContextError) -> None:
        """After an attempt's deadline passed: check the endpoint in the background."""
        if error.code != grpc.StatusCode.DEADLINE_EXCEEDED:
            return
        if endpoint.status.failing or endpoint.checker is not None or self._closed:
            return
        endpoint.checker = asyncio.create_task(
            self._check_suspect(endpoint), name=f"{self.name} check {endpoint.address}"
        )

    async def _check_suspect(self, endpoint: _Endpoint) -> None:
        """Mark ``endpoint`` failed unless it answers Status within keepalive_timeout
        (after a dial within the dial timeout, if its connection is down).

        The bound is the one gRPC keepalive holds a connection to (a ping
        unanswered for ``keepalive_timeout`` closes it), applied at once instead
        of after ``keepalive_time`` of silence. The call goes over the endpoint's
        current connection, the one the timed-out attempt used.
        """
        timeout = self.config.keepalive_timeout
        try:
            channel = await self._dial(endpoint, None)
            await rpc_pb2_grpc.MaintenanceStub(channel).Status(
                rpc_pb2.StatusRequest(), timeout=timeout
            )
        except (_DialError, grpc.aio.AioRpcError) as error:
            if not endpoint.status.failing and not self._closed:
                log.info("%s: endpoint %s fails its check: %s", self.name, endpoint.address, error)
                self._failed(
                    endpoint,
                    ClusterUnavailableError(
                        f"{endpoint.address}: no Status answer within {timeout:g}s "
                        f"after an attempt's deadline passed ({error})",
                        endpoint=endpoint.address,
                    ),
                )
        finally:
            endpoint.checker = None

    async def _probe_until_back(self, endpoint: _Endpoint) -> None:
        """Re-admit a failed endpoint once it answers a Status call again."""
        try:
            while endpoint.status.failing:
                await self.clock.sleep(self.config.endpoint_probe_interval)
                if not endpoint.status.failing:
                    break
                try:
                    channel = await self._dial(endpoint, None, fresh=True)
                    await rpc_pb2_grpc.MaintenanceStub(channel).Status(
                        rpc_pb2.StatusRequest(), timeout=self.config.dial_timeout
                    )
                except (_DialError, ContextError, grpc.aio.AioRpcError) as error:
                    log.debug("%s: probe of %s failed: %s", self.name, endpoint.address, error)
                    continue
                log.info("%s: endpoint %s answers again", self.name, endpoint.address)
                self._succeeded(endpoint)
        finally:
            endpoint.prober = None

    def _stream_failed(self, address: str, error: EtcdError) -> None:
        if isinstance(error, ClusterUnavailableError):
            self._failed(self._endpoint(address), error)

    def _stream_delay(self, failures: int) -> float:
        wait = self._stream_backoff.delay(failures, 0.0)
        return self.config.retry_backoff_cap if wait is None else wait

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _dial(
        self, endpoint: _Endpoint, left: float | None, *, fresh: bool = False
    ) -> grpc.aio.Channel:
        """A READY channel to ``endpoint`` within the dial timeout (and ``left``).

        A channel that is not READY is replaced when ``fresh`` or when the
        endpoint failed since it was created.
        """
        ready = grpc.ChannelConnectivity.READY
        channel = endpoint.channel
        if channel is not None and channel.get_state() != ready:
            failed_since = (endpoint.status.last_failure or 0.0) >= endpoint.channel_created
            if fresh or (endpoint.status.failing and failed_since):
                # A fresh channel skips gRPC's reconnect backoff (up to 120 s), so
                # an endpoint that is back answers the next probe.
                old, channel = channel, None
                self._spawn(old.close())
        if channel is None:
            channel = grpc.aio.insecure_channel(
                endpoint.address, options=self.config.channel_options()
            )
            endpoint.channel = channel
            endpoint.channel_created = self.clock.now()
        state = channel.get_state(try_to_connect=True)
        if state == ready:
            return channel
        limit = self.config.dial_timeout if left is None else min(left, self.config.dial_timeout)
        try:
            async with asyncio.timeout(limit):
                while state != ready:
                    if state in (
                        grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                        grpc.ChannelConnectivity.SHUTDOWN,
                    ):
                        raise _DialError(f"{endpoint.address}: connection failed ({state.name})")
                    await channel.wait_for_state_change(state)
                    state = channel.get_state(try_to_connect=True)
        except TimeoutError:
            if left is not None and left < self.config.dial_timeout:
                raise ContextError(
                    f"{endpoint.address}: deadline exceeded while dialing",
                    code=grpc.StatusCode.DEADLINE_EXCEEDED,
                    endpoint=endpoint.address,
                ) from None
            raise _DialError(
                f"{endpoint.address}: dial timeout ({self.config.dial_timeout:g}s)"
            ) from None
        return channel

    async def _open_stream(self, start: Callable[[grpc.aio.Channel], T]) -> tuple[T, str]:
        """Start a stream on the endpoint a call would use now.

        Raises ClusterUnavailableError when the dial fails (the endpoint is marked failed).
        """
        if self._closed:
            raise ClusterUnavailableError("client is closed")
        endpoint = self._endpoints[self._pick()]
        try:
            channel = await self._dial(endpoint, None)
        except _DialError as dial_error:
            error = ClusterUnavailableError(str(dial_error), endpoint=endpoint.address)
            self._failed(endpoint, error)
            raise error from None
        return start(channel), endpoint.address
