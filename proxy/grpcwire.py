"""gRPC over HTTP/2, the parts a fault proxy needs: message boundaries and trailers."""

from __future__ import annotations

import hpack

from etcdlab.proxy.h2frames import FLAG_END_HEADERS, FLAG_END_STREAM, Frame, FrameType

GRPC_UNAVAILABLE = 14
_PREFIX = 5  # compressed flag (1 byte) + message length (4 bytes, big endian)


class MessageCursor:
    """Where one stream direction is within its length-prefixed gRPC messages."""

    __slots__ = ("_prefix", "_remaining")

    def __init__(self) -> None:
        self._prefix = b""
        self._remaining = 0

    @property
    def at_boundary(self) -> bool:
        return not self._prefix and not self._remaining

    def feed(self, data: bytes) -> tuple[bool, bool]:
        """Advance over DATA payload; return (started, ended) at a message boundary."""
        started = self.at_boundary
        pos, size = 0, len(data)
        while pos < size:
            if self._remaining:
                step = min(self._remaining, size - pos)
                self._remaining -= step
                pos += step
                continue
            take = min(_PREFIX - len(self._prefix), size - pos)
            self._prefix += data[pos : pos + take]
            pos += take
            if len(self._prefix) == _PREFIX:
                self._remaining = int.from_bytes(self._prefix[1:], "big")
                self._prefix = b""
        return started, self.at_boundary


def exact_messages(data: bytes) -> bool:
    """Is ``data`` exactly one or more whole messages (for a stream joined midway)?

    A chunk from the middle of a message passes only if its first byte is 0 or 1
    and the next four happen to equal the rest of its length: a proxy can live
    with that chance.
    """
    pos, size = 0, len(data)
    if not size:
        return False
    while pos < size:
        if size - pos < _PREFIX or data[pos] > 1:
            return False
        pos += _PREFIX + int.from_bytes(data[pos + 1 : pos + _PREFIX], "big")
    return pos == size


def trailers_frame(
    stream_id: int, status: int, message: str, *, with_response_headers: bool
) -> Frame:
    """A HEADERS frame ending ``stream_id`` with gRPC status ``status``.

    Every field is a literal without indexing, which leaves the receiver's
    HPACK dynamic table untouched, so the frame can be injected without
    breaking the real encoder's state. ``with_response_headers`` adds
    ``:status 200`` and the content type: a trailers-only response for a
    stream the server has not answered yet.
    """
    fields: list[tuple[bytes, bytes]] = []
    if with_response_headers:
        fields += [(b":status", b"200"), (b"content-type", b"application/grpc")]
    fields += [(b"grpc-status", str(status).encode()), (b"grpc-message", message.encode())]
    block = bytearray()
    for name, value in fields:
        block.append(0x00)  # literal without indexing, new name
        block += _string(name)
        block += _string(value)
    return Frame.build(
        FrameType.HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS, stream_id, bytes(block)
    )


def window_update(stream_id: int, increment: int) -> Frame:
    return Frame.build(FrameType.WINDOW_UPDATE, 0, stream_id, increment.to_bytes(4, "big"))


def rst_stream(stream_id: int, error_code: int = 0x8) -> Frame:
    """RST_STREAM, CANCEL by default."""
    return Frame.build(FrameType.RST_STREAM, 0, stream_id, error_code.to_bytes(4, "big"))


def _string(text: bytes) -> bytes:
    # A plain (not Huffman) string literal: 7-bit prefix length, H bit clear.
    return bytes(hpack.hpack.encode_integer(len(text), 7)) + text
