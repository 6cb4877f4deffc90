"""Resumable watches: an async iterator of event batches that survives endpoint loss.

The watch remembers the next revision it needs (last delivered event's
revision + 1, or a progress notification's revision + 1). When its stream
fails, it reopens on whatever endpoint the client picks and asks to start at
exactly that revision, so no event is lost or delivered twice. If that revision
has been compacted meanwhile, iteration raises :class:`CompactedError`: the
caller must re-list, as an informer does.

The client opens watch streams with etcd's ``hasleader`` metadata (clientv3
``WithRequireLeader``, as the apiserver uses it) so a member cut off from the
leader cancels the watch instead of silently delivering nothing; that
cancellation counts as an endpoint failure and the watch resumes elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from etcdlab.client.errors import (
    ClusterUnavailableError,
    CompactedError,
    EtcdError,
    StreamFailed,
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


StreamOpener = Callable[[], Awaitable[tuple[WatchStream, str]]]


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

    Iteration raises :class:`CompactedError` when the next revision needed was
    compacted; stream and endpoint failures are retried forever (with backoff)
    until cancelled.
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
        stream_failed: StreamFailed | None = None,
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
        self._stream_failed = stream_failed
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
                try:
                    stream, endpoint = await self._open_stream()
                except EtcdError as error:
                    failures += 1
                    log.debug("watch stream could not open: %s", error)
                    await self._clock.sleep(self._backoff(failures))
                    continue
                self.endpoint = endpoint
                try:
                    await stream.write(self._create_request())
                    if await self._consume(stream):
                        failures = 0
                except grpc.aio.AioRpcError as error:
                    self._report(from_rpc_error(error, endpoint))
                finally:
                    stream.cancel()
                failures += 1
                self.resumes += 1
                await self._clock.sleep(self._backoff(failures))
        except CompactedError as error:
            self._queue.put_nowait(error)
        except Exception as error:
            # Whatever ends the watch must reach the consumer, not hang it.
            log.exception("watch on %r failed", self.key)
            self._queue.put_nowait(error)

    def _report(self, error: EtcdError) -> None:
        if self._stream_failed is not None and self.endpoint is not None:
            self._stream_failed(self.endpoint, error)

    async def _consume(self, stream: WatchStream) -> bool:
        """Deliver responses until the stream ends; True if it delivered any."""
        delivered = False
        while True:
            response = await stream.read()
            if not isinstance(response, rpc_pb2.WatchResponse):
                return delivered
            if response.compact_revision:
                raise CompactedError(response.compact_revision, endpoint=self.endpoint)
            if response.canceled:
                # e.g. "etcdserver: no leader" (the stream requires a leader):
                # this endpoint cannot serve the watch, resume on another.
                self._report(
                    ClusterUnavailableError(
                        f"watch canceled: {response.cancel_reason}",
                        code=grpc.StatusCode.UNAVAILABLE,
                        details=response.cancel_reason,
                        endpoint=self.endpoint,
                    )
                )
                return delivered
            if response.created:
                if self.next_revision == 0:
                    self.next_revision = response.header.revision + 1
                self.created.set()
                continue
            delivered = True
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
