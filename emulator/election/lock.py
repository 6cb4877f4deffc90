"""Resource locks: where a leader election record lives and how it is swapped.

``ResourceLock`` is client-go's ``resourcelock.Interface`` cut down to what the
elector uses. Every write is a compare-and-swap against the revision this lock
last saw, so a writer working from a stale view loses instead of overwriting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from etcdlab.election.record import LeaderElectionRecord
from etcdlab.protos import rpc_pb2


class LockNotFoundError(LookupError):
    """No record exists yet."""


class LockConflictError(RuntimeError):
    """The record changed since this lock last saw it: the swap was refused."""


@dataclass(frozen=True)
class ObservedRecord:
    record: LeaderElectionRecord
    raw: bytes
    """The stored bytes: electors compare these to notice any change."""
    revision: int
    """The key's mod revision when read."""


class ResourceLock(Protocol):
    key: bytes
    """Where the record is stored (what a fenced write compares)."""

    def describe(self) -> str: ...

    @property
    def revision(self) -> int | None:
        """Mod revision of the record as last read or written through this lock."""
        ...

    async def get(self) -> ObservedRecord:
        """The stored record; ``LockNotFoundError`` when there is none."""
        ...

    async def create(self, record: LeaderElectionRecord) -> None:
        """Store the first record; ``LockConflictError`` if one exists."""
        ...

    async def update(self, record: LeaderElectionRecord) -> None:
        """Replace the record if it is still at :attr:`revision`, else
        ``LockConflictError``."""
        ...


class TxnKV(Protocol):
    """The one etcd call a lease lock needs (``EtcdClient`` provides it)."""

    async def txn(
        self,
        compare: Sequence[rpc_pb2.Compare],
        success: Sequence[rpc_pb2.RequestOp],
        failure: Sequence[rpc_pb2.RequestOp] = (),
        *,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> rpc_pb2.TxnResponse: ...


class EtcdLeaseLock:
    """A Lease object in etcd, swapped on its mod revision like the apiserver's
    optimistic concurrency on ``resourceVersion``."""

    def __init__(
        self,
        kv: TxnKV,
        *,
        name: str,
        namespace: str = "kube-system",
        timeout: float | None = None,
    ) -> None:
        self._kv = kv
        self._name = name
        self._namespace = namespace
        self.key = f"/registry/leases/{namespace}/{name}".encode()
        self._timeout = timeout
        self._revision: int | None = None

    def describe(self) -> str:
        return f"{self._namespace}/{self._name}"

    @property
    def revision(self) -> int | None:
        return self._revision

    async def get(self) -> ObservedRecord:
        # A txn without compares is a linearizable read through the same call,
        # repeatable like the Range the apiserver makes for a GET.
        reply = await self._kv.txn(
            [],
            [rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=self.key))],
            idempotent=True,
            timeout=self._timeout,
        )
        kvs = reply.responses[0].response_range.kvs
        if not kvs:
            raise LockNotFoundError(f"no lease record at {self.key.decode()}")
        stored = kvs[0]
        observed = ObservedRecord(
            LeaderElectionRecord.from_lease(stored.value), stored.value, stored.mod_revision
        )
        self._revision = stored.mod_revision
        return observed

    async def create(self, record: LeaderElectionRecord) -> None:
        absent = rpc_pb2.Compare(
            key=self.key,
            target=rpc_pb2.Compare.CREATE,
            result=rpc_pb2.Compare.EQUAL,
            create_revision=0,
        )
        await self._swap(absent, record, "already exists")

    async def update(self, record: LeaderElectionRecord) -> None:
        if self._revision is None:
            raise LockConflictError("update before the record was read or created")
        unchanged = rpc_pb2.Compare(
            key=self.key,
            target=rpc_pb2.Compare.MOD,
            result=rpc_pb2.Compare.EQUAL,
            mod_revision=self._revision,
        )
        await self._swap(unchanged, record, f"changed since revision {self._revision}")

    async def _swap(
        self, compare: rpc_pb2.Compare, record: LeaderElectionRecord, refused: str
    ) -> None:
        value = record.to_lease(self._name, self._namespace)
        put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=self.key, value=value))
        reply = await self._kv.txn([compare], [put], timeout=self._timeout)
        if not reply.succeeded:
            raise LockConflictError(f"lease {self.describe()} {refused}")
        # One put in a txn: the store revision after it is the key's mod revision.
        self._revision = reply.header.revision
