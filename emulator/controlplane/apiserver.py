"""An emulated kube-apiserver: objects as JSON in etcd, a watch cache in front.

Objects live at ``/registry/<kind>/<name>``; their ``revision`` is the key's mod
revision (Kubernetes' ``resourceVersion``), and updates are compare-and-swap on it.

The :class:`WatchCache` lists the registry once, then follows one etcd watch
with progress notifications. Reads are served from it while it is fresh (an
event or progress notification arrived within ``CacheConfig.freshness``) and fall
through to etcd otherwise; watches of the registry are fanned out from it, from
a bounded history, so a watcher that fell too far behind gets :class:`Gone` and
must relist, like a 410 from the real apiserver.

Every request is recorded (latency, error class, whether the cache answered,
which member served it) and counted against the reconcile that made it
(:func:`count_ops`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from etcdlab.client.calls import served_by
from etcdlab.client.errors import (
    ClusterUnavailableError,
    CompactedError,
    ContextError,
    EtcdError,
    ResponseError,
)
from etcdlab.client.etcd import EtcdClient, prefix_end
from etcdlab.common.clock import Clock
from etcdlab.common.timeline import ErrorClass, EventKind
from etcdlab.common.timescale import TimeScale
from etcdlab.controlplane.listener import PlaneListener
from etcdlab.protos import kv_pb2, rpc_pb2

REGISTRY = b"/registry/"


class Conflict(Exception):
    """The object changed since it was read (or exists already, on create)."""


class Gone(Exception):
    """The requested watch revision is older than the cache's history: relist."""


@dataclass(frozen=True)
class Object:
    kind: str
    name: str
    spec: dict[str, Any]
    revision: int = 0

    @property
    def key(self) -> bytes:
        return object_key(self.kind, self.name)

    @property
    def owner(self) -> str | None:
        owner = self.spec.get("owner")
        return owner if isinstance(owner, str) else None


@dataclass(frozen=True)
class WatchEvent:
    type: Literal["put", "delete"]
    object: Object


def object_key(kind: str, name: str) -> bytes:
    return f"/registry/{kind}/{name}".encode()


def kind_prefix(kind: str) -> bytes:
    return f"/registry/{kind}/".encode()


def decode(kv: kv_pb2.KeyValue) -> Object:
    _, _, kind, name = kv.key.decode().split("/", 3)
    spec = json.loads(kv.value) if kv.value else {}
    return Object(kind, name, spec, kv.mod_revision)


def encode(spec: dict[str, Any]) -> bytes:
    return json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()


def error_class(error: BaseException) -> ErrorClass:
    # A cancelled call is one its caller abandoned (a deadline of its own, or
    # the caller stopped): Go's context deadline or cancellation.
    if isinstance(error, ContextError | TimeoutError | asyncio.CancelledError):
        return ErrorClass.CONTEXT
    if isinstance(error, ClusterUnavailableError):
        return ErrorClass.CLUSTER
    if isinstance(error, ResponseError | CompactedError):
        return ErrorClass.RESPONSE
    return ErrorClass.OTHER


_ops: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("ops", default=None)


@contextlib.contextmanager
def count_ops() -> Iterator[list[int]]:
    """Count the apiserver requests made in this context (``counter[0]``)."""
    counter = [0]
    token = _ops.set(counter)
    try:
        yield counter
    finally:
        _ops.reset(token)


@dataclass(frozen=True)
class CacheConfig:
    """``freshness``: how long after the last event or progress notification the
    cache still answers reads (etcd sends progress every
    ``--experimental-watch-progress-notify-interval``, so this must exceed it).
    ``history``: events kept for watchers that resume. ``relist_backoff``: pause
    before relisting after the cache's own watch was compacted away."""

    freshness: float = 5.0
    history: int = 5000
    relist_backoff: float = 1.0

    def __post_init__(self) -> None:
        if self.freshness <= 0:
            raise ValueError("freshness must be positive")
        if self.history < 1:
            raise ValueError("history must be at least 1")
        if self.relist_backoff <= 0:
            raise ValueError("relist_backoff must be positive")

    def scaled(self, time_scale: float) -> CacheConfig:
        scale = TimeScale(time_scale)
        return replace(
            self,
            freshness=scale.scaled(self.freshness),
            relist_backoff=scale.scaled(self.relist_backoff),
        )


