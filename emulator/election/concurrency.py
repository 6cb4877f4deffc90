"""etcd's own election (``client/v3/concurrency`` ``Election``) on ``EtcdClient``.

A candidate puts ``<prefix>/<lease id in hex>`` bound to its lease; candidates
queue by the create revision of their keys, and each waits (on a watch, never
a poll) until every key created before its own is deleted. The leader's key's
create revision is its fencing token. Leadership ends when the leader resigns
(deletes its key) or its lease is lost, which also makes etcd delete the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import Any

from etcdlab.client.etcd import EtcdClient, prefix_end
from etcdlab.client.lease import Lease
from etcdlab.common.clock import Clock, MonotonicClock
from etcdlab.election.elector import LeadershipListener
from etcdlab.election.safety import Fence
from etcdlab.protos import kv_pb2, rpc_pb2

log = logging.getLogger(__name__)


class ElectionError(RuntimeError):
    """Base of the election's own errors."""


class NotLeaderError(ElectionError):
    """The operation needs leadership this election does not hold."""


class NoLeaderError(ElectionError):
    """Nobody holds the election right now."""


class LeaseLostError(ElectionError):
    """The campaign's lease was lost: its key is gone or about to be."""


class Election:
    """One candidate in the election under ``prefix`` holding ``lease`` (its session)."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: bytes,
        lease: Lease,
        *,
        identity: str = "",
        clock: Clock | None = None,
        listener: LeadershipListener | None = None,
    ) -> None:
        if not prefix:
            raise ValueError("prefix must not be empty")
        self._client = client
        self._prefix = prefix.rstrip(b"/") + b"/"
        self._lease = lease
        self.identity = identity or f"{lease.id:x}"
        self._clock = clock or MonotonicClock()
        self._listener = listener
        self.key: bytes = b""
        """This candidate's key once campaigning; empty otherwise."""
        self.rev = 0
        """Create revision of :attr:`key`: the fencing token once elected."""
        self._leading = False
        self._lost_watcher: asyncio.Task[None] | None = None

    @property
    def lease(self) -> Lease:
        """The session lease this candidacy is bound to."""
        return self._lease

    @property
    def leading(self) -> bool:
        """Elected, not resigned, and the lease not known to be lost."""
        return self._leading and self._lease.alive

    def fence(self) -> Fence:
        if not self._leading:
            raise NotLeaderError(f"{self.identity} is not the leader")
        return Fence.on_leader_key(self.key, self.rev)

    async def campaign(self, value: bytes) -> None:
        """Block until elected. Cancelling it withdraws the candidacy.

        Raises ``LeaseLostError`` if the lease is lost meanwhile, and the client's
        errors if etcd cannot be reached.
        """
        key = self._prefix + f"{self._lease.id:x}".encode()
        absent = rpc_pb2.Compare(
            key=key, target=rpc_pb2.Compare.CREATE, result=rpc_pb2.Compare.EQUAL, create_revision=0
        )
        put = rpc_pb2.PutRequest(key=key, value=value, lease=self._lease.id)
        # Known before the txn: a campaign cancelled while the put is in flight
        # cannot tell whether it was applied, and must still withdraw the key.
        self.key = key
        try:
            # Compare-guarded, so a repeat of an applied put would land in the
            # failure branch and find our key; like clientv3's Txn it is not
            # repeated after UNAVAILABLE, and the campaign fails instead.
            reply = await self._client.txn(
                [absent],
                [rpc_pb2.RequestOp(request_put=put)],
                [rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))],
            )
            self.rev = reply.header.revision
            if not reply.succeeded:
                existing = reply.responses[0].response_range.kvs[0]
                self.rev = existing.create_revision
                if existing.value != value:
                    await self._put_value(value)
            await self._unless_lease_lost(self._wait_predecessors_deleted(self.rev - 1))
            mine = await self._first(descending=False, max_create_revision=self.rev, key=self.key)
            if mine is None or mine.create_revision != self.rev:
                raise LeaseLostError(f"{self.identity}: key {key.decode()} vanished")
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._delete_own_key())
            self.key, self.rev = b"", 0
            raise
        self._leading = True
        if self._listener is not None:
            self._listener.started_leading(self.identity, self._clock.now(), self.rev)
        self._lost_watcher = asyncio.create_task(self._report_lease_loss())

    async def proclaim(self, value: bytes) -> None:
        """Change the leader's value without a new election."""
        if not self._leading:
            raise NotLeaderError(f"{self.identity} is not the leader")
        await self._put_value(value)

    async def resign(self) -> None:
        """Give up leadership (or candidacy) by deleting this candidate's key."""
        was_leading = self._leading
        self._leading = False
        if self._lost_watcher is not None:
            self._lost_watcher.cancel()
            self._lost_watcher = None
        if was_leading and self._listener is not None:
            self._listener.stopped_leading(self.identity, self._clock.now())
        if self.key:
            await self._delete_own_key()
        self.key, self.rev = b"", 0

    async def leader(self) -> kv_pb2.KeyValue:
        """The current leader's key (oldest key under the prefix)."""
        first = await self._first(descending=False)
        if first is None:
            raise NoLeaderError(f"no leader under {self._prefix.decode()}")
        return first

    async def observe(self) -> AsyncGenerator[kv_pb2.KeyValue, None]:
        """Every leader in turn, and each new value a leader proclaims.

        Like etcd's ``Observe`` it may skip leaders that came and went quickly,
        but always yields the newest one.
        """
        while True:
            first, revision = await self._first_with_revision(descending=False)
            if first is None:
                first, revision = await self._next_put(self._prefix, revision + 1, prefix=True)
            yield first
            async for kv in self._puts_until_deleted(first.key, revision + 1):
                yield kv

    # -- internals -------------------------------------------------------------

    async def _put_value(self, value: bytes) -> None:
        still_mine = rpc_pb2.Compare(
            key=self.key,
            target=rpc_pb2.Compare.CREATE,
            result=rpc_pb2.Compare.EQUAL,
            create_revision=self.rev,
        )
        put = rpc_pb2.PutRequest(key=self.key, value=value, lease=self._lease.id)
        reply = await self._client.txn([still_mine], [rpc_pb2.RequestOp(request_put=put)])
        if not reply.succeeded:
            self._leading = False
            raise NotLeaderError(f"{self.identity}: key {self.key.decode()} is gone")

    async def _delete_own_key(self) -> None:
        # Guarded by our lease rather than a create revision, which a campaign
        # cancelled mid-put never learnt; the key's name is the lease ID, so only
        # this candidate's lease can be attached to it.
        still_mine = rpc_pb2.Compare(
            key=self.key,
            target=rpc_pb2.Compare.LEASE,
            result=rpc_pb2.Compare.EQUAL,
            lease=self._lease.id,
        )
        delete = rpc_pb2.DeleteRangeRequest(key=self.key)
        await self._client.txn(
            [still_mine],
            [rpc_pb2.RequestOp(request_delete_range=delete)],
            timeout=self._lease.ttl,
        )

    async def _wait_predecessors_deleted(self, max_create_revision: int) -> None:
        while True:
            last, revision = await self._first_with_revision(
                descending=True, max_create_revision=max_create_revision
            )
            if last is None:
                return
            await self._wait_deleted(last.key, revision + 1)

    async def _first(
        self, *, descending: bool, max_create_revision: int = 0, key: bytes | None = None
    ) -> kv_pb2.KeyValue | None:
        first, _ = await self._first_with_revision(
            descending=descending, max_create_revision=max_create_revision, key=key
        )
        return first

    async def _first_with_revision(
        self, *, descending: bool, max_create_revision: int = 0, key: bytes | None = None
    ) -> tuple[kv_pb2.KeyValue | None, int]:
        """The oldest (or newest) key under the prefix, with the read's revision."""
        request = rpc_pb2.RangeRequest(
            key=key or self._prefix,
            range_end=b"" if key else prefix_end(self._prefix),
            limit=1,
            sort_target=rpc_pb2.RangeRequest.CREATE,
            sort_order=rpc_pb2.RangeRequest.DESCEND if descending else rpc_pb2.RangeRequest.ASCEND,
            max_create_revision=max_create_revision,
        )
        # EtcdClient.get has no sort options; a compare-free txn is the same read.
        reply = await self._client.txn(
            [], [rpc_pb2.RequestOp(request_range=request)], idempotent=True
        )
        kvs = reply.responses[0].response_range.kvs
        return (kvs[0] if kvs else None), reply.header.revision

    async def _wait_deleted(self, key: bytes, start_revision: int) -> None:
        watch = self._client.watch(key, start_revision=start_revision)
        try:
            async for batch in watch:
                if any(event.type == kv_pb2.Event.DELETE for event in batch.events):
                    return
        finally:
            await watch.cancel()

    async def _next_put(
        self, key: bytes, start_revision: int, *, prefix: bool
    ) -> tuple[kv_pb2.KeyValue, int]:
        watch = self._client.watch(
            key, range_end=prefix_end(key) if prefix else b"", start_revision=start_revision
        )
        try:
            async for batch in watch:
                for event in batch.events:
                    if event.type == kv_pb2.Event.PUT:
                        return event.kv, event.kv.mod_revision
        finally:
            await watch.cancel()
        raise ElectionError("watch ended")

    async def _puts_until_deleted(
        self, key: bytes, start_revision: int
    ) -> AsyncIterator[kv_pb2.KeyValue]:
        watch = self._client.watch(key, start_revision=start_revision)
        try:
            async for batch in watch:
                for event in batch.events:
                    if event.type == kv_pb2.Event.DELETE:
                        return
                    yield event.kv
        finally:
            await watch.cancel()

    async def _unless_lease_lost(self, waiting: Coroutine[Any, Any, None]) -> None:
        wait = asyncio.ensure_future(waiting)
        lost = asyncio.ensure_future(self._lease.lost.wait())
        try:
            await asyncio.wait((wait, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not wait.done():
                wait.cancel()
                await asyncio.wait((wait,))
        if wait.cancelled() or not wait.done():
            raise LeaseLostError(f"{self.identity}: lease {self._lease.id:x} lost while waiting")
        wait.result()

    async def _report_lease_loss(self) -> None:
        await self._lease.lost.wait()
        if self._leading:
            self._leading = False
            log.info("%s: lease lost, no longer leading", self.identity)
            if self._listener is not None:
                self._listener.stopped_leading(self.identity, self._clock.now())
