"""A frame fault added to a connection already open sees the right frames and paths.

With no fault on, the client's bytes are written at once and followed
chunk by chunk by the compiled watcher (etcdlab.proxy._h2step.Watcher) while
HPACK's cache knows each block, else later, in batches, by the frame reader;
a fault arriving in the middle of either, after many calls whose ``:path``
HPACK sends as a one-byte index, must still know which stream calls which
method, including a stream opened before the first call. Driven in-process,
chunk by chunk, as the event loop would.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import hpack
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from etcdlab.bench.proxy_replay import CountingTransport
from etcdlab.proxy import h2frames
from etcdlab.proxy.connection import Connection
from etcdlab.proxy.faults.base import Action
from etcdlab.proxy.faults.frames import FrameLoss
from etcdlab.proxy.h2frames import (
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    PREFACE,
    Frame,
    FrameType,
)
from etcdlab.proxy.link import ProxyLink
from etcdlab.proxy.pipe import FOLLOW_BATCH

METHODS = ("/etcdserverpb.KV/Range", "/etcdserverpb.KV/Put", "/etcdserverpb.Lease/LeaseGrant")
# Opened before the first call and never ended, as a client's keepalive stream is.
LONG_LIVED = "/etcdserverpb.Lease/LeaseKeepAlive"


@dataclass(frozen=True, eq=False)
class Watching(FrameLoss):
    """Passes every frame; notes the path the proxy gives each DATA frame."""

    def __post_init__(self) -> None:
        super().__post_init__()
        # Not a field: a fault's fields are its validated parameters.
        object.__setattr__(self, "seen", [])

    seen: ClassVar[list[str | None]]

    def on_data(self, path: str | None, whole_messages: bool, rng: Any) -> Action:
        self.seen.append(path)
        return Action.PASS


class Recording(CountingTransport):
    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def writelines(self, chunks: list[bytes]) -> None:
        for data in chunks:
            self.data += data


@dataclass
class ClientBytes:
    data: bytes = b""
    # Where each frame ends (the reader's frame boundaries), and each DATA
    # frame's start and its stream's path.
    ends: list[int] = field(default_factory=list)
    data_frames: list[tuple[int, str]] = field(default_factory=list)

    def add(self, frame: Frame, path: str | None = None) -> None:
        if path is not None:
            self.data_frames.append((len(self.data), path))
        self.data += frame.raw
        # Nothing may come between a HEADERS frame and its CONTINUATION.
        if frame.type != FrameType.HEADERS or frame.flags & FLAG_END_HEADERS:
            self.ends.append(len(self.data))


def grpc_message(size: int) -> bytes:
    return b"\x00" + size.to_bytes(4, "big") + bytes(size)


def client_bytes(calls: list[tuple[int, int, int, int]]) -> ClientBytes:
    """A gRPC client's side of a connection: a long-lived stream, then ``calls``
    (method, message size, extra frames, how many calls later the request's
    message follows its headers)."""
    encoder = hpack.Encoder()
    out = ClientBytes(data=PREFACE)
    out.add(Frame.build(FrameType.SETTINGS, 0, 0, b""))

    def headers(stream: int, path: str, split: bool) -> None:
        block = encoder.encode(
            [(":method", "POST"), (":scheme", "http"), (":path", path), ("te", "trailers")]
        )
        if split and len(block) > 1:
            out.add(Frame.build(FrameType.HEADERS, 0, stream, block[:1]))
            out.add(Frame.build(FrameType.CONTINUATION, FLAG_END_HEADERS, stream, block[1:]))
        else:
            out.add(Frame.build(FrameType.HEADERS, FLAG_END_HEADERS, stream, block))

    headers(1, LONG_LIVED, False)
    # Requests whose message is still to come: (due after call number, stream, path, size).
    waiting: list[tuple[int, int, str, int]] = []
    for number, (method, size, extras, later) in enumerate(calls):
        stream = 3 + 2 * number
        path = METHODS[method]
        headers(stream, path, split=bool(extras & 8))
        waiting.append((number + later, stream, path, size))
        due = [w for w in waiting if w[0] <= number]
        waiting = [w for w in waiting if w[0] > number]
        for _, due_stream, due_path, due_size in due:
            message = grpc_message(due_size)
            out.add(Frame.build(FrameType.DATA, FLAG_END_STREAM, due_stream, message), due_path)
        if extras & 1:
            out.add(Frame.build(FrameType.WINDOW_UPDATE, 0, 0, size.to_bytes(4, "big")))
        if extras & 2:
            out.add(Frame.build(FrameType.PING, FLAG_ACK, 0, bytes(8)))
        if extras & 4:
            out.add(Frame.build(FrameType.DATA, 0, 1, grpc_message(8)), LONG_LIVED)
    for _, stream, path, size in waiting:
        out.add(Frame.build(FrameType.DATA, FLAG_END_STREAM, stream, grpc_message(size)), path)
    return out


async def follow(chunks: list[bytes], at: int, fault: Watching) -> bytes:
    link = ProxyLink("follow", ("127.0.0.1", 9), http2=True)
    conn = Connection(link, cast(asyncio.Transport, CountingTransport()), 1)
    link.adopt(conn)
    server = Recording()
    conn.attach_server(cast(asyncio.Transport, server))
    for number, chunk in enumerate(chunks):
        if number == at:
            link.add(fault)
        conn.up.on_data(chunk)
    if at >= len(chunks):
        link.add(fault)
    return bytes(server.data)


# Not shrunk: a failing connection is hundreds of calls, and shrinking one
# outlasts the test's timeout; the example printed is the one that failed.
@settings(max_examples=100, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(
    calls=st.lists(
        st.tuples(
            st.integers(0, len(METHODS) - 1),
            st.integers(0, 400),
            st.integers(0, 15),
            st.integers(0, 3),
        ),
        min_size=50,
        max_size=400,
    ),
    # Cuts at a frame boundary (True) or anywhere: frame mode begins only at
    # a chunk that ends on a boundary.
    cuts=st.lists(st.tuples(st.booleans(), st.integers(0, 2**24)), max_size=60),
    at=st.integers(0, 64),
)
def test_a_fault_added_mid_connection_sees_every_frame_with_its_path(
    calls: list[tuple[int, int, int, int]], cuts: list[tuple[bool, int]], at: int
) -> None:
    stream = client_bytes(calls)
    size = len(stream.data)
    places = {stream.ends[n % len(stream.ends)] if boundary else n % size for boundary, n in cuts}
    edges = [0, *sorted(places - {0, size}), size]
    chunks = [stream.data[a:b] for a, b in itertools.pairwise(edges)]
    at %= len(chunks) + 1
    fault = Watching(1.0, pings=False, messages=True, method="etcdserverpb.Lease")
    forwarded = asyncio.run(follow(chunks, at, fault))
    # Frame mode begins at the first chunk end from the fault on that is a
    # frame boundary (the client's preface and SETTINGS passed).
    boundaries = set(stream.ends)
    begins = next(edge for edge in edges[at:] if edge in boundaries)
    # Nothing dropped or reordered; the one frame added is the proxy's PING to
    # the server (to find where the server's frames begin), sent at a frame
    # boundary once frame mode has begun.
    at_ping = forwarded.find(b"\x00\x00\x08\x06\x00\x00\x00\x00\x00", begins)
    assert at_ping in boundaries
    assert forwarded[:at_ping] + forwarded[at_ping + 17 :] == stream.data
    first = bisect.bisect_left([start for start, _ in stream.data_frames], begins)
    assert fault.seen == [path for _, path in stream.data_frames[first:]]


def test_a_fault_added_while_the_watcher_follows_knows_the_requests_in_flight() -> None:
    # Past the first calls (whose blocks are new to HPACK's cache) the
    # watcher follows alone; a fault added then must know the paths of the
    # requests whose messages are still to come, which the watcher recorded.
    stream = client_bytes([(number % 3, 100, 0, 3) for number in range(400)])
    edges = sorted({0, *stream.ends[::7], len(stream.data)})
    chunks = [stream.data[a:b] for a, b in itertools.pairwise(edges)]
    at = len(chunks) * 3 // 4
    fault = Watching(1.0, pings=False, messages=True, method="etcdserverpb.Lease")

    async def run() -> Connection:
        link = ProxyLink("follow", ("127.0.0.1", 9), http2=True)
        conn = Connection(link, cast(asyncio.Transport, CountingTransport()), 1)
        link.adopt(conn)
        conn.attach_server(cast(asyncio.Transport, Recording()))
        for chunk in chunks[:at]:
            conn.up.on_data(chunk)
        assert conn.up.watch is not None, "the watcher is not following"
        link.add(fault)
        for chunk in chunks[at:]:
            conn.up.on_data(chunk)
        return conn

    asyncio.run(run())
    first = bisect.bisect_left([start for start, _ in stream.data_frames], edges[at])
    expected = [path for _, path in stream.data_frames[first:]]
    assert len(set(expected[:3])) == 3
    assert fault.seen == expected


def test_without_the_compiled_stepper_the_reference_follows_the_same() -> None:
    # An install without a C compiler follows with h2frames.watch_frames
    # alone (no watcher), and the pipe with the reference h2frames.Watcher
    # (the compiled one's twin) follows the same.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(h2frames, "_watch", h2frames.watch_frames)
        patch.setattr(h2frames, "_Watcher", None)
        test_a_fault_added_mid_connection_sees_every_frame_with_its_path()
        patch.setattr(h2frames, "_Watcher", h2frames.Watcher)
        test_a_fault_added_mid_connection_sees_every_frame_with_its_path()
        test_a_fault_added_while_the_watcher_follows_knows_the_requests_in_flight()


def test_the_property_reaches_past_several_batches() -> None:
    # The largest connection the property draws spans several batches of
    # following, so a fault can arrive with a batch half read.
    biggest = client_bytes([(0, 400, 7, 0)] * 400)
    assert len(biggest.data) > 4 * FOLLOW_BATCH
