"""Passive HPACK decoding of request header blocks: which stream calls which method.

A proxy that reads ``:path`` has to decode every header block of the
client-to-server direction in order, because HPACK's dynamic table is shared
by all of them. Decoding uses the ``hpack`` library; this module only
reassembles HEADERS + CONTINUATION into blocks and keeps the table in step
with whatever size the encoder announces (a passive reader must follow the
encoder, not enforce a limit of its own).
"""

from __future__ import annotations

import hpack
from hpack.exceptions import HPACKError

from proxy.h2frames import FLAG_END_HEADERS, Frame, FrameType, ProtocolError

# The largest table SETTINGS_HEADER_TABLE_SIZE can announce (a 32-bit value).
_ANY_TABLE_SIZE = 2**32 - 1
# Bound on a reassembled block: a hostile client must not make us buffer forever.
MAX_BLOCK_SIZE = 1 << 20


class RequestHeaders:
    """Feeds on HEADERS/CONTINUATION frames of one direction, yields decoded blocks."""

    def __init__(self) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=MAX_BLOCK_SIZE)
        self._decoder.max_allowed_table_size = _ANY_TABLE_SIZE
        self._block = bytearray()
        self._stream_id = 0

    def feed(self, frame: Frame) -> tuple[int, dict[str, str]] | None:
        """Return ``(stream_id, headers)`` once a header block is complete."""
        if frame.type == FrameType.HEADERS:
            self._stream_id = frame.stream_id
            self._block = bytearray(frame.data_without_padding())
        elif frame.type == FrameType.CONTINUATION:
            self._block += frame.payload
        else:
            return None
        if len(self._block) > MAX_BLOCK_SIZE:
            raise ProtocolError("header block too large")
        if not frame.flags & FLAG_END_HEADERS:
            return None
        block = bytes(self._block)
        self._block = bytearray()
        try:
            decoded = self._decoder.decode(block, raw=True)
        except (HPACKError, ValueError, IndexError) as error:
            raise ProtocolError(f"undecodable header block: {error}") from error
        headers = {
            bytes(name).decode("latin-1"): bytes(value).decode("latin-1") for name, value in decoded
        }
        return self._stream_id, headers
