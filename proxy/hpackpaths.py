"""Passive HPACK decoding of request header blocks: which stream calls which method.

A proxy that reads ``:path`` has to decode every header block of the
client-to-server direction in order, because HPACK's dynamic table
(RFC 7541 section 2.3) is shared by all of them. This decoder does the least
that keeps the table right: indexed fields (the steady state of a gRPC
client, a byte each) are a table lookup; string literals are Huffman-decoded
only when they enter the table or name ``:path``, and otherwise skipped by
their length. The static table and the Huffman code come from the ``hpack``
library. A passive reader follows whatever table size the encoder announces
instead of enforcing a limit of its own.
"""

from __future__ import annotations

from collections import deque

from hpack.exceptions import HPACKDecodingError
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

from etcdlab.proxy.h2frames import (
    FLAG_END_HEADERS,
    FLAG_PADDED,
    FLAG_PRIORITY,
    HEADER_SIZE,
    TYPE_CONTINUATION,
    TYPE_HEADERS,
    Frame,
    ProtocolError,
)

_STATIC: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
_PATH = b":path"
_ENTRY_OVERHEAD = 32  # RFC 7541 section 4.1
_DEFAULT_TABLE_SIZE = 4096
# A size update above the largest SETTINGS_HEADER_TABLE_SIZE (32 bits) is nonsense.
_MAX_TABLE_SIZE = 2**32 - 1
# Bound on a reassembled block: a hostile client must not make us buffer forever.
MAX_BLOCK_SIZE = 1 << 20
# Blocks remembered with their path while the dynamic table stays unchanged.
_CACHE_SIZE = 64
# A HEADERS frame that is a whole block with nothing to strip has, of these
# flags, only END_HEADERS.
_WHOLE_MASK = FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY


class PathDecoder:
    """HPACK decoder state for one direction of one connection, reading ``:path`` only."""

    def __init__(self) -> None:
        self._dynamic: deque[tuple[bytes, bytes]] = deque()
        self._size = 0
        self._changes = 0  # counts table changes (additions, size updates)
        self._max_size = _DEFAULT_TABLE_SIZE
        # A gRPC client repeats the same block, byte for byte, for every call of
        # a method once its headers are in the table. Such a block means the
        # same thing until the table changes, which clears this cache.
        self._cache: dict[bytes, str | None] = {}

    @property
    def known(self) -> dict[bytes, str | None]:
        """Blocks read before with their path, while the table stays as it is
        (the cache :meth:`decode` fills and empties: the same dict for the
        decoder's life)."""
        return self._cache

    def decode(self, block: bytes) -> str | None:
        """Decode one complete header block; return its ``:path`` (if any)."""
        cache = self._cache
        if block in cache:
            return cache[block]
        changes = self._changes
        raw = self._decode(block)
        path = None if raw is None else raw.decode("latin-1")
        if changes == self._changes:
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[block] = path
        return path

    def _decode(self, block: bytes) -> bytes | None:
        path: bytes | None = None
        pos, end = 0, len(block)
        while pos < end:
            first = block[pos]
            if first & 0x80:  # indexed field
                index, pos = _integer(block, pos, 7)
                name, value = self._entry(index)
                if name == _PATH:
                    path = value
            elif first & 0x40:  # literal with incremental indexing
                name, value, pos = self._literal(block, pos, 6, need_value=True)
                self._add(name, value)
                if name == _PATH:
                    path = value
            elif first & 0x20:  # dynamic table size update
                size, pos = _integer(block, pos, 5)
                if size > _MAX_TABLE_SIZE:
                    raise ProtocolError(f"HPACK table size update to {size}")
                self._max_size = size
                self._evict(0)
                self._changed()
            else:  # literal without indexing / never indexed: the table is untouched
                name, literal, pos = self._literal(block, pos, 4, need_value=False)
                if name == _PATH:
                    path = literal
        return path

    def _literal(
        self, block: bytes, pos: int, prefix: int, *, need_value: bool
    ) -> tuple[bytes, bytes, int]:
        index, pos = _integer(block, pos, prefix)
        if index:
            name = self._entry(index)[0]
        else:
            name, pos = _string(block, pos, decode=True)
        value, pos = _string(block, pos, decode=need_value or name == _PATH)
        return name, value, pos

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 1 <= index <= len(_STATIC):
            return _STATIC[index - 1]
        dynamic = index - len(_STATIC) - 1
        if 0 <= dynamic < len(self._dynamic):
            return self._dynamic[dynamic]
        raise ProtocolError(f"HPACK index {index} out of range")

    def _changed(self) -> None:
        self._changes += 1
        self._cache.clear()

    def _add(self, name: bytes, value: bytes) -> None:
        self._changed()
        size = len(name) + len(value) + _ENTRY_OVERHEAD
        if size > self._max_size:
            # An entry larger than the table empties it and is not added (4.4).
            self._dynamic.clear()
            self._size = 0
            return
        self._evict(size)
        self._dynamic.appendleft((name, value))
        self._size += size

    def _evict(self, room: int) -> None:
        while self._dynamic and self._size + room > self._max_size:
            name, value = self._dynamic.pop()
            self._size -= len(name) + len(value) + _ENTRY_OVERHEAD