class WatchCache:
    """The registry mirrored from one etcd watch; see the module docstring."""

    def __init__(
        self,
        client: EtcdClient,
        clock: Clock,
        config: CacheConfig | None = None,
        listener: PlaneListener | None = None,
        name: str = "watch-cache",
    ) -> None:
        self.client = client
        self.config = config or CacheConfig()
        self.name = name
        self._clock = clock
        self._listener = listener
        self.objects: dict[bytes, Object] = {}
        self.revision = 0
        self.last_update: float | None = None
        self.ready = asyncio.Event()
        self._history: collections.deque[tuple[int, WatchEvent]] = collections.deque(
            maxlen=self.config.history
        )
        self._oldest = 0  # events after this revision are all in the history
        self._subscribers: set[asyncio.Queue[WatchEvent | Gone]] = set()

    @property
    def watchers(self) -> int:
        return len(self._subscribers)

    @property
    def fresh(self) -> bool:
        return (
            self.last_update is not None
            and self._clock.now() - self.last_update <= self.config.freshness
        )

    async def run(self) -> None:
        while True:
            try:
                await self._list()
                watch = self.client.watch(
                    REGISTRY,
                    range_end=prefix_end(REGISTRY),
                    start_revision=self.revision + 1,
                    progress_notify=True,
                )
                try:
                    async for batch in watch:
                        for event in batch.events:
                            self._apply(event)
                        self.revision = max(self.revision, batch.revision)
                        self.last_update = self._clock.now()
                finally:
                    await watch.cancel()
            except EtcdError:
                if self._listener is not None:
                    self._listener.event(self.name, EventKind.RELIST)
                self._drop_subscribers()
                await self._clock.sleep(self.config.relist_backoff)

    async def _list(self) -> None:
        reply = await self.client.get(REGISTRY, range_end=prefix_end(REGISTRY))
        self.objects = {kv.key: decode(kv) for kv in reply.kvs}
        self.revision = reply.header.revision
        self._history.clear()
        self._oldest = self.revision
        self.last_update = self._clock.now()
        self.ready.set()

    def _apply(self, event: kv_pb2.Event) -> None:
        if event.type == kv_pb2.Event.DELETE:
            previous = self.objects.pop(event.kv.key, None)
            if previous is None:
                return
            change = WatchEvent("delete", replace(previous, revision=event.kv.mod_revision))
        else:
            obj = decode(event.kv)
            self.objects[event.kv.key] = obj
            change = WatchEvent("put", obj)
        if len(self._history) == self._history.maxlen:
            self._oldest = self._history[0][0]
        self._history.append((event.kv.mod_revision, change))
        for queue in self._subscribers:
            queue.put_nowait(change)

    def _drop_subscribers(self) -> None:
        for queue in self._subscribers:
            queue.put_nowait(Gone("watch cache relisted"))
        self._subscribers.clear()

    def list(self, kind: str) -> tuple[list[Object], int]:
        prefix = kind_prefix(kind)
        return [o for k, o in self.objects.items() if k.startswith(prefix)], self.revision

    def get(self, kind: str, name: str) -> Object | None:
        return self.objects.get(object_key(kind, name))

    async def subscribe(self, kind: str, from_revision: int) -> AsyncGenerator[WatchEvent, None]:
        """Events of ``kind`` with revision >= ``from_revision``; raises :class:`Gone`."""
        await self.ready.wait()
        if from_revision <= self._oldest:
            raise Gone(f"revision {from_revision} is older than the cache's history")
        queue: asyncio.Queue[WatchEvent | Gone] = asyncio.Queue()
        for revision, change in self._history:
            if revision >= from_revision:
                queue.put_nowait(change)
        self._subscribers.add(queue)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Gone):
                    raise item
                if item.object.kind == kind and item.object.revision >= from_revision:
                    yield item
        finally:
            self._subscribers.discard(queue)


