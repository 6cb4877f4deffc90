"""One direction of one connection: read, shape, hold or drop, write in order.

With no fault active a pipe writes every chunk straight from
``data_received`` to the other transport; the only per-chunk work on an
HTTP/2 link is following frame headers (skipping payloads) and decoding
request header blocks, which HPACK's shared state makes necessary from the
first byte if a method filter is to work on streams opened before the
filter: one call into compiled code per chunk while the blocks are ones
read before (see Pipe._lend).

Bytes never overtake earlier bytes of the same direction: every shaped chunk
is released no earlier than the chunk before it, which is what makes the
TCP loss model's head-of-line blocking hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from etcdlab.proxy.blocking import Gate, limited
from etcdlab.proxy.faults.base import UPSTREAM, Fault, Late, Piece, ShapeContext, reveal
from etcdlab.proxy.grpcwire import MessageCursor
from etcdlab.proxy.h2frames import (
    ALL_TYPES,
    HEADER_TYPES,
    Frame,
    FrameReader,
    PingBoundary,
    ProtocolError,
    Watcher,
    step_table,
    watcher,
)
from etcdlab.proxy.plan import Plan, Variant
from etcdlab.proxy.streamlanes import CONNECTION, FrameSpans, FrameTag, StreamLanes, delay_for

if TYPE_CHECKING:
    from etcdlab.proxy.connection import Connection

_NO_TYPES: frozenset[int] = frozenset()
# Bytes of one direction followed in one go while no fault needs frames at
# once (see Pipe.catch_up). Larger batches cost less per call on a busy
# machine, where each batch starts with cold caches (measured: 4, 16 and 64
# KiB, docs/BENCHMARKS.md), but hold the event loop longer: a batch of 16 KiB
# of gRPC calls takes a few tenths of a millisecond.
FOLLOW_BATCH = 16384
# Header blocks the watcher follows before it hands back, so that they are
# counted and the streams' paths trimmed (see Pipe._lend).
WATCH_BATCH = 256
# A loan of the following that ends after fewer header blocks than this is
# short; after SHORT_LOANS short ones in a row the reader follows a batch.
SHORT_LOAN = 16
SHORT_LOANS = 4


class Slot:
    """Queued bytes: due at ``release`` (may move earlier), read at ``arrived``;
    ``late`` when a fault's timers hold them back (see :class:`Late`)."""

    __slots__ = ("arrived", "data", "late", "release")

    def __init__(
        self, release: float, arrived: float, data: bytes, late: Late | None = None
    ) -> None:
        self.release = release
        self.arrived = arrived
        self.data = data
        self.late = late