def _integer(block: bytes, pos: int, prefix: int) -> tuple[int, int]:
    """An HPACK integer with an N-bit prefix (RFC 7541 section 5.1)."""
    mask = (1 << prefix) - 1
    value = block[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        if pos >= len(block):
            raise ProtocolError("truncated HPACK integer")
        byte = block[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
        if shift > 35:
            raise ProtocolError("HPACK integer too large")


def _string(block: bytes, pos: int, *, decode: bool) -> tuple[bytes, int]:
    """A string literal; with ``decode`` false only its extent is read (b"" returned)."""
    if pos >= len(block):
        raise ProtocolError("truncated HPACK string")
    huffman = block[pos] & 0x80
    length, pos = _integer(block, pos, 7)
    end = pos + length
    if end > len(block):
        raise ProtocolError("HPACK string runs past the header block")
    if not decode:
        return b"", end
    raw = block[pos:end]
    if not huffman:
        return bytes(raw), end
    try:
        return decode_huffman(raw), end
    except HPACKDecodingError as error:
        raise ProtocolError(f"bad Huffman string: {error}") from None


class RequestHeaders:
    """Reassembles HEADERS + CONTINUATION of one direction, reads each block's
    path, and remembers which stream calls which method."""

    def __init__(self) -> None:
        self._decoder = PathDecoder()
        self._block = bytearray()
        self._stream_id = 0
        # The path of each stream whose request headers went by (the owner
        # forgets them), and the highest stream id seen.
        self.paths: dict[int, str] = {}
        self.max_stream = 0

    @property
    def known(self) -> dict[bytes, str | None]:
        """Whole header blocks whose path is known now (:attr:`PathDecoder.known`)."""
        return self._decoder.known

    def watch(self, frames: list[Frame]) -> None:
        """:meth:`feed` each of ``frames``, spelt out in one loop: with no fault
        on this runs for every call the client makes, and a call per block
        (feed's, or a helper's for the two lines that remember the stream) is
        most of its cost."""
        decode = self._decoder.decode
        # decode()'s cache, read here first: a call per block costs more than
        # the lookup (decode() fills it, and empties it when the table changes).
        known = self._decoder.known
        paths = self.paths
        top = self.max_stream
        for frame in frames:
            if (
                frame.type == TYPE_HEADERS
                and frame.flags & _WHOLE_MASK == FLAG_END_HEADERS
                and not self._block
            ):
                # The common case, one block in one frame with nothing to strip.
                stream_id = frame.stream_id
                block = frame.raw[HEADER_SIZE:]
                try:
                    path = known[block]
                except KeyError:
                    path = decode(block)
            else:
                found = self._complete(frame)
                if found is None:
                    continue
                stream_id, path = found
            if stream_id > top:
                top = stream_id
            if path is not None:
                paths[stream_id] = path
        self.max_stream = top

    def feed(self, frame: Frame) -> tuple[int, str | None] | None:
        """Return ``(stream_id, path)`` once a header block is complete, and
        remember the stream."""
        found = self._complete(frame)
        if found is not None:
            stream_id, path = found
            self.max_stream = max(self.max_stream, stream_id)
            if path is not None:
                self.paths[stream_id] = path
        return found

    def _complete(self, frame: Frame) -> tuple[int, str | None] | None:
        if frame.type == TYPE_HEADERS:
            self._stream_id = frame.stream_id
            if frame.flags & FLAG_END_HEADERS:
                # The common case: the whole block in one frame, no copy.
                return self._stream_id, self._decoder.decode(frame.data_without_padding())
            self._block = bytearray(frame.data_without_padding())
        elif frame.type == TYPE_CONTINUATION:
            self._block += frame.payload
        else:
            return None
        if len(self._block) > MAX_BLOCK_SIZE:
            raise ProtocolError("header block too large")
        if not frame.flags & FLAG_END_HEADERS:
            return None
        block, self._block = bytes(self._block), bytearray()
        return self._stream_id, self._decoder.decode(block)
