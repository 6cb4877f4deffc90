"""Per-stream delays on their own: frames in with release times, frames out in a legal order."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from etcdlab.proxy.faults.base import Piece, ShapeContext
from etcdlab.proxy.faults.loss import Loss
from etcdlab.proxy.streamlanes import CONNECTION, FrameSpans, FrameTag, StreamLanes, delay_for

KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"
RANGE = "/etcdserverpb.KV/Range"


def test_other_streams_overtake_a_delayed_one() -> None:
    lanes = StreamLanes()
    lanes.push(b"k1", FrameTag(1, KEEPALIVE), release=0.5)
    lanes.push(b"r3", FrameTag(3, RANGE), release=0.0)
    lanes.push(b"ping", CONNECTION, release=0.0)
    assert lanes.pop_due(0.0)[0] == [b"r3", b"ping"]
    assert lanes.next_release == 0.5
    frames, tags = lanes.pop_due(0.5)
    assert frames == [b"k1"] and tags[0].path == KEEPALIVE
    assert not lanes and lanes.bytes == 0


def test_frames_of_one_stream_keep_their_order() -> None:
    lanes = StreamLanes()
    lanes.push(b"a", FrameTag(1, KEEPALIVE), release=0.5)
    lanes.push(b"b", FrameTag(1, KEEPALIVE), release=0.2)  # less jitter: still waits
    assert lanes.pop_due(0.4)[0] == []
    assert lanes.pop_due(0.5)[0] == [b"a", b"b"]


def test_header_blocks_never_pass_each_other_and_go_out_whole() -> None:
    lanes = StreamLanes()
    lanes.push(b"H1", FrameTag(1, KEEPALIVE, header=True, ends_block=True), release=0.5)
    # Stream 3's block is split: HEADERS without END_HEADERS, then CONTINUATION.
    lanes.push(b"H3", FrameTag(3, RANGE, header=True), release=0.0)
    assert lanes.pop_due(0.0)[0] == []
    lanes.push(b"C3", FrameTag(3, RANGE, header=True, ends_block=True), release=0.0)
    lanes.push(b"D3", FrameTag(3, RANGE), release=0.0)
    lanes.push(b"D5", FrameTag(5, RANGE), release=0.0)  # no header pending on stream 5
    assert lanes.pop_due(0.0)[0] == [b"D5"]
    assert lanes.pop_due(0.5)[0] == [b"H1", b"H3C3", b"D3"]


def test_a_block_held_by_its_stream_still_holds_later_blocks() -> None:
    lanes = StreamLanes()
    lanes.push(b"D1", FrameTag(1, KEEPALIVE), release=1.0)
    lanes.push(b"T1", FrameTag(1, KEEPALIVE, header=True, ends_block=True), release=0.0)
    lanes.push(b"H3", FrameTag(3, RANGE, header=True, ends_block=True), release=0.0)
    assert lanes.pop_due(0.5)[0] == []
    assert lanes.pop_due(1.0)[0] == [b"D1", b"T1", b"H3"]


def test_pop_all_lets_an_open_block_go_last() -> None:
    lanes = StreamLanes()
    lanes.push(b"D1", FrameTag(1, KEEPALIVE), release=9.0)
    lanes.push(b"H3", FrameTag(3, RANGE, header=True), release=0.0)
    frames, tags = lanes.pop_all()
    assert frames == [b"D1", b"H3"] and tags[1].stream_id == 3
    assert not lanes


def test_delay_never_holds_connection_frames() -> None:
    assert delay_for("etcdserverpb.Lease", FrameTag(1, KEEPALIVE))
    assert not delay_for("etcdserverpb.Lease", FrameTag(3, RANGE))
    assert not delay_for(None, CONNECTION)
    assert delay_for(None, FrameTag(3, RANGE))


frames_strategy = st.lists(
    st.tuples(
        st.integers(0, 4),  # stream (0: connection)
        st.floats(0, 1, allow_nan=False),  # release
        st.integers(0, 3),  # frames in its header block (0: not a header frame)
        st.floats(0, 1, allow_nan=False),  # pop time step
    ),
    max_size=40,
)


def numbered(frames: list[bytes], tags: list[FrameTag]) -> list[tuple[int, int, bool]]:
    """Each 2-byte label sent, with its stream and whether it was a header frame
    (a header block comes out as one piece of several labels)."""
    return [
        (int.from_bytes(piece[i : i + 2], "big"), tag.stream_id, tag.header)
        for piece, tag in zip(frames, tags, strict=True)
        for i in range(0, len(piece), 2)
    ]


@given(frames_strategy)
def test_any_schedule_keeps_every_order_that_matters(
    frames: list[tuple[int, float, int, float]],
) -> None:
    lanes = StreamLanes()
    out: list[tuple[int, int, bool]] = []
    now = 0.0
    label = 0
    sent_blocks: list[list[int]] = []
    for stream, release, block, step in frames:
        if stream == 0 or block == 0:
            lanes.push(label.to_bytes(2, "big"), FrameTag(stream, None), release=now + release)
            label += 1
        else:
            sent_blocks.append(list(range(label, label + block)))
            for part in range(block):
                tag = FrameTag(stream, None, header=True, ends_block=part == block - 1)
                lanes.push(label.to_bytes(2, "big"), tag, release=now + release)
                label += 1
        now += step
        out += numbered(*lanes.pop_due(now))
    out += numbered(*lanes.pop_all())
    assert sorted(n for n, _, _ in out) == list(range(label))
    for stream in range(5):
        labels = [n for n, s, _ in out if s == stream]
        assert labels == sorted(labels)
    blocks = [n for n, _, header in out if header]
    assert blocks == sorted(blocks)
    # A header block leaves whole: its labels are consecutive in the output.
    position = {n: index for index, (n, _, _) in enumerate(out)}
    for labels in sent_blocks:
        spots = [position[n] for n in labels]
        assert spots == list(range(spots[0], spots[0] + len(spots)))
    assert lanes.bytes == 0


def test_filtered_loss_only_touches_segments_of_matched_streams() -> None:
    loss = Loss(0.9, mss=100, method="etcdserverpb.Lease")
    frames = [b"r" * 150, b"k" * 100, b"p" * 50]
    tags = [FrameTag(3, RANGE), FrameTag(1, KEEPALIVE), CONNECTION]
    late = {0: 0, 1: 0, 2: 0}
    for seed in range(50):
        context = ShapeContext(now=0.0, rng=random.Random(seed))
        context.spans = FrameSpans(frames, tags)
        offset = 0
        for piece in loss.shape([Piece(300, 0.0)], context):
            if piece.release > 0:
                late[offset // 100] += 1
            offset += piece.size
        assert sum(context.applied.values()) <= 2
    # Segment 0 holds only Range bytes; 1 mixes Range and keepalive; 2 keepalive
    # and connection bytes.
    assert late[0] == 0 and late[1] > 0 and late[2] > 0
    # Without spans (a chunk nobody tagged) a filtered loss loses nothing.
    bare = ShapeContext(now=0.0, rng=random.Random(1))
    assert [p.release for p in loss.shape([Piece(300, 0.0)], bare)] == [0.0]
