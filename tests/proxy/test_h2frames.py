"""The sans-IO frame reader and the passive HPACK decoder, on byte literals."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import cast

import hpack
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from etcdlab.proxy import h2frames
from etcdlab.proxy.grpcwire import MessageCursor, exact_messages, trailers_frame
from etcdlab.proxy.h2frames import (
    ALL_TYPES,
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FLAG_PADDED,
    HEADER_TYPES,
    MAX_FRAME_SIZE_LIMIT,
    PREFACE,
    Frame,
    FrameReader,
    FrameType,
    PingBoundary,
    ProtocolError,
    Watcher,
    step_table,
    watch_frames,
)
from etcdlab.proxy.hpackpaths import RequestHeaders
from tests.conftest import require


def compiled_watch() -> Callable[..., int]:
    """The compiled stepper, which an install without a C compiler leaves out
    (then the calling test skips, or fails under CI=true)."""
    require(
        None
        if h2frames.COMPILED
        else "needs the compiled frame stepper (a C compiler and Python's headers at install)"
    )
    from etcdlab.proxy import _h2step

    return _h2step.watch


def compiled_watcher() -> type[Watcher]:
    compiled_watch()
    from etcdlab.proxy import _h2step

    return _h2step.Watcher


PING = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678"
SETTINGS_EMPTY = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
DATA_STREAM_1 = b"\x00\x00\x03\x00\x01\x00\x00\x00\x01abc"


def joined(pieces: list[bytes | Frame]) -> bytes:
    return b"".join(p.raw if isinstance(p, Frame) else p for p in pieces)


def test_preface_then_frames_of_interest() -> None:
    reader = FrameReader(preface=True, interest={FrameType.PING})
    out = reader.feed(PREFACE + SETTINGS_EMPTY + PING + DATA_STREAM_1)
    assert out[0] == PREFACE + SETTINGS_EMPTY
    ping = out[1]
    assert isinstance(ping, Frame)
    assert (ping.type, ping.flags, ping.stream_id, ping.payload) == (6, 0, 0, b"12345678")
    assert out[2] == DATA_STREAM_1
    assert reader.at_boundary


def test_bad_preface_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="preface"):
        FrameReader(preface=True).feed(b"GET / HTTP/1.1\r\n")


def test_the_client_preface_ends_with_settings() -> None:
    # Nothing may be injected between the 24 bytes and the SETTINGS frame.
    reader = FrameReader(preface=True)
    reader.feed(PREFACE)
    assert not reader.at_boundary
    reader.feed(SETTINGS_EMPTY)
    assert reader.at_boundary
    with pytest.raises(ProtocolError, match="SETTINGS"):
        FrameReader(preface=True).feed(PREFACE + PING)


def test_byte_by_byte_gives_the_same_frames() -> None:
    stream = PREFACE + SETTINGS_EMPTY + PING + DATA_STREAM_1 + PING
    reader = FrameReader(preface=True, interest=ALL_TYPES)
    pieces: list[bytes | Frame] = []
    for i in range(len(stream)):
        pieces += reader.feed(stream[i : i + 1])
    assert joined(pieces) == stream
    frames = [p for p in pieces if isinstance(p, Frame)]
    assert [f.type for f in frames] == [4, 6, 0, 6]
    assert frames[2].payload == b"abc"


def test_skipped_frames_pass_through_untouched() -> None:
    big = (16384).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x03" + b"x" * 16384
    reader = FrameReader(preface=False)
    first = reader.feed(big[:100])
    assert first == [big[:100]]
    assert not reader.at_boundary
    assert reader.feed(big[100:]) == [big[100:]]
    assert reader.at_boundary


def test_interest_changes_apply_from_the_next_frame() -> None:
    reader = FrameReader(preface=False, interest=())
    assert reader.feed(PING[:4]) == []
    reader.interest = frozenset({FrameType.PING})
    out = reader.feed(PING[4:] + PING)
    # The held header completes in the second call, so both PINGs are frames.
    assert [type(p) for p in out] == [Frame, Frame]
    assert joined(out) == PING + PING


@pytest.mark.parametrize(
    "frame, message",
    [
        (b"\x00\x00\x07\x06\x00\x00\x00\x00\x00" + b"1234567", "PING frame with length 7"),
        (b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"12345", "SETTINGS frame with length 5"),
        (b"\x00\x00\x00\x01\x04\x00\x00\x00\x00", "HEADERS frame on stream 0"),
        (b"\x00\x00\x08\x06\x00\x00\x00\x00\x03" + b"12345678", "PING frame on stream 3"),
        (b"\x00\x00\x00\x09\x04\x00\x00\x00\x01", "CONTINUATION without"),
    ],
)
def test_malformed_frames(frame: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        FrameReader(preface=False).feed(frame)


def test_header_block_must_not_be_interrupted() -> None:
    headers_open = b"\x00\x00\x01\x01\x00\x00\x00\x00\x01\x82"
    with pytest.raises(ProtocolError, match="interrupted"):
        FrameReader(preface=False).feed(headers_open + PING)


def test_no_boundary_inside_a_header_block() -> None:
    # A frame of the proxy's own may not go between HEADERS and CONTINUATION.
    headers_open = Frame.build(FrameType.HEADERS, 0, 1, b"\x82").raw
    continuation = Frame.build(FrameType.CONTINUATION, FLAG_END_HEADERS, 1, b"\x84").raw
    for watch in (False, True):
        reader = FrameReader(preface=False)
        (reader.frames if watch else reader.feed)(headers_open)
        assert not reader.at_boundary
        (reader.frames if watch else reader.feed)(continuation)
        assert reader.at_boundary


def test_huge_length_is_rejected_before_buffering() -> None:
    reader = FrameReader(preface=False, interest=ALL_TYPES, max_frame_size=16384)
    with pytest.raises(ProtocolError, match="exceeds"):
        reader.feed(b"\xff\xff\xff\x00\x00\x00\x00\x00\x01")


def test_padding_is_stripped() -> None:
    frame = Frame.build(FrameType.DATA, FLAG_PADDED, 1, b"\x02abc\x00\x00")
    assert frame.data_without_padding() == b"abc"
    bad = Frame.build(FrameType.DATA, FLAG_PADDED, 1, b"\x09abc")
    with pytest.raises(ProtocolError):
        bad.data_without_padding()


def headers_frame(stream_id: int, block: bytes, flags: int = FLAG_END_HEADERS) -> Frame:
    return Frame.build(FrameType.HEADERS, flags, stream_id, block)


def test_paths_follow_the_dynamic_table() -> None:
    encoder = hpack.Encoder()
    decoder = RequestHeaders()
    request = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/etcdserverpb.KV/Range"),
        (":authority", "127.0.0.1:2379"),
        ("content-type", "application/grpc"),
    ]
    first = decoder.feed(headers_frame(1, encoder.encode(request, huffman=True)))
    assert first == (1, "/etcdserverpb.KV/Range")
    # The second block refers to the first one's entries in the dynamic table.
    second_block = encoder.encode(request, huffman=True)
    assert len(second_block) < 10
    second = decoder.feed(headers_frame(3, second_block))
    assert second == (3, "/etcdserverpb.KV/Range")


def test_a_repeated_block_means_what_the_table_says_now() -> None:
    # The decoder remembers blocks it has decoded; once the dynamic table has
    # changed, the same bytes must be decoded afresh.
    encoder = hpack.Encoder()
    decoder = RequestHeaders()
    paths = ["/a", "/a", "/b", "/b", "/a"]
    blocks = [encoder.encode([(":path", path)]) for path in paths]
    assert blocks[1] == blocks[3]
    decoded = [decoder.feed(headers_frame(2 * i + 1, b)) for i, b in enumerate(blocks)]
    assert decoded == [(2 * i + 1, path) for i, path in enumerate(paths)]


def test_continuation_completes_the_block() -> None:
    block = hpack.Encoder().encode([(":path", "/etcdserverpb.Lease/LeaseKeepAlive")])
    decoder = RequestHeaders()
    assert decoder.feed(headers_frame(5, block[:3], flags=FLAG_END_STREAM)) is None
    done = decoder.feed(Frame.build(FrameType.CONTINUATION, FLAG_END_HEADERS, 5, block[3:]))
    assert done == (5, "/etcdserverpb.Lease/LeaseKeepAlive")


def test_table_size_update_is_followed() -> None:
    encoder = hpack.Encoder()
    decoder = RequestHeaders()
    decoder.feed(headers_frame(1, encoder.encode([("x-big", "v" * 100)])))
    encoder.header_table_size = 8192
    block = encoder.encode([("x-big", "v" * 100), (":path", "/a/b")])
    assert decoder.feed(headers_frame(3, block)) == (3, "/a/b")


header_names = st.sampled_from([":path", ":authority", "content-type", "x-a", "grpc-timeout"])
header_values = st.text(alphabet="abcdefghijklmnopqrstuvwxyz/._-0123456789", max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    blocks=st.lists(
        st.lists(st.tuples(header_names, header_values), min_size=1, max_size=6),
        min_size=1,
        max_size=12,
    ),
    huffman=st.booleans(),
    table_sizes=st.lists(st.sampled_from([0, 64, 256, 4096]), max_size=12),
)
def test_paths_agree_with_a_reference_encoder(
    blocks: list[list[tuple[str, str]]], huffman: bool, table_sizes: list[int]
) -> None:
    encoder = hpack.Encoder()
    decoder = RequestHeaders()
    for index, headers in enumerate(blocks):
        if index < len(table_sizes):
            encoder.header_table_size = table_sizes[index]
        sensitive = [(n, v, n == "grpc-timeout") for n, v in headers]
        block = encoder.encode(sensitive, huffman=huffman)
        paths = [v for n, v in headers if n == ":path"]
        stream_id = 2 * index + 1
        expected = paths[-1] if paths else None
        assert decoder.feed(headers_frame(stream_id, block)) == (stream_id, expected)


def test_garbage_block_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        RequestHeaders().feed(headers_frame(1, b"\xff\xff\xff\xff\xff\xff\xff"))


def test_injected_trailers_leave_the_table_alone() -> None:
    frame = trailers_frame(3, 14, "dropped by proxy", with_response_headers=True)
    assert (frame.type, frame.flags, frame.stream_id) == (FrameType.HEADERS, 0x5, 3)
    block = frame.payload
    decoder = hpack.Decoder()
    assert [(str(n), str(v)) for n, v in decoder.decode(block)] == [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "14"),
        ("grpc-message", "dropped by proxy"),
    ]
    assert len(decoder.header_table.dynamic_entries) == 0


def test_message_cursor_finds_boundaries() -> None:
    cursor = MessageCursor()
    message = b"\x00\x00\x00\x00\x03abc"
    assert cursor.feed(message + message) == (True, True)
    assert cursor.feed(message[:2]) == (True, False)
    assert cursor.feed(message[2:6]) == (False, False)
    assert cursor.feed(message[6:]) == (False, True)


def test_exact_messages() -> None:
    message = b"\x00\x00\x00\x00\x03abc"
    assert exact_messages(message)
    assert exact_messages(message + b"\x01\x00\x00\x00\x00")
    assert not exact_messages(message[:-1])
    assert not exact_messages(b"\x07" + message[1:])
    assert not exact_messages(b"")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), preface=st.booleans(), cut=st.integers(0, 400))
def test_arbitrary_bytes_only_raise_protocol_error(data: bytes, preface: bool, cut: int) -> None:
    reader = FrameReader(preface=preface, interest=ALL_TYPES, max_frame_size=1024)
    decoder = RequestHeaders()
    try:
        pieces = reader.feed(data[:cut]) + reader.feed(data[cut:])
        for piece in pieces:
            if isinstance(piece, Frame):
                decoder.feed(piece)
    except ProtocolError:
        pass


any_frame = st.builds(
    lambda t, f, s, p: Frame.build(t, f, s, p).raw,
    st.integers(0, 12),
    st.sampled_from([0, FLAG_END_HEADERS, FLAG_END_STREAM, 0xFF]),
    st.sampled_from([0, 1, 3]),
    st.binary(max_size=20),
)


@settings(max_examples=400, deadline=None)
@given(frames=st.lists(any_frame, max_size=10), cut=st.integers(0, 300))
def test_skipping_frames_checks_them_as_collecting_them_does(frames: list[bytes], cut: int) -> None:
    # Frames outside the interest set are passed over by a shortcut; it must
    # find exactly the errors the full path finds, at the same place.
    stream = b"".join(frames)
    outcomes: list[str] = []
    for interest in (frozenset[int](), ALL_TYPES):
        reader = FrameReader(preface=False, interest=interest)
        try:
            reader.feed(stream[:cut])
            reader.feed(stream[cut:])
            outcomes.append(f"fed whole, at a boundary: {reader.at_boundary}")
        except ProtocolError as error:
            outcomes.append(f"error: {error}")
    assert outcomes[0] == outcomes[1]


frame_strategy = st.builds(
    lambda t, f, s, p: Frame.build(t, f, s, p).raw,
    st.sampled_from([FrameType.DATA, FrameType.PRIORITY, 0x20]),
    st.integers(0, 255),
    st.integers(1, 2**31 - 1),
    st.binary(max_size=64),
)


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(frame_strategy, max_size=8),
    cuts=st.lists(st.integers(0, 600), max_size=6),
    interest=st.sets(st.sampled_from([0, 2, 0x20])),
)
def test_valid_streams_come_back_byte_for_byte(
    frames: list[bytes], cuts: list[int], interest: set[int]
) -> None:
    stream = PREFACE + SETTINGS_EMPTY + b"".join(frames)
    reader = FrameReader(preface=True, interest=interest)
    pieces: list[bytes | Frame] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        pieces += reader.feed(stream[start : max(start, cut)])
        start = max(start, cut)
    assert joined(pieces) == stream
    assert reader.at_boundary
    assert sum(isinstance(p, Frame) for p in pieces) == sum(f[3] in interest for f in frames)


def chunks_of(stream: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *sorted(min(cut, len(stream)) for cut in cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


server_frame = st.one_of(
    frame_strategy,
    st.builds(
        lambda flags, payload: Frame.build(FrameType.PING, flags, 0, payload).raw,
        st.sampled_from([0, FLAG_ACK]),
        st.binary(min_size=8, max_size=8),
    ),
    st.builds(
        lambda stream, block: Frame.build(FrameType.HEADERS, FLAG_END_HEADERS, stream, block).raw,
        st.integers(1, 2**31 - 1),
        st.binary(max_size=40),
    ),
    st.builds(
        lambda stream, increment: (
            Frame.build(FrameType.WINDOW_UPDATE, 0, stream, increment.to_bytes(4, "big")).raw
        ),
        st.integers(0, 9),
        st.integers(1, 2**31 - 1),
    ),
)


@settings(max_examples=400, deadline=None)
@given(
    frames=st.lists(st.one_of(server_frame, any_frame), max_size=10),
    cuts=st.lists(st.integers(0, 300), max_size=4),
    interest=st.sampled_from([frozenset[int](), HEADER_TYPES, ALL_TYPES]),
)
def test_watching_sees_what_forwarding_sees(
    frames: list[bytes], cuts: list[int], interest: frozenset[int]
) -> None:
    # frames() checks less than feed() (only what following needs), so on bad
    # input it may fail later or not at all; on anything feed() accepts it
    # must see the same frames and the same boundaries.
    forwarding = FrameReader(preface=False, interest=interest)
    watching = FrameReader(preface=False, interest=interest)
    fed: list[Frame] = []
    watched: list[Frame] = []
    for chunk in chunks_of(b"".join(frames), cuts):
        try:
            fed += [p for p in forwarding.feed(chunk) if isinstance(p, Frame)]
        except ProtocolError:
            return
        watched += watching.frames(chunk)
        assert forwarding.at_boundary == watching.at_boundary
    assert [f.raw for f in watched] == [f.raw for f in fed]


def as_fields(*fields: object) -> tuple[object, ...]:
    return fields


def refusing_odd_streams(*fields: int | bytes) -> tuple[object, ...] | None:
    # A frame factory may stop the loop by returning None.
    return None if isinstance(fields[2], int) and fields[2] % 2 else fields


# Frames at the edges of the rules: every type, on stream 0 or not, with
# payload lengths around the fixed ones (PING 8, RST_STREAM and WINDOW_UPDATE
# 4, SETTINGS a multiple of 6).
edge_frame = st.builds(
    lambda t, f, s, n: Frame.build(t, f, s, bytes(n)).raw,
    st.integers(0, 12),
    st.sampled_from([0, FLAG_END_HEADERS, 0xFF]),
    st.sampled_from([0, 1, 3]),
    st.sampled_from([0, 4, 6, 7, 8, 12]),
)


@settings(max_examples=2000, deadline=None)
@given(
    stream=st.one_of(
        st.lists(st.one_of(edge_frame, server_frame, any_frame), max_size=12).map(b"".join),
        st.binary(max_size=200),
    ),
    pos=st.one_of(st.just(0), st.integers(0, 30)),
    interest=st.one_of(
        st.just(ALL_TYPES), st.just(HEADER_TYPES), st.frozensets(st.integers(0, 12))
    ),
    max_size=st.sampled_from([MAX_FRAME_SIZE_LIMIT, 12, 8]),
)
def test_the_compiled_stepper_agrees_with_the_reference(
    stream: bytes, pos: int, interest: frozenset[int], max_size: int
) -> None:
    # The watching path runs _h2step.watch (C); watch_frames is its
    # pure-Python reference: the same frames taken, the same stop, on any bytes.
    watch = compiled_watch()
    table = step_table(interest)
    for frame in (as_fields, refusing_odd_streams):
        compiled: list[tuple[object, ...]] = []
        reference: list[tuple[object, ...]] = []
        stop = watch(stream, pos, table, max_size, frame, compiled)
        assert stop == watch_frames(stream, pos, table, max_size, frame, reference)
        assert compiled == reference


def test_the_compiled_stepper_agrees_with_the_reference_at_every_rule() -> None:
    # Each rule's edge, one frame at a time (then a PING, to show where it
    # stopped): every type, on stream 0 or not, lengths around the fixed
    # ones, a header block ended or not, over the size limit or not, whole
    # or cut by the end of the data.
    watch = compiled_watch()
    after = Frame.build(FrameType.PING, 0, 0, bytes(8)).raw
    for frame_type, stream, length, flags, interest, max_size, cut in itertools.product(
        [*range(13), 0x20],
        [0, 1, 2**31 - 1],
        [0, 4, 6, 7, 8, 12],
        [0, FLAG_END_HEADERS, 0xFF],
        [frozenset[int](), ALL_TYPES],
        [MAX_FRAME_SIZE_LIMIT, 7],
        [0, 1],
    ):
        data = Frame.build(frame_type, flags, stream, bytes(length)).raw + after
        data = data[: len(data) - len(after) - cut] if cut else data
        table = step_table(interest)
        compiled: list[tuple[object, ...]] = []
        reference: list[tuple[object, ...]] = []
        stop = watch(data, 0, table, max_size, as_fields, compiled)
        assert stop == watch_frames(data, 0, table, max_size, as_fields, reference), data
        assert compiled == reference, data


def test_the_compiled_stepper_refuses_what_it_cannot_read() -> None:
    watch = compiled_watch()
    table = step_table(HEADER_TYPES)
    out: list[object] = []
    with pytest.raises(TypeError):
        watch(bytearray(PING), 0, table, 16, Frame, out)
    with pytest.raises(ValueError, match="512"):
        watch(PING, 0, table[:-1], 16, Frame, out)
    with pytest.raises(ValueError, match="negative"):
        watch(PING, -1, table, 16, Frame, out)
    # An exception from making a frame comes out of the loop as it is.
    with pytest.raises(ZeroDivisionError):
        watch(PING, 0, step_table(ALL_TYPES), 16, lambda *_: 1 // 0, out)
    assert out == []


BLOCKS = (b"\x83\x86", b"\x83\x86\xc0", b"", b"\x88")


def run_watchers(
    chunks: list[bytes], known: dict[bytes, str | None], skip: int, max_size: int, batch: int
) -> None:
    """Feed ``chunks`` to both watchers; after a stop, go on from the next
    chunk as if the general path had read up to its end."""
    table = step_table(HEADER_TYPES)
    paths: tuple[dict[int, str], dict[int, str]] = ({}, {})
    both = (
        compiled_watcher()(table, max_size, known, paths[0], batch),
        Watcher(table, max_size, known, paths[1], batch),
    )
    for watcher in both:
        watcher.skip = skip
    for chunk in chunks:
        stops = [watcher.watch(chunk) for watcher in both]
        assert stops[0] == stops[1], chunk
        states = [(w.skip, w.max_stream, w.blocks) for w in both]
        assert states[0] == states[1], chunk
        assert paths[0] == paths[1]
        if stops[0] is not None:
            for watcher in both:
                watcher.skip = watcher.blocks = 0


# A client's frames: header blocks (known or not, whole or not, padded or
# not), DATA, PING and WINDOW_UPDATE, and the rule edges above.
client_frame = st.one_of(
    st.builds(
        lambda flags, stream, block: Frame.build(FrameType.HEADERS, flags, stream, block).raw,
        st.sampled_from(
            [FLAG_END_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 0, FLAG_END_HEADERS | 0x28]
        ),
        st.sampled_from([0, 1, 3, 2**31 - 1]),
        st.sampled_from(BLOCKS),
    ),
    edge_frame,
    server_frame,
)


@settings(max_examples=2000, deadline=None)
@given(
    stream=st.one_of(
        st.lists(client_frame, max_size=12).map(b"".join),
        st.binary(max_size=200),
    ),
    cuts=st.lists(st.integers(0, 300), max_size=5),
    known=st.dictionaries(
        st.sampled_from(BLOCKS), st.sampled_from([None, "/etcdserverpb.KV/Range", "/a/B"])
    ),
    skip=st.sampled_from([0, 0, 3, 20]),
    max_size=st.sampled_from([MAX_FRAME_SIZE_LIMIT, 12, 8]),
    batch=st.sampled_from([1, 2, 256]),
)
def test_the_compiled_watcher_agrees_with_the_reference(
    stream: bytes,
    cuts: list[int],
    known: dict[bytes, str | None],
    skip: int,
    max_size: int,
    batch: int,
) -> None:
    # The proxy runs _h2step.Watcher (C) with no fault on; h2frames.Watcher
    # is its pure-Python reference: the same stops, skips, streams, counts
    # and paths, on any bytes cut anywhere.
    run_watchers(chunks_of(stream, cuts), known, skip, max_size, batch)


def test_the_compiled_watcher_agrees_with_the_reference_at_every_rule() -> None:
    # Each rule's edge one frame at a time, as for watch() above, plus header
    # blocks known or not, padded or with a priority, then a PING.
    after = Frame.build(FrameType.PING, 0, 0, bytes(8)).raw
    for frame_type, stream, block, flags, known, max_size, cut in itertools.product(
        [*range(13), 0x20],
        [0, 1, 2**31 - 1],
        [b"", b"\x83\x86", bytes(4), bytes(8)],
        [0, FLAG_END_HEADERS, FLAG_END_HEADERS | FLAG_PADDED, FLAG_END_HEADERS | 0x20, 0xFF],
        [{}, {b"\x83\x86": "/a/B", bytes(4): None, bytes(8): "/a/C"}],
        [MAX_FRAME_SIZE_LIMIT, 7],
        [0, 1, 12],
    ):
        data = Frame.build(frame_type, flags, stream, block).raw + after
        data = data[: len(data) - len(after) - cut] if cut else data
        run_watchers([data, after, data], known, 0, max_size, 2)


def test_the_compiled_watcher_refuses_what_it_cannot_read() -> None:
    watcher = compiled_watcher()
    table = step_table(HEADER_TYPES)
    with pytest.raises(ValueError, match="512"):
        watcher(table[:-1], 16, {}, {}, 1)
    with pytest.raises(TypeError):
        watcher(table, 16, [], {}, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        watcher(table, 16, {}, {}, 1).watch(bytearray(PING))  # type: ignore[arg-type]
    # An exception from the cache's lookup comes out of the loop as it is.

    class Raising:
        def __hash__(self) -> int:
            return hash(b"\x83")

        def __eq__(self, other: object) -> bool:
            raise ZeroDivisionError

    known = cast(dict[bytes, str | None], {Raising(): None})
    block = Frame.build(FrameType.HEADERS, FLAG_END_HEADERS, 1, b"\x83").raw
    with pytest.raises(ZeroDivisionError):
        watcher(table, 16, known, {}, 1).watch(block)


@settings(max_examples=400, deadline=None)
@given(
    frames=st.lists(server_frame, max_size=8),
    at=st.integers(0, 8),
    cuts=st.lists(st.integers(0, 700), max_size=6),
    payload=st.binary(min_size=8, max_size=8),
)
def test_a_ping_ack_marks_a_frame_boundary(
    frames: list[bytes], at: int, cuts: list[int], payload: bytes
) -> None:
    # A connection joined in the middle: the bytes up to our PING's ACK pass
    # unread, and a reader started right after it sees exactly the frames
    # that follow, however the bytes are cut.
    at = min(at, len(frames))
    ack = Frame.build(FrameType.PING, FLAG_ACK, 0, payload).raw
    head, rest = b"".join(frames[:at]), b"".join(frames[at:])
    stream = head + ack + rest
    # What the proxy relies on: nobody else sends our payload before the ACK.
    assume(stream.find(ack) == len(head))
    finder = PingBoundary(payload)
    passed = b""
    reader: FrameReader | None = None
    after: list[Frame] = []
    start = 0
    for chunk in chunks_of(stream, cuts):
        start += len(chunk)
        if reader is not None:
            after += reader.frames(chunk)
            continue
        found = finder.feed(chunk)
        if found is None:
            passed += chunk
            continue
        before, following = found
        passed += before
        assert following == stream[len(head) + len(ack) : start]
        reader = FrameReader(preface=False, interest=ALL_TYPES)
        after += reader.frames(following)
        # The ACK is kept back exactly when it lies whole in this chunk.
        whole = start - len(chunk) <= len(head)
        assert passed == (head if whole else head + ack)
    assert reader is not None and reader.at_boundary
    assert [f.raw for f in after] == frames[at:]
