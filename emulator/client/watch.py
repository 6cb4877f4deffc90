"""Watches as clientv3 keeps them: an async iterator of event batches.

The watch remembers the next revision it needs (last delivered event's
revision + 1, or a progress notification's revision + 1). When its stream
fails as unavailable (the connection was lost, a keepalive timed out), it
reopens over whatever connection the balancer picks, after a wait that starts
at 1 ms and grows by a quarter per failure up to a cap (clientv3's
``watchGRPCStream``), and asks to start at exactly that revision, so no event
is lost or delivered twice.

The client opens watch streams with etcd's ``hasleader`` metadata (clientv3
``WithRequireLeader``, as the apiserver uses it), so a member cut off from the
leader ends the stream with "etcdserver: no leader" instead of silently
delivering nothing. clientv3 then closes the watch: iteration raises
:class:`ClusterUnavailableError`, and the caller watches again (the apiserver's
watch cache relists). Iteration also ends with :class:`CompactedError` when the
revision it needs was compacted, and with the server's error for any other
cancellation or failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from etcdlab.client.connection import Route
from etcdlab.client.errors import (
    ClusterUnavailableError,
    CompactedError,
    EtcdError,
    ResponseError,
    from_rpc_error,
)
from etcdlab.common.clock import Clock
from etcdlab.protos import kv_pb2, rpc_pb2

log = logging.getLogger(__name__)


class WatchStream(Protocol):
    """The part of a ``grpc.aio`` Watch call a watch uses."""

    async def write(self, request: rpc_pb2.WatchRequest) -> None: ...

    async def read(self) -> object: ...

    def cancel(self) -> bool: ...


# Opens a stream over a ready connection; returns it with the route it went over.
StreamOpener = Callable[[], Awaitable[tuple[WatchStream, Route]]]
# Stream failures that reopen the stream (clientv3's isHaltErr is false for them).
_REOPEN = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL})


@dataclass(frozen=True)
class WatchBatch:
    """Events of one watch response. ``revision`` is the store revision of the
    response header; a progress notification has no events and says every event
    up to ``revision`` has been delivered (the apiserver's bookmark)."""

    events: tuple[kv_pb2.Event, ...]
    revision: int
    is_progress_notify: bool


class _End:
    pass


_END = _End()


class Watch:
    """An async iterator of :class:`WatchBatch`; ``await watch.cancel()`` ends it.

    See the module docstring for what ends iteration with an error; streams
    that fail as unavailable are reopened until then, or until cancelled.
    """

    def __init__(
        self,
        open_stream: StreamOpener,
        key: bytes,
        *,
        range_end: bytes = b"",
        start_revision: int = 0,
        progress_notify: bool = False,
        prev_kv: bool = False,
        clock: Clock,
        backoff: Callable[[int], float],
    ) -> None:
        if start_revision < 0:
            raise ValueError("start_revision must not be negative")
        self.key = key
        self.range_end = range_end
        self.progress_notify = progress_notify
        self.prev_kv = prev_kv
        self.next_revision = start_revision
        """Revision the watch resumes from; 0 until the first stream is created
        when watching from "now"."""
        self.resumes = 0
        self.endpoint: str | None = None
        self._open_stream = open_stream
        self._clock = clock
        self._backoff = backoff
        self._queue: asyncio.Queue[WatchBatch | BaseException | _End] = asyncio.Queue()
        self._finished = False
        self.created = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"watch {key!r}")

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchBatch:
        if self._finished:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _End):
            self._finished = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        return item

    async def cancel(self) -> None:
        """Stop watching; iteration ends after the batches already received."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._queue.put_nowait(_END)

    def _create_request(self) -> rpc_pb2.WatchRequest:
        return rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(
                key=self.key,
                range_end=self.range_end,
                start_revision=self.next_revision,
                progress_notify=self.progress_notify,
                prev_kv=self.prev_kv,
            )
        )

    async def _run(self) -> None:
        failures = 0
        try:
            while True:
                stream, route = await self._open_stream()
                self.endpoint = route.address
                try:
                    await stream.write(self._create_request())
                    await self._consume(stream)
                except grpc.aio.AioRpcError as rpc_error:
                    error = from_rpc_error(rpc_error, route.address)
                    route.failed(error)
                    if "no leader" in error.details:
                        raise ClusterUnavailableError(
                            f"watch closed: {error}",
                            code=error.code,
                            details=error.details,
                            endpoint=route.address,
                        ) from None
                    if error.code not in _REOPEN:
                        raise error from None
                    if error.code == grpc.StatusCode.UNAVAILABLE:
                        failures += 1
                        await self._clock.sleep(self._backoff(failures))
                finally:
                    stream.cancel()
                self.resumes += 1
        except EtcdError as error:
            self._queue.put_nowait(error)
        except Exception as error:
            # Whatever ends the watch must reach the consumer, not hang it.
            log.exception("watch on %r failed", self.key)
            self._queue.put_nowait(error)

    async def _consume(self, stream: WatchStream) -> None:
        """Deliver responses until the stream ends (raises what ends the watch)."""
        while True:
            response = await stream.read()
            if not isinstance(response, rpc_pb2.WatchResponse):
                return
            if response.compact_revision:
                raise CompactedError(response.compact_revision, endpoint=self.endpoint)
            if response.canceled:
                reason = response.cancel_reason
                if "no leader" in reason:
                    raise ClusterUnavailableError(
                        f"watch canceled: {reason}",
                        code=grpc.StatusCode.UNAVAILABLE,
                        details=reason,
                        endpoint=self.endpoint,
                    )
                raise ResponseError(
                    f"watch canceled: {reason}", details=reason, endpoint=self.endpoint
                )
            if response.created:
                if self.next_revision == 0:
                    self.next_revision = response.header.revision + 1
                self.created.set()
                continue
            self._deliver(response)

    def _deliver(self, response: rpc_pb2.WatchResponse) -> None:
        if not response.events:
            # A progress notification: everything up to this revision was sent.
            self.next_revision = max(self.next_revision, response.header.revision + 1)
            self._queue.put_nowait(
                WatchBatch(events=(), revision=response.header.revision, is_progress_notify=True)
            )
            return
        # A resumed stream starts at next_revision, so this filter only guards
        # against a server replaying what was already delivered.
        fresh = tuple(e for e in response.events if e.kv.mod_revision >= self.next_revision)
        self.next_revision = max(self.next_revision, response.events[-1].kv.mod_revision + 1)
        if fresh:
            self._queue.put_nowait(
                WatchBatch(
                    events=fresh, revision=response.header.revision, is_progress_notify=False
                )
            )
