"""Delays per HTTP/2 stream: frames of delayed streams are overtaken by the others.

A delay filtered to one gRPC method stands for a slow path of that RPC, not a
slow wire. HTTP/2 multiplexes streams on one connection, so frames of other
streams pass the delayed ones, but some orders must hold or the receiver
breaks:

- the frames of one stream keep their order (a stream is a byte stream);
- header blocks keep their order: HPACK (RFC 7541) updates one dynamic table
  per direction block by block, so a block decoded out of order reads wrong
  table entries. A block queued behind a delayed one waits for it;
- a header block goes out whole: nothing may come between a HEADERS frame
  and its CONTINUATION frames (RFC 9113 section 6.10);
- connection frames (stream 0: SETTINGS, PING, WINDOW_UPDATE, GOAWAY) keep
  their order, as stream 0 is one more stream here.

:class:`StreamLanes` is sans-IO: frames go in with the time each may leave at,
due frames come out in an order that keeps those rules.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from typing import NamedTuple

from etcdlab.proxy.methods import method_matches


class FrameTag(NamedTuple):
    """What the lanes need to know of one frame: its stream, that stream's
    ``:path`` (None when unknown), and its part in a header block."""

    stream_id: int
    path: str | None
    header: bool = False
    ends_block: bool = False


# Bytes that are no frame of any stream (the connection preface).
CONNECTION = FrameTag(0, None)


class StreamLanes:
    """Frames waiting for their release time, one lane per stream."""

    def __init__(self) -> None:
        # (release, arrival number, frame bytes, tag); the arrival number
        # breaks ties so equal releases leave in arrival order.
        self._heap: list[tuple[float, int, bytes, FrameTag]] = []
        self._arrivals = 0
        # Release of the latest frame queued on each stream and of the latest
        # header block: a later one may not leave before them.
        self._stream_release: dict[int, float] = {}
        self._header_release = -math.inf
        # A header block still missing its END_HEADERS: (frames, release, tag).
        self._block: tuple[list[bytes], float, FrameTag] | None = None
        self.bytes = 0

    def __bool__(self) -> bool:
        return bool(self._heap) or self._block is not None

    def push(self, raw: bytes, tag: FrameTag, release: float) -> None:
        """Queue one frame that may leave at ``release`` (or later, if it must wait)."""
        self.bytes += len(raw)
        if tag.header:
            first = tag
            if self._block is not None:
                frames, started, first = self._block
                frames.append(raw)
                release = max(release, started)
            else:
                frames = [raw]
            if not tag.ends_block:
                self._block = (frames, release, first)
                return
            tag = first
            self._block = None
            raw = frames[0] if len(frames) == 1 else b"".join(frames)
            release = max(release, self._header_release)
        stream = tag.stream_id
        release = max(release, self._stream_release.get(stream, release))
        self._stream_release[stream] = release
        if tag.header:
            self._header_release = release
        heapq.heappush(self._heap, (release, self._arrivals, raw, tag))
        self._arrivals += 1

    @property
    def next_release(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> tuple[list[bytes], list[FrameTag]]:
        """Every frame due at ``now``, in the order to send them."""
        heap = self._heap
        frames: list[bytes] = []
        tags: list[FrameTag] = []
        while heap and heap[0][0] <= now:
            release, _, raw, tag = heapq.heappop(heap)
            frames.append(raw)
            tags.append(tag)
            self.bytes -= len(raw)
            # A stream whose latest frame has left constrains nothing any more.
            if self._stream_release.get(tag.stream_id) == release:
                del self._stream_release[tag.stream_id]
        return frames, tags

    def pop_all(self) -> tuple[list[bytes], list[FrameTag]]:
        """Everything queued, in order (the delay was removed). A header block
        still open goes last: the sender's next frames are its CONTINUATIONs."""
        frames, tags = self.pop_due(math.inf)
        if self._block is not None:
            block, _, tag = self._block
            for raw in block:
                frames.append(raw)
                tags.append(tag)
                self.bytes -= len(raw)
            self._block = None
        self._stream_release.clear()
        self._header_release = -math.inf
        return frames, tags


def delay_for(method: str | None, tag: FrameTag) -> bool:
    """Does a delay filtered to ``method`` hold this frame? Stream 0 never."""
    return tag.stream_id != 0 and method_matches(method, tag.path)


class FrameSpans:
    """Which bytes of a chunk belong to which stream, for shapers that filter by
    method or tell the sender's writes apart."""

    __slots__ = ("_connection", "_ends", "_paths")

    def __init__(self, frames: list[bytes], tags: list[FrameTag]) -> None:
        self._ends: list[int] = []
        self._paths: list[str | None] = []
        self._connection: list[bool] = []
        end = 0
        for raw, tag in zip(frames, tags, strict=True):
            end += len(raw)
            self._ends.append(end)
            self._paths.append(tag.path if tag.stream_id else None)
            self._connection.append(not tag.stream_id)

    def turns(self) -> list[int]:
        """The offsets in the chunk where connection frames (stream 0, and the
        preface) meet frames of a stream, either way round."""
        connection = self._connection
        return [
            self._ends[index - 1]
            for index in range(1, len(connection))
            if connection[index] != connection[index - 1]
        ]

    def carries(self, method: str, start: int, end: int) -> bool:
        """Do bytes ``start:end`` of the chunk hold any of a stream calling ``method``?"""
        index = bisect_right(self._ends, start)
        while index < len(self._ends):
            if method_matches(method, self._paths[index]):
                return True
            if self._ends[index] >= end:
                return False
            index += 1
        return False