class Pipe:
    """One direction of one connection: read from ``source``, write to ``dest``."""

    def __init__(self, conn: Connection, direction: str) -> None:
        self.conn = conn
        self.link = conn.link
        self.direction = direction
        self._rng: random.Random | None = None
        self._ctx: ShapeContext | None = None
        # Each fault's state for this direction (a loss fault's TCP sender), kept
        # here so the other direction's context can reach it before this one's exists.
        self.fault_state: dict[Fault, Any] = {}
        self.source: asyncio.Transport | None = None
        self.dest: asyncio.Transport | None = None
        # Frame mode: output is rebuilt frame by frame so frames can be dropped
        # or injected. Otherwise the bytes read are written as they are and
        # frames are only watched. Modes change only on a frame boundary.
        self.frame_mode = False
        self.reader: FrameReader | None = None
        # Bytes passed on but not yet followed, and when to follow them (catch_up).
        self.backlog: list[bytes] = []
        self.backlog_bytes = 0
        self.follow_after = 0
        # Looking for a frame boundary of the server's (see _start_resync).
        self.resync: PingBoundary | None = None
        # Follows the client's frames in compiled code, where the reader lends
        # it the following (see _lend); ``watch`` is its watch() while it does.
        self.watcher: Watcher | None = None
        self.watch: Callable[[bytes], int | None] | None = None
        self.short_loans = 0
        if self.link.http2:
            # A connection made while frame faults are on starts in frame mode:
            # its first chunk may already hold requests (a boundary to switch
            # on comes only after the preface). Client to server is followed
            # from the first byte, for HPACK; server to client only from the
            # first frame-aware fault (see _start_resync).
            self.frame_mode = self.link.frame_aware
            if direction == UPSTREAM or self.frame_mode:
                self.reader = FrameReader(preface=direction == UPSTREAM, interest=self._interest())
            requests = conn.requests
            if direction == UPSTREAM and requests is not None and self.reader is not None:
                self.watcher = watcher(
                    step_table(HEADER_TYPES),
                    self.reader.max_frame_size,
                    requests.known,
                    requests.paths,
                    WATCH_BATCH,
                )
        self.queue: deque[Slot] = deque()
        self.queued_bytes = 0
        # Lost segments still waiting on a timer that later bytes may cut short.
        self.recoverable: list[Slot] = []
        self.timer: asyncio.TimerHandle | None = None
        # Frames held per stream by method-filtered latency, and their timer.
        self.lanes: StreamLanes | None = None
        self.lane_timer: asyncio.TimerHandle | None = None
        # The stream of each piece on its way to _emit, when the plan is tagged.
        self.tags: list[FrameTag] | None = None
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.pending_inject: list[bytes] = []
        self.pause_reasons: set[str] = set()
        # The sender blocked on its send buffer (etcdlab.proxy.blocking), once it was.
        self.gate: Gate | None = None
        self.stalled: list[bytes] = []
        self.plan_key: tuple[str, Variant] = (direction, None)
        self.messages: dict[int, MessageCursor | None] = {}
        # Streams up to this id were open before frame mode began: their message
        # boundaries are unknown until a frame holding exactly whole messages.
        self.synced_after = 0
        self.eof = False
        self.closed = False

    @property
    def rng(self) -> random.Random:
        # Seeding costs more than the rest of a connection's set-up; most
        # connections never meet a fault that draws from it.
        if self._rng is None:
            self._rng = self.link.rng(self.conn.index, self.direction)
        return self._rng

    @property
    def ctx(self) -> ShapeContext:
        if self._ctx is None:
            self._ctx = ShapeContext(
                now=0.0,
                rng=self.rng,
                state=self.fault_state,
                peer_state=self.conn.reverse(self).fault_state,
            )
        return self._ctx

    # -- reading -------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        if self.pause_reasons and self.source is not None:
            # Read although paused (uvloop starts reading after connection_made
            # even if it paused): keep it for later and ask again.
            self.stalled.append(data)
            self.source.pause_reading()
            return
        link = self.link
        link.counters.bytes[self.direction] += len(data)
        if self.conn.sniff is not None and self.direction == UPSTREAM:
            self.conn.sniff_dialer(data)
            if self.conn.done:
                return
        if self.resync is not None:
            self._resynchronise(data)
            return
        if (
            not self.frame_mode
            and link.plans[self.plan_key].idle
            and not self.queue
            and not self.held
            and self.dest is not None
        ):
            # _take's first case, inlined: a method call per chunk is a
            # measurable share of the proxy's CPU. Forward first and follow
            # the frames afterwards (by the watcher, or in batches, see
            # catch_up): the parsing then runs while the receiver is already
            # working.
            self.dest.write(data)
            watch = self.watch
            if watch is not None:
                stop = watch(data)
                if stop is not None:
                    self._stopped(data, stop)
            elif self.reader is not None:
                self.backlog.append(data)
                self.backlog_bytes += len(data)
                if self.backlog_bytes >= self.follow_after:
                    self._follow()
            return
        self._take(data)

    def _take(self, data: bytes) -> None:
        """Forward ``data``: as it is or shaped, held, or frame by frame."""
        plan = self.link.plans[self.plan_key]
        reader = self.reader
        direct = plan.idle and not self.queue and not self.held and self.dest is not None
        if not self.frame_mode:
            if direct:
                assert self.dest is not None
                self.dest.write(data)
            else:
                self._emit([data], plan)
            watch = self.watch
            if watch is not None:
                stop = watch(data)
                if stop is not None:
                    self._stopped(data, stop)
            elif reader is not None:
                self.backlog.append(data)
                self.backlog_bytes += len(data)
                if self.backlog_bytes >= self.follow_after:
                    self._follow()
            return
        assert reader is not None
        pieces: list[bytes]
        try:
            parsed = reader.feed(data)
            if len(parsed) == 1 and type(parsed[0]) is bytes:
                pieces = cast(list[bytes], parsed)
            elif plan.tagged:
                # A tagged plan is never idle: _emit takes the tags.
                self.tags = []
                pieces = self.conn.on_frames(self, parsed, plan, self.tags)
            else:
                pieces = self.conn.on_frames(self, parsed, plan)
        except ProtocolError as error:
            self.conn.protocol_error(self, error)
            return
        if not self.link.frame_aware and reader.at_boundary:
            self.switch_mode()
        if direct and self.dest is not None:
            if len(pieces) == 1:
                self.dest.write(pieces[0])
            elif pieces:
                self.dest.write(b"".join(pieces))
        else:
            self._emit(pieces, plan)
        if self.pending_inject:
            self._send_injected()

    def _follow(self) -> None:
        """Follow the bytes passed on so far (:meth:`catch_up`); then enter or
        leave frame mode as the link wants, and send frames of our own that
        waited, if this is a frame boundary."""
        if not self.catch_up():
            return
        if self.link.frame_aware != self.frame_mode:
            self.switch_mode()
        if self.pending_inject:
            self._send_injected()

    def catch_up(self) -> bool:
        """Follow the bytes passed on but not yet followed; False if they were
        not HTTP/2 (the connection is then closed).

        Outside frame mode frames are only watched, and while nothing needs
        more, in batches: the chunks are kept (not copied) and read in one go
        once they add up to ``follow_after`` bytes (FOLLOW_BATCH), or when
        something needs the reader's state (a frame boundary, the streams'
        paths). Reading a batch costs about what reading one of its chunks
        does. ``follow_after`` is 0, every chunk read at once, until the
        preface has passed (a connection that is not HTTP/2 at all is closed on
        its first bytes), while a frame-aware fault is on, and while frames of
        our own wait for a boundary.
        """
        if self.watch is not None:
            self._take_back()
        backlog = self.backlog
        reader = self.reader
        if backlog and reader is not None:
            data = backlog[0] if len(backlog) == 1 else b"".join(backlog)
            backlog.clear()
            self.backlog_bytes = 0
            try:
                frames = reader.frames(data)
                if frames:
                    self.conn.observe(self, frames)
            except ProtocolError as error:
                self.conn.protocol_error(self, error)
                return False
        self._batch()
        return True

    def _batch(self) -> None:
        """Set how many bytes may go by before they are followed (catch_up),
        and lend the following to the watcher where it can take it."""
        reader = self.reader
        eager = (
            self.link.frame_aware
            or self.pending_inject
            or reader is None
            or not reader.past_preface
        )
        self.follow_after = 0 if eager else FOLLOW_BATCH
        if self.watcher is None or self.frame_mode or eager:
            if self.watch is not None:
                self._take_back()
        elif self.watch is None and not self.backlog:
            self._lend()

    # The watcher follows a chunk in one call into compiled code and makes no
    # object for it, where the reader would keep it for a batch and make a
    # Frame of each header block for hpackpaths.RequestHeaders to read. It
    # takes only what has been read before: a request header block that is a
    # whole HEADERS frame and the decoder's cache knows. It stops at anything
    # else (the first calls of a method, a block split over CONTINUATIONs, a
    # frame cut by the end of a read, ...), which the reader then follows
    # before lending again: at once, unless the loans keep ending early (a
    # client that sends a new block in every call, with a deadline say),
    # then after a batch, which costs what following did before the watcher.
    # Only the reader follows while a frame-aware fault is on, frames of our
    # own wait, or the preface is still to come.

    def _lend(self) -> None:
        watcher, reader, requests = self.watcher, self.reader, self.conn.requests
        assert watcher is not None and reader is not None and requests is not None
        skip = reader.lend()
        if skip is not None:
            watcher.skip = skip
            watcher.max_stream = requests.max_stream
            self.watch = watcher.watch

    def _take_back(self) -> None:
        watcher, reader, requests = self.watcher, self.reader, self.conn.requests
        assert watcher is not None and reader is not None and requests is not None
        self.watch = None
        reader.take_back(watcher.skip)
        watcher.skip = 0
        requests.max_stream = watcher.max_stream
        blocks, watcher.blocks = watcher.blocks, 0
        self.conn.watched(self, blocks)

    def _stopped(self, data: bytes, stop: int) -> None:
        """The watcher stopped at ``stop`` in ``data``: at a frame it leaves to
        the reader, which follows from there, or at the end, its batch of
        header blocks full."""
        assert self.watcher is not None
        followed = self.watcher.blocks
        self._take_back()
        if stop == len(data):
            self._batch()
            return
        self.backlog.append(data[stop:] if stop else data)
        self.backlog_bytes += len(data) - stop
        self.short_loans = self.short_loans + 1 if followed < SHORT_LOAN else 0
        if self.short_loans < SHORT_LOANS:
            self._follow()
            return
        self.short_loans = 0
        self._batch()
        if self.backlog_bytes >= self.follow_after:
            self._follow()

    def _send_injected(self) -> None:
        """Send the frames of our own that waited for a frame boundary, if at one."""
        if self.at_boundary():
            injected, self.pending_inject = self.pending_inject, []
            for raw in injected:
                self._deliver(raw)
            self._batch()

    def at_boundary(self) -> bool:
        """Is everything this direction passed on a whole number of frames?
        (False while the server-to-client direction is not followed.)"""
        if self.reader is None or not self.catch_up():
            return False
        if self.watch is not None:
            assert self.watcher is not None
            return self.watcher.skip == 0
        return self.reader.at_boundary

    def _interest(self) -> frozenset[int]:
        """Frames to see whole: all in frame mode; otherwise request header
        blocks (HPACK must never miss one) and nothing server to client."""
        if self.frame_mode:
            return ALL_TYPES
        return HEADER_TYPES if self.direction == UPSTREAM else _NO_TYPES

    def switch_mode(self) -> None:
        """Enter or leave frame mode as the link wants, if on a frame boundary now
        (else the next chunk that ends on one does it)."""
        wanted = self.link.frame_aware
        if self.reader is None:
            if wanted and self.link.http2 and self.resync is None:
                self._start_resync()
            return
        self._batch()
        if wanted == self.frame_mode or not self.at_boundary():
            return
        self.frame_mode = wanted
        if wanted:
            self.synced_after = self.conn.max_stream
            self.messages.clear()
        self.reader.interest = self._interest()
        self._batch()

    # The server-to-client direction is not followed at all until a frame-aware
    # fault needs it (from the first byte for a connection opened while one is
    # on). For one already open, a PING of the proxy's own tells where its
    # frames begin (etcdlab.proxy.h2frames.PingBoundary). Its ACK is kept from
    # the client when it lies whole in one chunk; else its start has already
    # gone and the rest follows (gRPC clients ignore the ACK of a PING they did
    # not send). Once found, the direction stays followed for the connection's
    # life, so a fault that comes and goes costs one PING per connection, not
    # one per appearance: gRPC servers count a client's PINGs against it.

    def _start_resync(self) -> None:
        link = self.link
        payload = random.Random(f"{link.seed}/{link.name}/{self.conn.index}/resync").randbytes(8)
        self.resync = PingBoundary(payload)
        self.conn.reverse(self).inject(self.resync.ping)

    def _resynchronise(self, data: bytes) -> None:
        """Pass ``data`` on unread up to the frame boundary the PING's ACK gives,
        and the rest, once it comes, frame by frame from that boundary."""
        assert self.resync is not None
        found = self.resync.feed(data)
        if found is None:
            self._take(data)
            return
        before, after = found
        self.resync = None
        if before:
            self._take(before)
            if self.closed or self.conn.done:
                return
        self.reader = FrameReader(preface=False, interest=self._interest())
        self.switch_mode()
        if self.pending_inject:
            self._send_injected()
        if after:
            self._take(after)

    def on_eof(self) -> None:
        self.eof = True
        self._maybe_finish()

    def _emit(self, pieces: list[bytes], plan: Plan) -> None:
        tags, self.tags = self.tags, None
        if not pieces:
            return
        if plan.lanes:
            self._to_lanes(pieces, plan, tags)
        else:
            self._shape(pieces, plan, tags)

    def _to_lanes(self, pieces: list[bytes], plan: Plan, tags: list[FrameTag] | None) -> None:
        """Queue frames per stream, those of matched streams delayed (etcdlab.proxy.streamlanes)."""
        if self.lanes is None:
            self.lanes = StreamLanes()
        lanes = self.lanes
        now = asyncio.get_running_loop().time()
        self.ctx.now = now
        counters = self.link.counters
        for index, raw in enumerate(pieces):
            # Untagged bytes (the preface) belong to no stream.
            tag = CONNECTION if tags is None else tags[index]
            release = now
            for shaper in plan.lanes:
                if delay_for(shaper.method_filter, tag):
                    release = shaper.shape([Piece(len(raw), release)], self.ctx)[0].release
                    counters.applied(shaper, "frame_delayed")
            lanes.push(raw, tag, release)
        self.queued_bytes += sum(len(raw) for raw in pieces)
        self._drain_lanes()

    def _drain_lanes(self, everything: bool = False) -> None:
        if self.lane_timer is not None:
            self.lane_timer.cancel()
            self.lane_timer = None
        lanes = self.lanes
        if lanes is None or self.closed:
            return
        loop = asyncio.get_running_loop()
        frames, tags = lanes.pop_all() if everything else lanes.pop_due(loop.time())
        if frames:
            self.queued_bytes -= sum(len(raw) for raw in frames)
            self._shape(frames, self.link.plans[self.plan_key], tags)
        elif self.queued_bytes > self.link.buffer_limit:
            self.pause("buffer")
        release = lanes.next_release
        if release is not None:
            self.lane_timer = loop.call_at(release, self._drain_lanes)
        elif not lanes:
            self.lanes = None
            self._maybe_finish()

    def _shape(self, pieces: list[bytes], plan: Plan, tags: list[FrameTag] | None) -> None:
        """Pass bytes through the shapers that act on the byte stream, then queue them."""
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if plan.blackhole is not None:
            self.link.counters.applied(plan.blackhole, "held")
            self._hold(data)
            return
        now = asyncio.get_running_loop().time()
        pieces_out = [Piece(len(data), now)]
        if plan.fifo:
            ctx = self.ctx
            ctx.now = now
            ctx.spans = FrameSpans(pieces, tags) if plan.tagged and tags is not None else None
            for shaper in plan.fifo:
                pieces_out = shaper.shape(pieces_out, ctx)
            if ctx.applied:
                for (fault, what), count in ctx.applied.items():
                    self.link.counters.applied(fault, what, count)
                ctx.applied.clear()
        first = min(piece.release for piece in pieces_out)
        if self.recoverable:
            # The earlier holes show when the first of these bytes arrives.
            self._recover(first)
        reverse = self.conn.reverse(self)
        if reverse.recoverable:
            # These bytes carry the ACK of what the other direction delivered.
            reverse._rearm(first)
        offset = 0
        for piece in pieces_out:
            size = piece.size
            chunk = data if size == len(data) else data[offset : offset + size]
            offset += size
            slot = Slot(piece.release, now, chunk, piece.late)
            self.queue.append(slot)
            if piece.late is not None:
                self.recoverable.append(slot)
        self.queued_bytes += len(data)
        self.flush()
        loss = limited(plan)
        if loss is not None:
            if self.gate is None:
                self.gate = Gate(self)
            self.gate.written(loss)

    def _recover(self, arrival: float) -> None:
        """New bytes reach the receiver at ``arrival``: their SACK reveals each
        earlier lost segment (if they are lost too, only once they arrive)."""
        reveal(self.recoverable, arrival)
        self.recoverable.clear()

    def _rearm(self, acked_at: float) -> None:
        """An ACK of this direction's data arrives at ``acked_at``: each tail hole
        whose fast probe has not fired yet waits for the slow one instead."""
        for slot in self.recoverable:
            if slot.late is not None:
                slot.release, slot.late = slot.late.rearmed(slot.release, acked_at)

    def heal(self, plan: Plan) -> None:
        """Faults no longer in ``plan`` are healed: their state goes, and the
        bytes their timers hold back arrive with the first send from now on."""
        healed = [fault for fault in self.fault_state if fault not in plan.shapers]
        if not healed:
            return
        for fault in healed:
            del self.fault_state[fault]
        now = asyncio.get_running_loop().time()
        moved = False
        for slot in self.queue:
            late = slot.late
            if late is not None and late.fault in healed:
                slot.late = None
                release = late.healed(now)
                if release < slot.release:
                    slot.release, moved = release, True
        self.recoverable = [slot for slot in self.recoverable if slot.late is not None]
        if moved:
            self.flush()
        if self.gate is not None:
            self.gate.open()

    def _hold(self, data: bytes) -> None:
        self.held.append(data)
        self.held_bytes += len(data)
        if self.held_bytes > self.link.buffer_limit:
            self.pause("buffer")

    # -- writing -------------------------------------------------------------

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.closed or self.dest is None:
            return
        now = asyncio.get_running_loop().time()
        ready: list[bytes] = []
        queue = self.queue
        counters = self.link.counters
        # A slot is due when its own release has passed and every slot before
        # it has gone: that running order is the head-of-line blocking.
        while queue and queue[0].release <= now:
            slot = queue.popleft()
            self.queued_bytes -= len(slot.data)
            ready.append(slot.data)
            if now > slot.arrived:
                counters.delay(now - slot.arrived)
        if ready:
            self.dest.writelines(ready)
        if queue:
            self.timer = asyncio.get_running_loop().call_at(queue[0].release, self.flush)
        if self.queued_bytes > self.link.buffer_limit:
            self.pause("buffer")
        elif self.held_bytes <= self.link.buffer_limit:
            self.resume("buffer")
        self._maybe_finish()

    def inject(self, frame: Frame) -> None:
        """Send a frame of our own, between the real frames of this direction."""
        if not self.at_boundary():
            self.pending_inject.append(frame.raw)
            self._batch()
        else:
            self._deliver(frame.raw)

    def _deliver(self, raw: bytes) -> None:
        if self.held:
            self._hold(raw)
        elif self.queue:
            self.queue.append(Slot(0.0, asyncio.get_running_loop().time(), raw))
            self.queued_bytes += len(raw)
        elif self.dest is not None and not self.closed:
            self.dest.write(raw)

    def release_held(self) -> None:
        held, self.held, self.held_bytes = self.held, [], 0
        now = asyncio.get_running_loop().time()
        for data in held:
            self.queue.append(Slot(0.0, now, data))
            self.queued_bytes += len(data)
        self.flush()

    def _maybe_finish(self) -> None:
        if (
            not self.eof
            or self.queue
            or self.held
            or self.lanes
            or self.dest is None
            or self.closed
        ):
            return
        self.closed = True
        reverse = self.conn.reverse(self)
        if reverse.eof or not self.dest.can_write_eof():
            # The destination has nothing more to say either: close it for good.
            self.dest.close()
        else:
            self.dest.write_eof()
        if reverse.closed and self.source is not None:
            self.source.close()

    # -- reading control -----------------------------------------------------

    def pause(self, reason: str) -> None:
        if reason in self.pause_reasons:
            return
        self.pause_reasons.add(reason)
        if len(self.pause_reasons) == 1 and self.source is not None:
            with contextlib.suppress(RuntimeError):
                self.source.pause_reading()

    def resume(self, reason: str) -> None:
        if reason not in self.pause_reasons:
            return
        self.pause_reasons.discard(reason)
        if not self.pause_reasons and self.source is not None:
            self._replay()
            if not self.pause_reasons:
                with contextlib.suppress(RuntimeError):
                    self.source.resume_reading()

    def _replay(self) -> None:
        stalled, self.stalled = self.stalled, []
        for data in stalled:
            if self.closed:
                return
            self.on_data(data)

    def attach(self, source: asyncio.Transport, dest: asyncio.Transport) -> None:
        self.source, self.dest = source, dest
        if self.pause_reasons:
            source.pause_reading()

    def stop(self) -> None:
        self.closed = True
        if self.gate is not None:
            self.gate.stop()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.lane_timer is not None:
            self.lane_timer.cancel()
            self.lane_timer = None
        self.lanes = None
        self.queue.clear()
        self.recoverable.clear()
        self.held.clear()