class APIServer:
    """CRUD and watch on registry objects through one etcd client (see module doc)."""

    def __init__(
        self,
        name: str,
        client: EtcdClient,
        clock: Clock,
        listener: PlaneListener | None = None,
        cache: WatchCache | None = None,
    ) -> None:
        self.name = name
        self.client = client
        self.cache = cache
        self._clock = clock
        self._listener = listener

    def _record(
        self,
        op: str,
        started: float,
        error: BaseException | None = None,
        source: str = "etcd",
        member: str | None = None,
    ) -> None:
        counter = _ops.get()
        if counter is not None and source == "etcd":
            counter[0] += 1
        if self._listener is not None:
            self._listener.request(
                self.name,
                op,
                self._clock.now() - started,
                None if error is None else error_class(error),
                source,
                member,
            )

    @contextlib.asynccontextmanager
    async def _request(self, op: str) -> AsyncIterator[None]:
        started = self._clock.now()
        with served_by() as served:
            try:
                yield
            except (EtcdError, Conflict, asyncio.CancelledError) as error:
                # A conflict is the apiserver answering correctly: not an etcd failure.
                # A cancelled call is recorded too, with the time until it was
                # abandoned: the elector gives up a lock request at its request
                # timeout or renew deadline by cancelling it, where the Go
                # reference's request returns a context error it records.
                failure = None if isinstance(error, Conflict) else error
                self._record(op, started, failure, member=served.endpoint)
                raise
        self._record(op, started, member=served.endpoint)

    async def list(self, kind: str) -> tuple[list[Object], int]:
        if self.cache is not None and self.cache.fresh:
            self._record("list", self._clock.now(), source="cache")
            return self.cache.list(kind)
        async with self._request("list"):
            prefix = kind_prefix(kind)
            reply = await self.client.get(prefix, range_end=prefix_end(prefix))
        return [decode(kv) for kv in reply.kvs], reply.header.revision

    async def get(self, kind: str, name: str) -> Object | None:
        if self.cache is not None and self.cache.fresh:
            self._record("get", self._clock.now(), source="cache")
            return self.cache.get(kind, name)
        async with self._request("get"):
            reply = await self.client.get(object_key(kind, name))
        return decode(reply.kvs[0]) if reply.kvs else None

    async def create(self, kind: str, name: str, spec: dict[str, Any]) -> Object:
        key = object_key(kind, name)
        absent = rpc_pb2.Compare(
            key=key, target=rpc_pb2.Compare.CREATE, result=rpc_pb2.Compare.EQUAL, create_revision=0
        )
        return await self._swap("create", Object(kind, name, spec), absent)

    async def update(self, current: Object, spec: dict[str, Any]) -> Object:
        unchanged = rpc_pb2.Compare(
            key=current.key,
            target=rpc_pb2.Compare.MOD,
            result=rpc_pb2.Compare.EQUAL,
            mod_revision=current.revision,
        )
        return await self._swap("update", replace(current, spec=spec), unchanged)

    async def delete(self, obj: Object) -> None:
        unchanged = rpc_pb2.Compare(
            key=obj.key,
            target=rpc_pb2.Compare.MOD,
            result=rpc_pb2.Compare.EQUAL,
            mod_revision=obj.revision,
        )
        remove = rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=obj.key))
        async with self._request("delete"):
            reply = await self.client.txn([unchanged], [remove])
            if not reply.succeeded:
                raise Conflict(f"{obj.kind}/{obj.name} changed since revision {obj.revision}")

    async def _swap(self, op: str, obj: Object, guard: rpc_pb2.Compare) -> Object:
        put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=obj.key, value=encode(obj.spec)))
        async with self._request(op):
            reply = await self.client.txn([guard], [put])
            if not reply.succeeded:
                raise Conflict(f"{op} of {obj.kind}/{obj.name} refused: it changed")
        return replace(obj, revision=reply.header.revision)

    async def txn(
        self,
        compare: Sequence[rpc_pb2.Compare],
        success: Sequence[rpc_pb2.RequestOp],
        failure: Sequence[rpc_pb2.RequestOp] = (),
        *,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> rpc_pb2.TxnResponse:
        """A raw transaction (the leader-election lock reads and writes its Lease
        through it; its reads say ``idempotent``, as the GET they stand for is
        a repeatable Range to clientv3)."""
        async with self._request("txn"):
            return await self.client.txn(
                compare, success, failure, idempotent=idempotent, timeout=timeout
            )

    async def watch(self, kind: str, from_revision: int) -> AsyncGenerator[WatchEvent, None]:
        """Changes of ``kind`` from ``from_revision`` on; raises :class:`Gone` when
        that revision is no longer available (the caller relists)."""
        if self.cache is not None:
            async for change in self.cache.subscribe(kind, from_revision):
                yield change
            return
        prefix = kind_prefix(kind)
        known: dict[bytes, Object] = {}
        watch = self.client.watch(
            prefix, range_end=prefix_end(prefix), start_revision=from_revision
        )
        try:
            async for batch in watch:
                for event in batch.events:
                    if event.type == kv_pb2.Event.DELETE:
                        gone = known.pop(event.kv.key, None) or Object(
                            kind, event.kv.key.decode().rsplit("/", 1)[-1], {}
                        )
                        yield WatchEvent("delete", replace(gone, revision=event.kv.mod_revision))
                    else:
                        obj = decode(event.kv)
                        known[event.kv.key] = obj
                        yield WatchEvent("put", obj)
        except CompactedError as error:
            raise Gone(str(error)) from error
        finally:
            await watch.cancel()
