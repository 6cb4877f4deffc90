"""Leases with background keep-alive over one shared stream, and local reaping.

Every live lease is kept alive every TTL/3 over a single ``LeaseKeepAlive``
stream (the way etcd's clientv3 does it). Each lease carries a local deadline:
the send time of the keep-alive that was answered plus the TTL the server
granted. When the deadline passes without an answer the lease is reported lost
(``lease.lost`` is set and ``on_lost`` runs) even if the network never reports
an error, e.g. while the member is SIGSTOPped or a link silently drops packets.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import grpc

from etcdlab.client.connection import Route
from etcdlab.client.errors import EtcdError, from_rpc_error
from etcdlab.common.clock import Clock
from etcdlab.protos import rpc_pb2

log = logging.getLogger(__name__)

LostCallback = Callable[["Lease"], None]


class KeepAliveStream(Protocol):
    """The part of a ``grpc.aio`` LeaseKeepAlive call the keeper uses."""

    async def write(self, request: rpc_pb2.LeaseKeepAliveRequest) -> None: ...

    async def read(self) -> object: ...

    def cancel(self) -> bool: ...


# Opens a stream over a ready connection; returns it with the route it went over.
StreamOpener = Callable[[], Awaitable[tuple[KeepAliveStream, Route]]]


class Lease:
    """A granted lease. ``deadline`` is on the keeper's clock."""

    def __init__(
        self,
        lease_id: int,
        ttl: int,
        granted_at: float,
        *,
        revoke: Callable[[Lease, float | None], Awaitable[None]],
        on_lost: LostCallback | None = None,
    ) -> None:
        self.id = lease_id
        self.ttl = ttl
        # Counted from before the grant was sent: the server's clock started later.
        self.deadline = granted_at + ttl
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None
        self.revoked = False
        self.keepalives_sent = 0
        self.keepalives_answered = 0
        self._revoke = revoke
        self._on_lost = on_lost
        self._next_send = granted_at + ttl / 3
        self._pending: collections.deque[float] = collections.deque()

    @property
    def alive(self) -> bool:
        return not self.lost.is_set() and not self.revoked

    async def revoke(self, *, timeout: float | None = None) -> None:
        """Revoke the lease on the server and stop keeping it alive.

        Raises the client's errors (ContextError, ClusterUnavailableError,
        ResponseError) if the revoke could not be delivered; the lease is no
        longer kept alive either way.
        """
        if self.revoked:
            return
        self.revoked = True
        await self._revoke(self, timeout)

    def _mark_lost(self, reason: str) -> None:
        if self.lost.is_set() or self.revoked:
            return
        self.lost_reason = reason
        self.lost.set()
        log.info("lease %x lost: %s", self.id, reason)
        if self._on_lost is not None:
            self._on_lost(self)

    def __repr__(self) -> str:
        state = "revoked" if self.revoked else ("lost" if self.lost.is_set() else "alive")
        return f"Lease(id={self.id:#x}, ttl={self.ttl}, {state})"


class LeaseKeeper:
    """Keeps leases alive over one stream and reaps those whose deadline passed.

    Timing runs on the injected clock; the stream comes from ``open_stream``,
    reopened ``retry_wait`` seconds after it fails (clientv3's ``retryConnWait``).
    """

    def __init__(self, clock: Clock, open_stream: StreamOpener, *, retry_wait: float) -> None:
        self.clock = clock
        self._open_stream = open_stream
        self._retry_wait = retry_wait
        self._leases: dict[int, Lease] = {}
        self._stream: KeepAliveStream | None = None
        self._outbox: asyncio.Queue[int] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._timer_loop(), name="lease-timer"),
            asyncio.create_task(self._stream_loop(), name="lease-stream"),
            asyncio.create_task(self._writer_loop(), name="lease-writer"),
        ]

    @property
    def leases(self) -> list[Lease]:
        return list(self._leases.values())

    def add(self, lease: Lease) -> None:
        self._leases[lease.id] = lease
        self._changed.set()

    def discard(self, lease: Lease) -> None:
        self._leases.pop(lease.id, None)
        self._changed.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    def on_response(self, response: rpc_pb2.LeaseKeepAliveResponse) -> None:
        lease = self._leases.get(response.ID)
        if lease is None:
            return
        sent_at = lease._pending.popleft() if lease._pending else self.clock.now()
        lease.keepalives_answered += 1
        if response.TTL <= 0:
            self.discard(lease)
            lease._mark_lost("lease expired on the server (keep-alive answered with TTL 0)")
            return
        lease.deadline = max(lease.deadline, sent_at + response.TTL)
        self._changed.set()

    def reap_and_send(self) -> float | None:
        """One pass: report expired leases, queue due keep-alives; returns the next wake-up."""
        now = self.clock.now()
        wake: float | None = None
        for lease in list(self._leases.values()):
            if lease.revoked:
                self.discard(lease)
                continue
            if now >= lease.deadline:
                self.discard(lease)
                lease._mark_lost(f"no keep-alive answer before the deadline ({lease.ttl}s TTL)")
                continue
            if now >= lease._next_send:
                lease._next_send = now + lease.ttl / 3
                if self._stream is not None:
                    lease._pending.append(now)
                    lease.keepalives_sent += 1
                    self._outbox.put_nowait(lease.id)
            due = min(lease.deadline, lease._next_send)
            wake = due if wake is None else min(wake, due)
        return wake

    async def _timer_loop(self) -> None:
        while True:
            self._changed.clear()
            wake = self.reap_and_send()
            waiters: set[asyncio.Task[object]] = {asyncio.create_task(self._changed.wait())}
            if wake is not None:
                waiters.add(asyncio.create_task(self.clock.sleep(wake - self.clock.now())))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def _writer_loop(self) -> None:
        while True:
            lease_id = await self._outbox.get()
            stream = self._stream
            if stream is None:
                continue
            try:
                await stream.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))
            except (grpc.RpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
                # The reader sees the same failure and reopens the stream.
                continue

    def _reset_schedule(self) -> None:
        # Requests queued for the old stream would be answered without a send time.
        while not self._outbox.empty():
            self._outbox.get_nowait()
        now = self.clock.now()
        for lease in self._leases.values():
            lease._pending.clear()
            lease._next_send = now
        self._changed.set()

    async def _stream_loop(self) -> None:
        while True:
            try:
                stream, route = await self._open_stream()
            except EtcdError as error:
                log.debug("lease keep-alive stream could not open: %s", error)
                await self.clock.sleep(self._retry_wait)
                continue
            self._stream = stream
            self._reset_schedule()
            try:
                while True:
                    response = await stream.read()
                    if response is grpc.aio.EOF:
                        break
                    if isinstance(response, rpc_pb2.LeaseKeepAliveResponse):
                        self.on_response(response)
            except grpc.aio.AioRpcError as error:
                route.failed(from_rpc_error(error, route.address))
            finally:
                self._stream = None
                stream.cancel()
            await self.clock.sleep(self._retry_wait)
