"""Sans-IO HTTP/2 frame reader (RFC 9113 section 4), built for a proxy.

Bytes go in, and come out again in the same order: either as raw ``bytes`` the
proxy forwards untouched, or as complete :class:`Frame` objects for the frame
types the caller is interested in. Frames outside the interest set are never
buffered or copied, only counted through, so following the frame boundaries of
a busy connection costs a few integer operations per frame header. The interest
set can change at any time; it applies from the next frame header on, so a
frame that was half forwarded raw is finished raw.

A reader that only watches (:meth:`FrameReader.frames`) checks less, only
what following the frames needs, and steps over frame headers in compiled
code (``etcdlab.proxy._h2step``, whose pure-Python reference is
:func:`watch_frames`); while every request header block is one HPACK's
decoder has read before, a :class:`Watcher` follows instead, making no
object per frame (compiled only; an install without a C compiler runs the reader's
reference, at several times following's CPU per call).
:class:`PingBoundary` finds a frame boundary for a reader that joins a
connection in the middle.

Nothing here does I/O or imports asyncio. Every malformed input raises
:class:`ProtocolError` and nothing else.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import TypeVar, cast

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADER_SIZE = 9
MAX_FRAME_SIZE_LIMIT = (1 << 24) - 1

FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20


class FrameType(IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


# The types per-frame code compares with, as plain ints: reading an enum
# member costs about ten times reading a global (CPython 3.11).
TYPE_DATA = int(FrameType.DATA)
TYPE_HEADERS = int(FrameType.HEADERS)
TYPE_RST_STREAM = int(FrameType.RST_STREAM)
TYPE_PING = int(FrameType.PING)
TYPE_CONTINUATION = int(FrameType.CONTINUATION)

ALL_TYPES: frozenset[int] = frozenset(range(256))
HEADER_TYPES: frozenset[int] = frozenset({FrameType.HEADERS, FrameType.CONTINUATION})
# Frames that start or continue a header block (PUSH_PROMISE carries one too).
_BLOCK_TYPES: frozenset[int] = frozenset(
    {FrameType.HEADERS, FrameType.PUSH_PROMISE, FrameType.CONTINUATION}
)

# Per frame type (index): the payload length the protocol fixes (-1: any), and
# where it may appear (0: anywhere, 1: stream 0 only, 2: never on stream 0).
# A mismatch means the bytes are not HTTP/2 (or we lost track of them): stop
# rather than guess.
_RULES: tuple[tuple[int, int], ...] = (
    (-1, 2),  # DATA
    (-1, 2),  # HEADERS
    (-1, 2),  # PRIORITY
    (4, 2),  # RST_STREAM
    (-1, 1),  # SETTINGS (length a multiple of 6, checked apart)
    (-1, 2),  # PUSH_PROMISE
    (8, 1),  # PING
    (-1, 1),  # GOAWAY
    (4, 0),  # WINDOW_UPDATE
    (-1, 2),  # CONTINUATION
)


# A frame header in one unpack: length and type (the first 4 bytes as one
# integer), flags, and the stream id with its reserved bit.
_HEAD = struct.Struct(">IBI")
_WORD = struct.Struct(">I")


# Per frame type, the rule FrameReader._scan checks before passing over (or
# taking) a frame by itself (None: leave it to the general path). Unknown
# types are allowed anywhere outside a header block.
_SKIP_TABLE: tuple[tuple[int, int] | None, ...] = tuple(
    (_RULES[t] if t < len(_RULES) else (-1, 0)) if t != FrameType.CONTINUATION else None
    for t in range(256)
)


# The rule byte per frame type that the watching loop reads (step_table):
# what it does at a frame of that type besides stepping over it.
_TAKE = 0x01  # of interest: handed to the caller whole
_BLOCK = 0x02  # starts or continues a header block
_GENERAL = 0x04  # always left to the general path (CONTINUATION)
_ZERO_ONLY = 0x08  # only on stream 0
_NONZERO = 0x10  # never on stream 0
_SETTINGS = 0x20  # length a multiple of 6
_WATCHED = _TAKE | _BLOCK | _GENERAL
# The second half of the table: the payload length a type requires, or this.
_ANY_LENGTH = 0xFF


@functools.cache
def step_table(interest: frozenset[int]) -> bytes:
    """The rules :func:`watch_frames` (and its compiled twin) check, per frame
    type: a rule byte, then (256 bytes on) the payload length it requires."""
    table = bytearray(512)
    for frame_type in range(256):
        fixed, where = _RULES[frame_type] if frame_type < len(_RULES) else (-1, 0)
        table[frame_type] = (
            (_TAKE if frame_type in interest else 0)
            | (_BLOCK if frame_type in _BLOCK_TYPES else 0)
            | (_GENERAL if _SKIP_TABLE[frame_type] is None else 0)
            | (_ZERO_ONLY if where == 1 else _NONZERO if where == 2 else 0)
            | (_SETTINGS if frame_type == FrameType.SETTINGS else 0)
        )
        table[256 + frame_type] = _ANY_LENGTH if fixed < 0 else fixed
    return bytes(table)


class ProtocolError(Exception):
    """The bytes are not a valid HTTP/2 stream; the connection cannot be followed."""


class Frame:
    """One complete frame, kept as the exact bytes seen on the wire."""

    __slots__ = ("flags", "raw", "stream_id", "type")

    def __init__(self, frame_type: int, flags: int, stream_id: int, raw: bytes) -> None:
        self.type = frame_type
        self.flags = flags
        self.stream_id = stream_id
        self.raw = raw

    @classmethod
    def build(cls, frame_type: int, flags: int, stream_id: int, payload: bytes) -> Frame:
        if len(payload) > MAX_FRAME_SIZE_LIMIT:
            raise ValueError("payload longer than an HTTP/2 frame can carry")
        header = (
            len(payload).to_bytes(3, "big")
            + bytes((frame_type, flags))
            + (stream_id & 0x7FFFFFFF).to_bytes(4, "big")
        )
        return cls(frame_type, flags, stream_id, header + payload)

    @property
    def payload(self) -> bytes:
        return self.raw[HEADER_SIZE:]

    def data_without_padding(self) -> bytes:
        """The payload of a DATA or HEADERS frame minus padding (and priority)."""
        if not self.flags & (FLAG_PADDED | FLAG_PRIORITY):
            return self.raw[HEADER_SIZE:]
        payload = self.payload
        start, end = 0, len(payload)
        if self.flags & FLAG_PADDED and self.type in (TYPE_DATA, TYPE_HEADERS):
            if not payload:
                raise ProtocolError("padded frame without a pad length")
            start, end = 1, end - payload[0]
        if self.type == TYPE_HEADERS and self.flags & FLAG_PRIORITY:
            start += 5
        if end < start:
            raise ProtocolError("padding longer than the frame payload")
        return payload[start:end]

    def __repr__(self) -> str:
        name = FrameType(self.type).name if self.type < len(FrameType) else self.type
        return (
            f"Frame({name}, flags=0x{self.flags:02x}, stream={self.stream_id}, "
            f"length={len(self.raw) - HEADER_SIZE})"
        )


def _stream_id(raw: bytes) -> int:
    return ((raw[5] & 0x7F) << 24) | (raw[6] << 16) | (raw[7] << 8) | raw[8]


_F = TypeVar("_F")


def watch_frames(
    data: bytes,
    pos: int,
    table: bytes,
    max_size: int,
    frame: Callable[[int, int, int, bytes], _F | None],
    out: list[_F],
) -> int:
    """Step over the whole frames in ``data`` from ``pos``; return where the
    general path takes over (past the end when the last frame's payload runs
    on into the next chunk).

    For :meth:`FrameReader.frames`, which forwards nothing: it checks only
    what following the frames needs (lengths, and header blocks, for HPACK),
    by ``table`` (:func:`step_table`), so a watched connection costs a few
    operations per frame. Each frame of interest that lies whole in ``data``
    and breaks none of its type's rules is appended to ``out`` as ``frame(type,
    flags, stream_id, raw)``, unless that is None, which stops the loop at
    that frame. The general path takes frames of interest cut
    by the end of ``data`` or breaking a rule, header blocks that go on in
    CONTINUATIONs, and lengths over ``max_size``. A frame that breaks another
    rule goes to the server as it is, which closes the connection as HTTP/2
    requires; :meth:`FrameReader.feed` would refuse it.

    This is the reference: the reader runs its compiled twin,
    ``etcdlab.proxy._h2step.watch`` (``proxy/_h2step.c``, which says why it
    is C), held to this by property tests.
    """
    unpack = _WORD.unpack_from
    last = len(data) - HEADER_SIZE
    while pos <= last:
        # Length and type only: flags and stream id are read when needed.
        (word,) = unpack(data, pos)
        frame_type = word & 0xFF
        length = word >> 8
        rule = table[frame_type]
        if rule & _WATCHED or length > max_size:
            _, flags, stream_id = _HEAD.unpack_from(data, pos)
            if (
                length > max_size
                or rule & _GENERAL
                or (rule & _BLOCK and not flags & FLAG_END_HEADERS)
            ):
                return pos
            if rule & _TAKE:
                end = pos + HEADER_SIZE + length
                fixed = table[256 + frame_type]
                stream_id &= 0x7FFFFFFF
                if (
                    end > len(data)
                    or (fixed != _ANY_LENGTH and length != fixed)
                    or (rule & _ZERO_ONLY and stream_id)
                    or (rule & _NONZERO and not stream_id)
                    or (rule & _SETTINGS and length % 6)
                ):
                    return pos
                made = frame(frame_type, flags, stream_id, data[pos:end])
                if made is None:
                    return pos
                out.append(made)
        pos += HEADER_SIZE + length
    return pos


class Watcher:
    """Follows the client's frames, with no fault on, while every request
    header block is one whose path is known.

    A gRPC client repeats each method's header block byte for byte once its
    headers are in HPACK's table, so nearly every call's block is one the
    decoder has read before: ``known`` (the decoder's cache, which it fills
    and empties by its own rules) says what it means. :meth:`watch` steps
    over a chunk's frames as :func:`watch_frames` does and, for each request
    header block that is a whole HEADERS frame with nothing to strip and is
    in ``known``, records ``paths[stream] = known[block]`` (unless None) and
    counts it, making no object per frame. Anything else (a block not known
    yet, one split over CONTINUATIONs or padded, a frame cut or breaking a
    rule) is left to the general path (:class:`FrameReader` and
    ``hpackpaths.RequestHeaders``) from its frame header on, which then
    hands back (see ``pipe.Pipe``).

    This is the reference: the proxy runs its compiled twin
    (``etcdlab.proxy._h2step.Watcher``), held to this by property tests.
    """

    __slots__ = (
        "_batch",
        "_known",
        "_max_size",
        "_paths",
        "_table",
        "blocks",
        "max_stream",
        "skip",
    )

    def __init__(
        self,
        table: bytes,
        max_size: int,
        known: dict[bytes, str | None],
        paths: dict[int, str],
        batch: int,
    ) -> None:
        if len(table) != 512:
            raise ValueError("Watcher(): the table is 512 bytes")
        self._table = table
        self._max_size = max_size
        self._known = known
        self._paths = paths
        self._batch = batch
        # Bytes of a frame's payload still to come (the next chunk starts there).
        self.skip = 0
        self.max_stream = 0
        self.blocks = 0

    def watch(self, data: bytes) -> int | None:
        """Follow ``data``; None when every frame in it was followed, else where
        the general path takes over: a frame left to it, or ``len(data)`` once
        ``batch`` header blocks have been followed (so their count is taken)."""
        size = len(data)
        if self.skip >= size:
            self.skip -= size
            return None
        out: list[bool] = []
        pos = watch_frames(data, self.skip, self._table, self._max_size, self._take, out)
        self.skip = pos - size if pos > size else 0
        if pos < size or self.blocks >= self._batch:
            return min(pos, size)
        return None

    def _take(self, frame_type: int, flags: int, stream_id: int, raw: bytes) -> bool | None:
        if frame_type != TYPE_HEADERS or flags & (FLAG_PADDED | FLAG_PRIORITY):
            return None
        value = self._known.get(raw[HEADER_SIZE:], _UNKNOWN)
        if value is _UNKNOWN:
            return None
        if value is not None:
            self._paths[stream_id] = cast(str, value)
        self.max_stream = max(self.max_stream, stream_id)
        self.blocks += 1
        return True


_UNKNOWN = object()

_Watcher: type[Watcher] | None = None
try:
    from etcdlab.proxy import _h2step
except ImportError:  # built without a C compiler (the extension is optional)
    _watch = watch_frames
else:
    _watch = _h2step.watch
    _Watcher = _h2step.Watcher
COMPILED = _watch is not watch_frames
"""Whether the reader steps over frames in compiled code."""


def watcher(
    table: bytes, max_size: int, known: dict[bytes, str | None], paths: dict[int, str], batch: int
) -> Watcher | None:
    """The compiled :class:`Watcher`, or None when the install has no
    compiled code: in Python, a call per chunk costs more than the reader's
    batches (43,700 instructions a call against 39,000 in the Range c32
    replay, docs/BENCHMARKS.md)."""
    return None if _Watcher is None else _Watcher(table, max_size, known, paths, batch)


class FrameReader:
    """Follows the frames of one direction of one HTTP/2 connection.

    ``preface`` is true for the client-to-server direction, which starts with the
    connection preface. ``interest`` names the frame types returned as
    :class:`Frame`; every other byte comes back as raw ``bytes``.
    """

    def __init__(
        self,
        *,
        preface: bool,
        interest: Iterable[int] = HEADER_TYPES,
        max_frame_size: int = MAX_FRAME_SIZE_LIMIT,
    ) -> None:
        if not 1 <= max_frame_size <= MAX_FRAME_SIZE_LIMIT:
            raise ValueError(f"max_frame_size must be in 1..{MAX_FRAME_SIZE_LIMIT}")
        self.interest = frozenset(interest)
        self.max_frame_size = max_frame_size
        self._preface_left = len(PREFACE) if preface else 0
        # The client's preface ends with a SETTINGS frame (RFC 9113 section
        # 3.4): no frame of ours may go before it, so the boundary after the
        # 24 bytes does not count.
        self._settings_first = preface
        self._buffer = bytearray()
        # Bytes still to pass raw for the frame being skipped.
        self._skip = 0
        # Bytes still missing from the frame being collected (0 when none).
        self._collect = 0
        self._header = bytearray()
        # Stream id of a header block still waiting for its END_HEADERS.
        self._open_block: int | None = None

    @property
    def interest(self) -> frozenset[int]:
        return self._interest

    @interest.setter
    def interest(self, interest: frozenset[int]) -> None:
        self._interest = interest
        self._table = step_table(interest)

    @property
    def past_preface(self) -> bool:
        """Has the preface (the client's: 24 bytes and a SETTINGS frame's header) passed?"""
        return self._preface_left == 0 and not self._settings_first

    @property
    def at_boundary(self) -> bool:
        """True when everything fed so far was a whole number of frames, no
        header block is waiting for its CONTINUATION (nothing may come between:
        RFC 9113 section 6.10) and, for the client's direction, its preface has
        passed: a frame of the proxy's own may go here."""
        return (
            self._preface_left == 0
            and not self._settings_first
            and self._skip == 0
            and self._collect == 0
            and not self._header
            and not self._buffer
            and self._open_block is None
        )

    def lend(self) -> int | None:
        """Let a :class:`Watcher` follow from here: return the payload bytes
        still to skip (the watcher's ``skip``), which the reader no longer
        counts; None if the reader is inside anything else (its preface, a
        frame header, a frame it collects, a header block). :meth:`take_back`
        ends the loan."""
        if (
            self._preface_left
            or self._settings_first
            or self._collect
            or self._header
            or self._buffer
            or self._open_block is not None
        ):
            return None
        skip, self._skip = self._skip, 0
        return skip

    def take_back(self, skip: int) -> None:
        """Follow again from where a :class:`Watcher` got to (``skip``: its own)."""
        self._skip = skip

    def feed(self, data: bytes) -> list[bytes | Frame]:
        """Consume ``data``; return it as raw pieces and complete frames of interest.

        Concatenating every returned piece (``Frame.raw`` for frames) over all
        calls gives back exactly the bytes fed, minus a frame of interest that
        is still incomplete at the end.
        """
        return self._feed(data, True)

    def frames(self, data: bytes) -> list[Frame]:
        """Consume ``data`` as :meth:`feed` does; return only the complete frames
        of interest (for a reader that watches bytes it does not forward)."""
        return cast(list[Frame], self._feed(data, False))

    def _feed(self, data: bytes, keep: bool) -> list[bytes | Frame]:
        size = len(data)
        if self._skip >= size and size:
            self._skip -= size
            return [data] if keep else []
        out: list[bytes | Frame] = []
        view = memoryview(data)
        pos = 0
        raw_start = 0
        if self._preface_left:
            taken = min(self._preface_left, size)
            expected = PREFACE[len(PREFACE) - self._preface_left :][:taken]
            if view[:taken] != expected:
                raise ProtocolError("bad HTTP/2 connection preface")
            self._preface_left -= taken
            pos = taken
        while pos < size:
            if self._skip:
                step = min(self._skip, size - pos)
                self._skip -= step
                pos += step
                continue
            if self._collect:
                step = min(self._collect, size - pos)
                self._buffer += view[pos : pos + step]
                self._collect -= step
                pos += step
                if not self._collect:
                    out.append(self._finish_frame())
                    raw_start = pos
                continue
            # At a frame header (possibly split over calls).
            if not self._header and self._open_block is None and not self._settings_first:
                if keep:
                    pos, raw_start = self._scan(data, pos, size, out, raw_start)
                else:
                    pos = _watch(data, pos, self._table, self.max_frame_size, Frame, out)
                    if pos > size:
                        self._skip = pos - size
                if pos >= size:
                    break
            need = HEADER_SIZE - len(self._header)
            if need > size - pos:
                self._header += view[pos:]
                pos = size
                break
            if self._header:
                self._header += view[pos : pos + need]
                header = bytes(self._header)
                self._header.clear()
                header_start = -1  # the header began in an earlier call
                length, frame_type = self._check_header(header, 0)
            else:
                header_start = pos
                length, frame_type = self._check_header(data, pos)
            pos += need
            if frame_type in self.interest:
                # The raw bytes before the frame (with keep).
                if keep and header_start > raw_start:
                    out.append(bytes(view[raw_start:header_start]))
                elif keep and header_start < 0 and pos - need > raw_start:
                    out.append(bytes(view[raw_start : pos - need]))
                if header_start >= 0:
                    if size - pos >= length:
                        # The whole frame is in this chunk: slice it, no buffer.
                        end = pos + length
                        raw = bytes(view[header_start:end])
                        out.append(Frame(frame_type, raw[4], _stream_id(raw), raw))
                        pos = raw_start = end
                        continue
                    header = data[header_start:pos]
                self._buffer = bytearray(header)
                self._collect = length
                if not length:
                    out.append(self._finish_frame())
                raw_start = pos
            else:
                if header_start < 0:
                    # The first bytes of this header went out as part of the
                    # previous call's pending header: emit them with it now.
                    if keep:
                        out.append(bytes(view[raw_start : pos - need]) + header)
                    raw_start = pos
                # Skip the payload now rather than in another turn of the loop.
                take = min(length, size - pos)
                pos += take
                self._skip = length - take
        if keep and self._collect == 0 and raw_start < size and not self._header:
            out.append(data if raw_start == 0 else bytes(view[raw_start:]))
        elif keep and self._header and raw_start < size - len(self._header):
            out.append(bytes(view[raw_start : size - len(self._header)]))
        return out

    def _scan(
        self, data: bytes, pos: int, size: int, out: list[bytes | Frame], raw_start: int
    ) -> tuple[int, int]:
        """Pass over the frames whose headers are in ``data`` and break no rule,
        taking those of interest that lie whole in it into ``out`` (after the
        raw bytes before them). Return where the general path takes over (a
        frame of interest cut by the end of ``data``, a header block that goes
        on in CONTINUATION frames, a rule broken, or the end) and where the raw
        bytes not yet in ``out`` start."""
        interest = self.interest
        max_size = self.max_frame_size
        unpack = _HEAD.unpack_from
        while size - pos >= HEADER_SIZE:
            word, flags, stream_id = unpack(data, pos)
            frame_type = word & 0xFF
            length = word >> 8
            rule = _SKIP_TABLE[frame_type]
            if length > max_size or rule is None:
                return pos, raw_start
            fixed, where = rule
            if fixed >= 0 and length != fixed:
                return pos, raw_start
            if where == 1:
                if stream_id & 0x7FFFFFFF:
                    return pos, raw_start
            elif where == 2 and not stream_id & 0x7FFFFFFF:
                return pos, raw_start
            if frame_type == 4 and length % 6:
                return pos, raw_start
            # A header block that goes on in CONTINUATION frames needs the
            # general path's bookkeeping.
            if frame_type in (1, 5) and not flags & FLAG_END_HEADERS:
                return pos, raw_start
            end = pos + HEADER_SIZE + length
            if frame_type in interest:
                if end > size:
                    return pos, raw_start
                if pos > raw_start:
                    out.append(data[raw_start:pos])
                out.append(Frame(frame_type, flags, stream_id & 0x7FFFFFFF, data[pos:end]))
                raw_start = end
            pos = end
        if pos > size:
            self._skip = pos - size
        return pos, raw_start

    def _finish_frame(self) -> Frame:
        raw = bytes(self._buffer)
        self._buffer = bytearray()
        return Frame(raw[3], raw[4], _stream_id(raw), raw)

    def _check_header(self, buf: bytes | bytearray, off: int) -> tuple[int, int]:
        word, flags, stream_id = _HEAD.unpack_from(buf, off)
        length = word >> 8
        frame_type = word & 0xFF
        stream_id &= 0x7FFFFFFF
        if length > self.max_frame_size:
            raise ProtocolError(f"frame length {length} exceeds {self.max_frame_size}")
        if self._settings_first:
            if frame_type != FrameType.SETTINGS:
                raise ProtocolError("the client preface does not end with a SETTINGS frame")
            self._settings_first = False
        if frame_type >= len(_RULES):
            # Unknown types are allowed (and ignored), but not inside a header block.
            if self._open_block is not None:
                raise ProtocolError("header block interrupted before END_HEADERS")
            return length, frame_type
        fixed, where = _RULES[frame_type]
        if fixed >= 0 and length != fixed:
            raise ProtocolError(f"{FrameType(frame_type).name} frame with length {length}")
        if where == 1:
            if stream_id:
                raise ProtocolError(f"{FrameType(frame_type).name} frame on stream {stream_id}")
        elif where == 2 and not stream_id:
            raise ProtocolError(f"{FrameType(frame_type).name} frame on stream 0")
        if frame_type == 4 and length % 6:
            raise ProtocolError(f"SETTINGS frame with length {length}")
        if self._open_block is not None:
            if frame_type != 9 or stream_id != self._open_block:
                raise ProtocolError("header block interrupted before END_HEADERS")
        elif frame_type == 9:
            raise ProtocolError("CONTINUATION without a preceding HEADERS")
        if frame_type in (1, 5, 9):
            self._open_block = None if flags & FLAG_END_HEADERS else stream_id
        return length, frame_type


