"""A watch's resume rules on scripted streams: where it asks to start again, what
it delivers once, and which failures reopen the stream and which end the watch.

On a FakeClock with ``FakeStream``s standing in for etcd's Watch streams (fakes,
not etcd: tests/client/test_watch.py is the same behaviour against real members),
so each rule is checked on the exact responses that exercise it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import grpc
import pytest

from etcdlab.client.connection import Route
from etcdlab.client.errors import (
    ClusterUnavailableError,
    CompactedError,
    EtcdError,
    ResponseError,
)
from etcdlab.client.watch import Watch, WatchBatch, WatchStream
from etcdlab.common.clock import FakeClock
from etcdlab.protos import kv_pb2, rpc_pb2

KEY, END = b"/registry/", b"/registry0"


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def created(revision: int) -> rpc_pb2.WatchResponse:
    return rpc_pb2.WatchResponse(created=True, header=rpc_pb2.ResponseHeader(revision=revision))


def events(*revisions: int, header: int | None = None) -> rpc_pb2.WatchResponse:
    return rpc_pb2.WatchResponse(
        header=rpc_pb2.ResponseHeader(revision=header or max(revisions)),
        events=[
            kv_pb2.Event(kv=kv_pb2.KeyValue(key=KEY + b"%d" % r, mod_revision=r)) for r in revisions
        ],
    )


def progress(revision: int) -> rpc_pb2.WatchResponse:
    return rpc_pb2.WatchResponse(header=rpc_pb2.ResponseHeader(revision=revision))


class FakeStream:
    """One Watch stream: answers ``read`` from a script, then hangs (an open,
    quiet stream); an exception in the script is raised, ``None`` is end of stream."""

    def __init__(self, *script: rpc_pb2.WatchResponse | BaseException | None) -> None:
        self.script = list(script)
        self.requests: list[rpc_pb2.WatchRequest] = []
        self.cancelled = False

    async def write(self, request: rpc_pb2.WatchRequest) -> None:
        self.requests.append(request)

    async def read(self) -> object:
        if not self.script:
            await asyncio.Event().wait()
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return grpc.aio.EOF if item is None else item

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class FakeRoute:
    """The member a stream went over, and the failures reported against it."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.failures: list[EtcdError] = []

    def failed(self, error: EtcdError) -> None:
        self.failures.append(error)


class Streams:
    """Hands out the scripted streams in order, over members m0, m1, ..."""

    def __init__(self, *streams: FakeStream) -> None:
        self.streams = list(streams)
        self.routes: list[FakeRoute] = []
        self.backoffs: list[int] = []

    async def open(self) -> tuple[WatchStream, Route]:
        if not self.streams:
            await asyncio.Event().wait()
        route = FakeRoute(f"m{len(self.routes)}:2379")
        self.routes.append(route)
        return self.streams.pop(0), cast(Route, route)

    def backoff(self, failures: int) -> float:
        self.backoffs.append(failures)
        return 0.5 * failures


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def watches() -> AsyncIterator[list[Watch]]:
    made: list[Watch] = []
    yield made
    for watch in made:
        await watch.cancel()


def start(
    watches: list[Watch], streams: Streams, clock: FakeClock, start_revision: int = 0
) -> Watch:
    watch = Watch(
        streams.open,
        KEY,
        range_end=END,
        start_revision=start_revision,
        progress_notify=True,
        prev_kv=True,
        clock=clock,
        backoff=streams.backoff,
    )
    watches.append(watch)
    return watch


async def batch(watch: Watch) -> WatchBatch:
    return await asyncio.wait_for(anext(watch), 1)


def revisions(got: WatchBatch) -> list[int]:
    return [e.kv.mod_revision for e in got.events]


def start_of(stream: FakeStream) -> int:
    (request,) = stream.requests
    return request.create_request.start_revision


async def test_an_unavailable_stream_resumes_at_the_next_revision_after_a_backoff(
    clock: FakeClock, watches: list[Watch]
) -> None:
    lost = rpc_error(grpc.StatusCode.UNAVAILABLE, "keepalive watchdog timeout")
    first = FakeStream(created(6), events(5, 6), lost)
    # The new member replays 6, which was delivered already.
    second = FakeStream(created(8), events(6, 7, header=8))
    streams = Streams(first, second)
    watch = start(watches, streams, clock, start_revision=5)
    assert revisions(await batch(watch)) == [5, 6]
    await clock.advance(0)
    assert second.requests == [] and streams.backoffs == [1]
    (failure,) = streams.routes[0].failures
    assert isinstance(failure, ClusterUnavailableError)
    assert (failure.code, failure.details) == (lost.code(), "keepalive watchdog timeout")
    await clock.advance(0.5)
    assert first.cancelled
    got = await batch(watch)
    assert revisions(got) == [7] and got.revision == 8 and got.is_progress_notify is False
    assert start_of(first) == 5 and start_of(second) == 7
    assert watch.resumes == 1 and watch.endpoint == "m1:2379"
    assert watch.next_revision == 8


async def test_the_create_request_asks_for_what_the_watch_was_opened_with(
    clock: FakeClock, watches: list[Watch]
) -> None:
    stream = FakeStream(created(3))
    watch = start(watches, Streams(stream), clock, start_revision=2)
    await asyncio.wait_for(watch.created.wait(), 1)
    (request,) = stream.requests
    assert request.create_request == rpc_pb2.WatchCreateRequest(
        key=KEY, range_end=END, start_revision=2, progress_notify=True, prev_kv=True
    )