class PingBoundary:
    """Finds a frame boundary in the middle of one direction of a connection.

    A reader that joins a connection late cannot tell frame headers from
    payload bytes. The proxy sends the peer a PING with ``payload`` (8 bytes
    nobody else picks) and feeds this the bytes coming back: the peer writes
    frames whole, so the end of the PING's ACK is a frame boundary, and 17
    bytes with such a payload do not turn up by chance inside other frames.
    """

    def __init__(self, payload: bytes) -> None:
        if len(payload) != 8:
            raise ValueError("a PING payload is 8 bytes")
        self.ping = Frame.build(FrameType.PING, 0, 0, payload)
        self._ack = Frame.build(FrameType.PING, FLAG_ACK, 0, payload).raw
        # The last bytes seen: the ACK may span two chunks.
        self._tail = b""

    def feed(self, data: bytes) -> tuple[bytes, bytes] | None:
        """None while the ACK has not come (pass ``data`` on as it is); then
        ``(before, after)``: the bytes of ``data`` to pass on unread, and those
        after the ACK, which start on a frame boundary. ``before`` leaves the ACK
        out when it lies whole in ``data``; when it began in an earlier chunk,
        which is gone, it holds the ACK's remaining bytes."""
        ack = self._ack
        tail = self._tail
        seen = tail + data if tail else data
        at = seen.find(ack)
        if at < 0:
            self._tail = seen[1 - len(ack) :]
            return None
        start, end = at - len(tail), at + len(ack) - len(tail)
        return (data[:start] if start >= 0 else data[:end]), data[end:]