async def test_a_watch_from_now_resumes_after_the_created_revision_before_any_event(
    clock: FakeClock, watches: list[Watch]
) -> None:
    lost = rpc_error(grpc.StatusCode.UNAVAILABLE, "transport is closing")
    first, second = FakeStream(created(10), lost), FakeStream(created(12), events(11, 12))
    watch = start(watches, Streams(first, second), clock)
    await clock.advance(0.5)
    assert start_of(first) == 0 and start_of(second) == 11
    assert revisions(await batch(watch)) == [11, 12]


async def test_progress_notifications_move_the_resume_revision(
    clock: FakeClock, watches: list[Watch]
) -> None:
    ended = FakeStream(created(4), events(4), progress(9), None)
    resumed = FakeStream(created(9))
    streams = Streams(ended, resumed)
    watch = start(watches, streams, clock, start_revision=4)
    assert revisions(await batch(watch)) == [4]
    notified = await batch(watch)
    assert notified == WatchBatch(events=(), revision=9, is_progress_notify=True)
    await clock.advance(0)
    # A stream that ended cleanly reopens at once, without a backoff.
    assert start_of(resumed) == 10 and streams.backoffs == [] and watch.resumes == 1


async def test_internal_errors_reopen_without_a_backoff(
    clock: FakeClock, watches: list[Watch]
) -> None:
    broken = rpc_error(grpc.StatusCode.INTERNAL, "RST_STREAM")
    streams = Streams(FakeStream(created(2), broken), FakeStream(created(2), events(3)))
    watch = start(watches, streams, clock, start_revision=3)
    assert revisions(await batch(watch)) == [3]
    assert streams.backoffs == [] and clock.now() == 0


async def test_consecutive_failures_grow_the_backoff(
    clock: FakeClock, watches: list[Watch]
) -> None:
    lost = rpc_error(grpc.StatusCode.UNAVAILABLE, "connection reset")
    streams = Streams(
        FakeStream(lost), FakeStream(lost), FakeStream(lost), FakeStream(created(1), events(1))
    )
    watch = start(watches, streams, clock, start_revision=1)
    await clock.advance(0.5 + 1.0)
    assert streams.backoffs == [1, 2, 3] and len(streams.routes) == 3
    await clock.advance(1.5)
    assert revisions(await batch(watch)) == [1]
    assert watch.resumes == 3


@pytest.mark.parametrize(
    ("ending", "error", "text"),
    [
        (rpc_pb2.WatchResponse(compact_revision=7), CompactedError, "7"),
        (rpc_pb2.WatchResponse(canceled=True, cancel_reason="etcdserver: no leader"),
         ClusterUnavailableError, "watch canceled: etcdserver: no leader"),
        (rpc_pb2.WatchResponse(canceled=True, cancel_reason="permission denied"),
         ResponseError, "watch canceled: permission denied"),
        (rpc_error(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"),
         ClusterUnavailableError, "watch closed"),
        (rpc_error(grpc.StatusCode.PERMISSION_DENIED, "no"), EtcdError, "no"),
    ],
)  # fmt: skip
async def test_what_ends_the_watch_reaches_the_reader_after_the_events_before_it(
    clock: FakeClock,
    watches: list[Watch],
    ending: rpc_pb2.WatchResponse | grpc.aio.AioRpcError,
    error: type[EtcdError],
    text: str,
) -> None:
    streams = Streams(FakeStream(created(2), events(2), ending), FakeStream(created(3)))
    watch = start(watches, streams, clock, start_revision=2)
    assert revisions(await batch(watch)) == [2]
    with pytest.raises(error, match=text) as raised:
        await batch(watch)
    assert raised.value.endpoint == "m0:2379"
    if error is ClusterUnavailableError:
        assert raised.value.code == grpc.StatusCode.UNAVAILABLE
        assert raised.value.details == "etcdserver: no leader"
    if error is ResponseError:
        assert raised.value.details == "permission denied"
    # Ended for good: not reopened, and iteration stays over.
    await clock.advance(10)
    assert len(streams.routes) == 1 and streams.streams
    with pytest.raises(StopAsyncIteration):
        await anext(watch)


async def test_cancel_ends_iteration_after_what_was_received(
    clock: FakeClock, watches: list[Watch]
) -> None:
    stream = FakeStream(created(2), events(2), events(3))
    watch = start(watches, Streams(stream), clock, start_revision=2)
    await clock.advance(0)
    await watch.cancel()
    assert stream.cancelled
    assert [revisions(b) async for b in watch] == [[2], [3]]
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(watch), 1)  # and stays ended


async def test_a_watch_with_defaults_asks_for_one_key_from_now(
    clock: FakeClock, watches: list[Watch]
) -> None:
    stream = FakeStream(created(3))
    watch = Watch(Streams(stream).open, KEY, clock=clock, backoff=lambda n: 0.0)
    watches.append(watch)
    assert watch.endpoint is None and watch.next_revision == 0
    await asyncio.wait_for(watch.created.wait(), 1)
    (request,) = stream.requests
    assert request.create_request == rpc_pb2.WatchCreateRequest(key=KEY)
    assert watch.endpoint == "m0:2379"


async def test_an_unexpected_failure_reaches_the_reader(
    clock: FakeClock, watches: list[Watch]
) -> None:
    streams = Streams(FakeStream(created(2), RuntimeError("decoder bug")))
    watch = start(watches, streams, clock, start_revision=2)
    with pytest.raises(RuntimeError, match="decoder bug"):
        await batch(watch)


def test_a_negative_start_revision_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^start_revision must not be negative$"):
        Watch(Streams().open, KEY, start_revision=-1, clock=FakeClock(), backoff=lambda n: 0.0)
