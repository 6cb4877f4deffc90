"""One proxied link: a listening socket, an upstream address, faults, counters.

Each accepted connection gets an upstream connection and two pipes, one per
direction. With no fault active a pipe writes every chunk straight from
``data_received`` to the other transport; the only per-chunk work on an
HTTP/2 link is following frame headers (skipping payloads) and decoding
request header blocks, which HPACK's shared state makes necessary from the
first byte if a method filter is to work on streams opened before the filter.

Bytes never overtake earlier bytes of the same direction: every shaped chunk
is released no earlier than the chunk before it, which is what makes the
TCP loss model's head-of-line blocking hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import socket
import struct
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar, cast

from proxy.faults import (
    DOWNSTREAM,
    UPSTREAM,
    Blackhole,
    Fault,
    FrameLoss,
    Latency,
    Loss,
    Pause,
    Reject,
    Reset,
    Shaper,
)
from proxy.faults.base import Piece, Recovery, ShapeContext
from proxy.faults.frames import Action
from proxy.faults.loss import Resend, TcpState
from proxy.grpcwire import (
    GRPC_UNAVAILABLE,
    MessageCursor,
    exact_messages,
    rst_stream,
    trailers_frame,
    window_update,
)
from proxy.h2frames import (
    ALL_TYPES,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    HEADER_TYPES,
    Frame,
    FrameReader,
    FrameType,
    ProtocolError,
)
from proxy.hpackpaths import RequestHeaders
from proxy.streamlanes import CONNECTION, FrameSpans, FrameTag, StreamLanes, delay_for

log = logging.getLogger("etcdlab.proxy")

_V = TypeVar("_V")

Address = tuple[str, int]
# A plan's variant: a dialer (or None), or (dialer, names of faults skipped).
_Variant = str | tuple[str | None, frozenset[str]] | None

# Upper bounds (seconds) of the added-delay histogram buckets.
DELAY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# Bytes of a peer connection searched for its first request's headers.
_SNIFF_LIMIT = 8192
# Streams remembered per connection (paths, answered, killed): oldest forgotten first.
_MAX_STREAMS = 4096
# Connections accepted per turn of the event loop: a burst of connects waits
# in the kernel's queue instead of stalling traffic on open connections.
ACCEPT_BATCH = 8
# The kernel's queue of connections not yet accepted (capped by somaxconn).
_BACKLOG = 1024


@dataclass
class Counters:
    """What a link has seen; plain integers, read by the metrics collector."""

    connections_total: int = 0
    connections_active: int = 0
    connections_rejected: int = 0
    connections_reset: int = 0
    protocol_errors: int = 0
    bytes: dict[str, int] = field(default_factory=lambda: {UPSTREAM: 0, DOWNSTREAM: 0})
    # (direction, frame type name) -> count; only frames the link parsed in full
    # (header blocks always, every frame while a frame-aware fault is active).
    frames: dict[tuple[str, str], int] = field(default_factory=dict)
    # (fault name, what it did) -> count
    faults_applied: dict[tuple[str, str], int] = field(default_factory=dict)
    delay_buckets: list[int] = field(default_factory=lambda: [0] * (len(DELAY_BUCKETS) + 1))
    delay_sum: float = 0.0
    delay_count: int = 0
    # Peer links: connections attributed to each dialing member (X-Server-From).
    dialers: dict[str, int] = field(default_factory=dict)

    def applied(self, fault: Fault, what: str, count: int = 1) -> None:
        key = (fault.name, what)
        self.faults_applied[key] = self.faults_applied.get(key, 0) + count

    def delay(self, seconds: float) -> None:
        index = 0
        while index < len(DELAY_BUCKETS) and seconds > DELAY_BUCKETS[index]:
            index += 1
        self.delay_buckets[index] += 1
        self.delay_sum += seconds
        self.delay_count += 1


@dataclass(frozen=True)
class _Plan:
    """The faults acting on one direction, sorted by what the pipe must do."""

    shapers: tuple[Shaper, ...] = ()
    # Of the shapers: latencies filtered by method, which delay frames per
    # stream (proxy.streamlanes), and the others, which act on the byte stream.
    lanes: tuple[Latency, ...] = ()
    fifo: tuple[Shaper, ...] = ()
    # Some shaper filters by method: frames must be tagged with their stream.
    tagged: bool = False
    frame_faults: tuple[FrameLoss, ...] = ()
    blackhole: Blackhole | None = None
    pause: bool = False
    refusal: Fault | None = None  # Reject or Reset: no connection may live

    @property
    def idle(self) -> bool:
        return not (self.shapers or self.frame_faults or self.blackhole)


class ProxyLink:
    """A fault-injecting TCP proxy for one upstream, usable as an async context manager.

    ``listen`` port 0 lets the OS pick (read :attr:`address` after start).
    ``http2`` makes the link follow HTTP/2 frames (gRPC links); peer links
    speak HTTP/1.1 and run as raw TCP with ``http2=False`` (no frame faults,
    no method filters). Randomness comes from ``seed`` and ``name`` only, per
    connection and direction, so adding a link never changes another's
    decisions. ``time_scale`` multiplies every duration a fault adds.
    ``buffer_limit`` bounds the bytes a pipe holds (delayed or blackholed)
    before it stops reading from the sender.
    """

    def __init__(
        self,
        name: str,
        upstream: Address,
        listen: Address = ("127.0.0.1", 0),
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        http2: bool = True,
        buffer_limit: int = 1 << 20,
    ) -> None:
        if not name or "/" in name:
            raise ValueError("name must be non-empty and contain no '/'")
        if not time_scale > 0:
            raise ValueError("time_scale must be positive")
        if buffer_limit < 1:
            raise ValueError("buffer_limit must be positive")
        self.name = name
        self.upstream = upstream
        self.listen = listen
        self.seed = seed
        self.time_scale = time_scale
        self.http2 = http2
        self.buffer_limit = buffer_limit
        self.counters = Counters()
        # (direction, variant) -> plan, see _replan; the variant is a dialer or
        # None, or (dialer, faults skipped) for connections a toxicity spared.
        self.plans: dict[tuple[str, _Variant], _Plan] = {
            (UPSTREAM, None): _Plan(),
            (DOWNSTREAM, None): _Plan(),
        }
        self.frame_aware = False
        self._faults: dict[str, Fault] = {}
        self._listener: socket.socket | None = None
        self._bound: Address | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._connection_index = 0

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Listen (again, on the address it had, once it has listened)."""
        if self._listener is not None:
            return
        loop = asyncio.get_running_loop()
        host, port = self._bound or self.listen
        try:
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, _, _, _, address = infos[0]
            listener = socket.create_server(address, family=family, backlog=_BACKLOG)
        except OSError as error:
            # create_server's strerror names the address again; a resolver
            # error (negative errno) has only its strerror.
            code = error.errno
            reason = os.strerror(code) if code is not None and code > 0 else error.strerror or error
            raise OSError(f"link {self.name} cannot listen on {host}:{port}: {reason}") from None
        listener.setblocking(False)
        loop.add_reader(listener.fileno(), self._accept, listener)
        self._listener = listener
        bound = listener.getsockname()[:2]
        self._bound = str(bound[0]), int(bound[1])
        log.info("link %s listening on %s:%d -> %s:%d", self.name, *self.address, *self.upstream)

    def _accept(self, listener: socket.socket) -> None:
        # The reader callback fires again on the next turn while more are queued.
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                # Out of file descriptors and the like: the connection waits.
                log.warning("link %s: accept failed: %s", self.name, error)
                return
            # Refused connections take a number too: each draws its own toxicity.
            self._connection_index += 1
            index = self._connection_index
            refusal = self._refusal(index)
            if refusal is not None:
                self.counters.applied(refusal, "refused")
                self.counters.connections_rejected += 1
                _rst_socket(sock)
                continue
            sock.setblocking(False)
            _nodelay(sock)
            self._spawn(self._serve(sock, index))

    async def _serve(self, sock: socket.socket, index: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.connect_accepted_socket(
                lambda: _ClientProtocol(self, index), sock
            )
        except OSError as error:
            log.info("link %s: accepted connection lost at once: %s", self.name, error)
            sock.close()
            return
        conn = protocol.conn
        if conn is not None:
            await conn.connect()

    async def disable(self) -> None:
        """Stop listening and close every connection (Toxiproxy's ``enabled: false``);
        faults and counters stay, and :meth:`start` listens on the same address."""
        if self._stop_listening():
            log.info("link %s disabled", self.name)

    @property
    def enabled(self) -> bool:
        return self._listener is not None

    def _stop_listening(self) -> bool:
        """Close the listening socket and every connection; False if not listening."""
        listener, self._listener = self._listener, None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()
        for conn in list(self._connections):
            conn.abort()
        return listener is not None

    async def close(self) -> None:
        self._stop_listening()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> ProxyLink:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def address(self) -> Address:
        """The listening (host, port); the port is the real one once started
        (kept while the link is disabled)."""
        if self._bound is None:
            raise RuntimeError(f"link {self.name} is not started")
        return self._bound

    @property
    def connections(self) -> int:
        return len(self._connections)

    # -- faults --------------------------------------------------------------

    @property
    def faults(self) -> tuple[Fault, ...]:
        return tuple(self._faults.values())

    def add(self, fault: Fault) -> Fault:
        """Apply ``fault`` now; returns it (named ``kind_direction`` if unnamed)."""
        if isinstance(fault, FrameLoss) and not self.http2:
            raise ValueError(f"link {self.name} is raw TCP: frame faults need http2=True")
        if _filtered(fault) and not self.http2:
            raise ValueError(f"method: link {self.name} is raw TCP, method filters need http2=True")
        if fault.dialer is not None and self.http2:
            raise ValueError(f"link {self.name} speaks HTTP/2: dialer filters need a raw link")
        if not fault.name:
            fault = _renamed(fault, f"{fault.kind}_{fault.direction}")
        if fault.name in self._faults:
            raise ValueError(f"link {self.name} already has a fault named {fault.name!r}")
        self._faults[fault.name] = fault
        self._replan()
        if isinstance(fault, Reset):
            self.reset_connections(fault)
        return fault

    def remove(self, fault: Fault | str) -> Fault:
        name = fault if isinstance(fault, str) else fault.name
        try:
            removed = self._faults.pop(name)
        except KeyError:
            raise KeyError(f"link {self.name} has no fault named {name!r}") from None
        self._replan()
        return removed

    def replace(self, fault: Fault) -> Fault:
        """Swap the fault of the same name for ``fault`` (the control API's update)."""
        if fault.name not in self._faults:
            raise KeyError(f"link {self.name} has no fault named {fault.name!r}")
        self._faults[fault.name] = fault
        self._replan()
        return fault

    def clear(self) -> None:
        self._faults.clear()
        self._replan()

    def pause(self) -> None:
        """Stop reading both directions of every connection (see :class:`Pause`)."""
        if "pause" not in self._faults:
            self.add(Pause(name="pause"))

    def resume(self) -> None:
        if "pause" in self._faults:
            self.remove("pause")

    def reset_connections(self, cause: Fault | None = None) -> None:
        for conn in list(self._connections):
            if cause is not None and (
                cause.dialer not in (None, conn.dialer) or not self.applies(cause, conn.index)
            ):
                continue
            conn.reset()
            self.counters.connections_reset += 1
            if cause is not None:
                self.counters.applied(cause, "reset")

    def _replan(self) -> None:
        # One plan per direction for connections of no particular dialer, and
        # one per dialer some fault names (its faults plus the general ones).
        # Connections that a toxicity below 1 spares get variants (see variant).
        faults = self._faults.values()
        self.plans = {}
        for dialer in {None, *(f.dialer for f in faults)}:
            for direction in (UPSTREAM, DOWNSTREAM):
                self.plans[direction, dialer] = self._plan(direction, dialer, frozenset())
        self.frame_aware = any(
            isinstance(f, FrameLoss) or _filtered(f) for f in self._faults.values()
        )
        for conn in self._connections:
            conn.replan()

    def _plan(self, direction: str, dialer: str | None, skipped: frozenset[str]) -> _Plan:
        mine = [
            f for f in self._faults.values() if f.dialer in (None, dialer) and f.name not in skipped
        ]
        active = [f for f in mine if f.applies_to(direction)]
        shapers = tuple(f for f in active if isinstance(f, Shaper))
        lanes = tuple(f for f in shapers if isinstance(f, Latency) and f.method is not None)
        return _Plan(
            shapers=shapers,
            lanes=lanes,
            fifo=tuple(f for f in shapers if f not in lanes),
            tagged=any(_filtered(f) for f in shapers),
            frame_faults=tuple(f for f in active if isinstance(f, FrameLoss)),
            blackhole=next((f for f in active if isinstance(f, Blackhole)), None),
            pause=any(isinstance(f, Pause) for f in active),
            # A connection is refused whatever direction the fault names.
            refusal=next((f for f in mine if isinstance(f, Reject | Reset)), None),
        )

    def applies(self, fault: Fault, index: int) -> bool:
        """Does ``fault`` act on connection number ``index``? With a toxicity below 1
        a draw decides, the same for the same seed, link, connection and fault."""
        if fault.toxicity >= 1.0:
            return True
        draw = random.Random(f"{self.seed}/{self.name}/{index}/toxicity/{fault.name}").random()
        return draw < fault.toxicity

    def variant(self, direction: str, dialer: str | None, index: int) -> _Variant:
        """The plan variant of connection ``index``: its dialer's, minus the faults
        whose toxicity spares it."""
        skipped = frozenset(
            f.name for f in self._faults.values() if f.toxicity < 1.0 and not self.applies(f, index)
        )
        if not skipped:
            return dialer
        variant = (dialer, skipped)
        if (direction, variant) not in self.plans:
            self.plans[direction, variant] = self._plan(direction, dialer, skipped)
        return variant

    def _refusal(self, index: int) -> Fault | None:
        if self.plans[UPSTREAM, None].refusal is None:
            return None
        return next(
            (
                f
                for f in self._faults.values()
                if isinstance(f, Reject | Reset) and f.dialer is None and self.applies(f, index)
            ),
            None,
        )

    def _rng(self, index: int, direction: str) -> random.Random:
        return random.Random(f"{self.seed}/{self.name}/{index}/{direction}")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _filtered(fault: Fault) -> bool:
    """Does the fault act on some gRPC methods only (a shaper with ``method``)?"""
    return isinstance(fault, Latency | Loss) and fault.method is not None


def _renamed(fault: Fault, name: str) -> Fault:
    return dataclasses.replace(fault, name=name)


def _nodelay(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _linger_zero(sock: socket.socket) -> None:
    """Make the next close send RST instead of FIN (SO_LINGER on, timeout 0)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _rst_socket(sock: socket.socket) -> None:
    _linger_zero(sock)
    sock.close()


def _rst(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        _linger_zero(sock)
    cast(asyncio.Transport, transport).abort()


class _Slot:
    """Queued bytes: due at ``release`` (may move earlier), read at ``arrived``;
    ``resend`` when they were lost and are sent again (proxy.faults.loss)."""

    __slots__ = ("arrived", "data", "release", "resend")

    def __init__(
        self, release: float, arrived: float, data: bytes, resend: Resend | None = None
    ) -> None:
        self.release = release
        self.arrived = arrived
        self.data = data
        self.resend = resend


class _Pipe:
    """One direction of one connection: read from ``source``, write to ``dest``."""

    def __init__(self, conn: _Connection, direction: str) -> None:
        self.conn = conn
        self.link = conn.link
        self.direction = direction
        self._rng: random.Random | None = None
        self._ctx: ShapeContext | None = None
        # Each direction's TCP sender state (proxy.faults.loss), kept here so
        # the other direction's context can reach it before this one's exists.
        self.tcp: dict[Fault, TcpState] = {}
        self.source: asyncio.Transport | None = None
        self.dest: asyncio.Transport | None = None
        # Frame mode: output is rebuilt frame by frame so frames can be dropped
        # or injected. Otherwise the bytes read are written as they are and
        # frames are only watched. Modes change only on a frame boundary.
        self.frame_mode = False
        self.reader: FrameReader | None = None
        if self.link.http2:
            # A connection made while frame faults are on starts in frame mode:
            # its first chunk may already hold requests (a boundary to switch
            # on comes only after the preface).
            self.frame_mode = self.link.frame_aware
            self.reader = FrameReader(preface=direction == UPSTREAM, interest=self._interest())
        self.queue: deque[_Slot] = deque()
        self.queued_bytes = 0
        # Lost segments still waiting on a timer that later bytes may cut short.
        self.recoverable: list[tuple[_Slot, Recovery]] = []
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
        self.stalled: list[bytes] = []
        self.plan_key: tuple[str, _Variant] = (direction, None)
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
            self._rng = self.link._rng(self.conn.index, self.direction)
        return self._rng

    @property
    def ctx(self) -> ShapeContext:
        if self._ctx is None:
            self._ctx = ShapeContext(
                now=0.0,
                rng=self.rng,
                time_scale=self.link.time_scale,
                tcp=self.tcp,
                peer_tcp=self.conn.reverse(self).tcp,
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
        plan = link.plans[self.plan_key]
        reader = self.reader
        direct = plan.idle and not self.queue and not self.held and self.dest is not None
        if direct and not self.frame_mode:
            assert self.dest is not None
            # Forward first and follow the frames afterwards: the parsing then
            # runs while the receiver is already working, not on the round trip.
            self.dest.write(data)
            if reader is not None:
                self._follow(reader, data)
            return
        pieces: list[bytes]
        if reader is None:
            pieces = [data]
        elif not self.frame_mode:
            if not self._follow(reader, data):
                return
            pieces = [data]
        else:
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
            if not link.frame_aware and reader.at_boundary:
                self.switch_mode()
        if direct and self.dest is not None:
            if len(pieces) == 1:
                self.dest.write(pieces[0])
            elif pieces:
                self.dest.write(b"".join(pieces))
        else:
            self._emit(pieces, plan)
        if self.pending_inject and self.reader is not None and self.reader.at_boundary:
            injected, self.pending_inject = self.pending_inject, []
            for raw in injected:
                self._deliver(raw)

    def _follow(self, reader: FrameReader, data: bytes) -> bool:
        """Watch frames go by without changing them; False if the connection
        was closed for bad HTTP/2."""
        try:
            parsed = reader.feed(data)
            if len(parsed) != 1 or type(parsed[0]) is not bytes:
                self.conn.observe(self, parsed)
        except ProtocolError as error:
            self.conn.protocol_error(self, error)
            return False
        if self.link.frame_aware and reader.at_boundary:
            self.switch_mode()
        return True

    def _interest(self) -> frozenset[int]:
        """Frames to see whole: all in frame mode; otherwise request header
        blocks (HPACK must never miss one) and nothing server to client."""
        if self.frame_mode:
            return ALL_TYPES
        return HEADER_TYPES if self.direction == UPSTREAM else _NO_TYPES

    def switch_mode(self) -> None:
        """Enter or leave frame mode as the link wants, if on a frame boundary now
        (else the next chunk that ends on one does it)."""
        assert self.reader is not None
        wanted = self.link.frame_aware
        if wanted == self.frame_mode or not self.reader.at_boundary:
            return
        self.frame_mode = wanted
        if wanted:
            self.synced_after = self.conn.max_stream
            self.messages.clear()
        self.reader.interest = self._interest()

    def on_eof(self) -> None:
        self.eof = True
        self._maybe_finish()

    def _emit(self, pieces: list[bytes], plan: _Plan) -> None:
        tags, self.tags = self.tags, None
        if not pieces:
            return
        if plan.lanes:
            self._to_lanes(pieces, plan, tags)
        else:
            self._shape(pieces, plan, tags)

    def _to_lanes(self, pieces: list[bytes], plan: _Plan, tags: list[FrameTag] | None) -> None:
        """Queue frames per stream, those of matched streams delayed (proxy.streamlanes)."""
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
            for latency in plan.lanes:
                if delay_for(latency.method, tag):
                    release = latency.shape([Piece(len(raw), release)], self.ctx)[0].release
                    counters.applied(latency, "frame_delayed")
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

    def _shape(self, pieces: list[bytes], plan: _Plan, tags: list[FrameTag] | None) -> None:
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
            slot = _Slot(piece.release, now, chunk, piece.resend)
            self.queue.append(slot)
            if piece.recovery is not None:
                self.recoverable.append((slot, piece.recovery))
        self.queued_bytes += len(data)
        self.flush()

    def _recover(self, arrival: float) -> None:
        """New bytes reach the receiver at ``arrival``: their SACK reveals each
        earlier lost segment (if they are lost too, only once they arrive)."""
        for slot, lost in self.recoverable:
            if slot.release > arrival and isinstance(lost.fault, Loss):
                resend = lost.fault.revealed(lost, slot.release, arrival, self.link.time_scale)
                if resend is not None:
                    slot.release, slot.resend = resend.arrival, resend
        self.recoverable.clear()

    def _rearm(self, acked_at: float) -> None:
        """An ACK of this direction's data arrives at ``acked_at``: each tail hole
        whose fast probe has not fired yet waits for the slow one instead."""
        for index, (slot, lost) in enumerate(self.recoverable):
            if lost.fast_probe_at is not None and isinstance(lost.fault, Loss):
                resend = lost.fault.rearmed(lost, slot.release, acked_at, self.link.time_scale)
                if resend is not None:
                    slot.release, slot.resend = resend.arrival, resend
                self.recoverable[index] = (slot, dataclasses.replace(lost, fast_probe_at=None))

    def heal(self, plan: _Plan) -> None:
        """Loss faults no longer in ``plan`` are healed: their lost bytes arrive
        with the first send from now on, and their senders' state goes."""
        healed = [fault for fault in self.tcp if fault not in plan.shapers]
        if not healed:
            return
        for fault in healed:
            del self.tcp[fault]
        self.recoverable = [(s, lost) for s, lost in self.recoverable if lost.fault in self.tcp]
        now = asyncio.get_running_loop().time()
        moved = False
        for slot in self.queue:
            resend = slot.resend
            if resend is not None and resend.fault not in self.tcp:
                slot.resend = None
                release = resend.healed(now)
                if release < slot.release:
                    slot.release, moved = release, True
        if moved:
            self.flush()

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
        if self.reader is not None and not self.reader.at_boundary:
            self.pending_inject.append(frame.raw)
        else:
            self._deliver(frame.raw)

    def _deliver(self, raw: bytes) -> None:
        if self.held:
            self._hold(raw)
        elif self.queue:
            self.queue.append(_Slot(0.0, asyncio.get_running_loop().time(), raw))
            self.queued_bytes += len(raw)
        elif self.dest is not None and not self.closed:
            self.dest.write(raw)

    def release_held(self) -> None:
        held, self.held, self.held_bytes = self.held, [], 0
        now = asyncio.get_running_loop().time()
        for data in held:
            self.queue.append(_Slot(0.0, now, data))
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


class _Connection:
    """A client connection, its upstream connection, and their HTTP/2 state."""

    def __init__(self, link: ProxyLink, client: asyncio.Transport, index: int) -> None:
        self.link = link
        self.index = index
        self.client = client
        self.server: asyncio.Transport | None = None
        self.up = _Pipe(self, UPSTREAM)
        self.down = _Pipe(self, DOWNSTREAM)
        self.requests = RequestHeaders() if link.http2 else None
        self.paths: dict[int, str] = {}
        self.answered: dict[int, None] = {}
        self.killed: dict[int, None] = {}
        self.max_stream = 0
        # Raw links read the dialing member from the first request's headers.
        self.dialer: str | None = None
        self.sniff: bytearray | None = None if link.http2 else bytearray()
        self.gone: set[asyncio.Transport] = set()
        self.done = False
        self.up.pause("connecting")
        self.up.source = client
        client.pause_reading()
        self.replan()

    async def connect(self) -> None:
        link = self.link
        loop = asyncio.get_running_loop()
        # When the SYN (upstream) or the SYN-ACK (downstream) is sent again,
        # by which fault: either lost delays the connect.
        sends: list[tuple[float, Loss]] = []
        for pipe in (self.up, self.down):
            for shaper in link.plans[pipe.plan_key].shapers:
                if isinstance(shaper, Loss) and shaper.method is None:
                    after = sends[-1][0] if sends else 0.0
                    times = shaper.connect_sends(pipe.rng, link.time_scale)
                    sends.extend((after + at, shaper) for at in times)
        try:
            if sends:
                start = loop.time()
                for at, _ in sends:
                    await asyncio.sleep(max(0.0, start + at - loop.time()))
                    if not self._connect_lossy({fault for _, fault in sends}):
                        break  # healed: this send gets through
                link.counters.delay(loop.time() - start)
            transport, _ = await loop.create_connection(
                lambda: _UpstreamProtocol(self), link.upstream[0], link.upstream[1]
            )
        except OSError as error:
            log.info("link %s: upstream connect failed: %s", link.name, error)
            self.abort()
            return
        if self.done:
            transport.abort()
            return
        _nodelay(transport.get_extra_info("socket"))
        self.server = transport
        self.up.attach(self.client, transport)
        self.down.attach(transport, self.client)
        self.up.resume("connecting")
        self.up.flush()

    def _connect_lossy(self, faults: set[Loss]) -> bool:
        """Does any of ``faults`` still act on this connection?"""
        plans = self.link.plans
        acting = {f for pipe in (self.up, self.down) for f in plans[pipe.plan_key].shapers}
        return not faults.isdisjoint(acting)

    def replan(self) -> None:
        link = self.link
        for pipe in (self.up, self.down):
            key = self.dialer if (pipe.direction, self.dialer) in link.plans else None
            pipe.plan_key = (pipe.direction, link.variant(pipe.direction, key, self.index))
            plan = link.plans[pipe.plan_key]
            if pipe.tcp:
                pipe.heal(plan)
            if plan.pause:
                pipe.pause("fault")
            else:
                pipe.resume("fault")
            if plan.blackhole is None and pipe.held:
                pipe.release_held()
            if pipe.lanes and not plan.lanes:
                # The delay is gone: what it held leaves now, in order.
                pipe._drain_lanes(everything=True)
            if pipe.reader is not None:
                pipe.switch_mode()

    def sniff_dialer(self, data: bytes) -> None:
        """Look for X-Server-From in the first HTTP/1.1 request of a peer connection."""
        assert self.sniff is not None
        self.sniff += data[: _SNIFF_LIMIT - len(self.sniff)]
        end = self.sniff.find(b"\r\n\r\n")
        if end < 0 and len(self.sniff) < _SNIFF_LIMIT:
            return
        head, self.sniff = bytes(self.sniff[: max(end, 0)]), None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"x-server-from":
                self.dialer = value.strip().decode("ascii", "replace").lower()
                counters = self.link.counters
                counters.dialers[self.dialer] = counters.dialers.get(self.dialer, 0) + 1
                self.replan()
                refusal = self.link.plans[self.up.plan_key].refusal
                if refusal is not None:
                    counters.applied(refusal, "reset")
                    counters.connections_reset += 1
                    self.reset()
                return

    # -- HTTP/2 --------------------------------------------------------------

    def observe(self, pipe: _Pipe, pieces: list[bytes | Frame]) -> None:
        """Frame-blind forwarding: only watch request header blocks go by."""
        counters = self.link.counters
        for piece in pieces:
            if type(piece) is not bytes:
                assert isinstance(piece, Frame)
                key = (pipe.direction, _type_name(piece.type))
                counters.frames[key] = counters.frames.get(key, 0) + 1
                self._observe_headers(pipe, piece)

    def on_frames(
        self,
        pipe: _Pipe,
        pieces: list[bytes | Frame],
        plan: _Plan,
        tags: list[FrameTag] | None = None,
    ) -> list[bytes]:
        """The frames to send on; with ``tags``, also what stream each belongs to."""
        out: list[bytes] = []
        counters = self.link.counters
        frame_faults = plan.frame_faults
        for piece in pieces:
            if type(piece) is bytes:
                out.append(piece)
                if tags is not None:
                    tags.append(CONNECTION)
                continue
            assert isinstance(piece, Frame)
            frame = piece
            kind = frame.type
            key = (pipe.direction, _type_name(kind))
            counters.frames[key] = counters.frames.get(key, 0) + 1
            stream_id = frame.stream_id
            # Read before a stream's last frame makes us forget its path.
            path = self.paths.get(stream_id) if tags is not None else None
            if kind in HEADER_TYPES:
                self._observe_headers(pipe, frame)
                if tags is not None:
                    path = self.paths.get(stream_id, path)
            elif frame_faults and self._drops(pipe, frame, frame_faults):
                continue
            if kind == FrameType.RST_STREAM:
                self._forget(stream_id)
            out.append(frame.raw)
            if tags is not None:
                header = kind in HEADER_TYPES
                ends = header and bool(frame.flags & FLAG_END_HEADERS)
                tags.append(FrameTag(stream_id, path, header, ends))
        return out

    def _observe_headers(self, pipe: _Pipe, frame: Frame) -> None:
        if pipe.direction == UPSTREAM:
            assert self.requests is not None
            block = self.requests.feed(frame)
            if block is not None:
                stream_id, path = block
                self.max_stream = max(self.max_stream, stream_id)
                if path is not None:
                    _remember(self.paths, stream_id, path)
        else:
            if frame.type == FrameType.HEADERS:
                _remember(self.answered, frame.stream_id, None)
            if frame.flags & FLAG_END_STREAM:
                self._forget(frame.stream_id)

    def _drops(self, pipe: _Pipe, frame: Frame, faults: tuple[FrameLoss, ...]) -> bool:
        counters = self.link.counters
        back = self.down if pipe is self.up else self.up
        if frame.type == FrameType.PING:
            for fault in faults:
                if fault.on_ping(pipe.rng) is Action.DROP:
                    counters.applied(fault, "ping_dropped")
                    return True
            return False
        if frame.type != FrameType.DATA:
            return False
        stream_id = frame.stream_id
        length = len(frame.raw) - 9
        if stream_id in self.killed:
            if length:
                back.inject(window_update(0, length))
            return True
        cursor = pipe.messages.get(stream_id)
        if cursor is None and stream_id not in pipe.messages:
            cursor = MessageCursor() if stream_id > pipe.synced_after else None
            _remember(pipe.messages, stream_id, cursor)
        data = frame.data_without_padding()
        if cursor is not None:
            started, ended = cursor.feed(data)
        elif exact_messages(data):
            # A stream older than frame tracking: a frame that is exactly whole
            # messages (a keepalive, a watch request) puts us on its boundaries.
            started = ended = True
            pipe.messages[stream_id] = MessageCursor()
        else:
            started = ended = False
        whole = started and ended and length > 0 and not frame.flags & FLAG_END_STREAM
        path = self.paths.get(stream_id)
        for fault in faults:
            action = fault.on_data(path, whole, pipe.rng)
            if action is Action.DROP:
                counters.applied(fault, "message_dropped")
                back.inject(window_update(stream_id, length))
                back.inject(window_update(0, length))
                return True
            if action is Action.KILL_STREAM:
                counters.applied(fault, "stream_killed")
                self._kill(stream_id)
                if length:
                    back.inject(window_update(0, length))
                return True
        return False

    def _kill(self, stream_id: int) -> None:
        _remember(self.killed, stream_id, None)
        self.up.inject(rst_stream(stream_id))
        self.down.inject(
            trailers_frame(
                stream_id,
                GRPC_UNAVAILABLE,
                "stream dropped by etcdlab proxy",
                # Streams older than frame tracking were most likely answered.
                with_response_headers=stream_id > self.down.synced_after
                and stream_id not in self.answered,
            )
        )

    def _forget(self, stream_id: int) -> None:
        self.paths.pop(stream_id, None)
        self.answered.pop(stream_id, None)
        self.up.messages.pop(stream_id, None)
        self.down.messages.pop(stream_id, None)

    # -- teardown ------------------------------------------------------------

    def protocol_error(self, pipe: _Pipe, error: ProtocolError) -> None:
        side = "client" if pipe.direction == UPSTREAM else "server"
        log.warning(
            "link %s connection %d: closing, %s sent bad HTTP/2: %s",
            self.link.name,
            self.index,
            side,
            error,
        )
        self.link.counters.protocol_errors += 1
        self.abort()

    def reverse(self, pipe: _Pipe) -> _Pipe:
        return self.down if pipe is self.up else self.up

    def lost(self, side: asyncio.Transport, error: Exception | None) -> None:
        """``side`` is gone: finish the other direction, then close the other side."""
        if error is not None:
            # An abortive close (RST, broken pipe): pass it on as one.
            self.reset()
            return
        into, out_of = (self.down, self.up) if side is self.client else (self.up, self.down)
        into.stop()
        into.eof = True
        self.gone.add(side)
        other = self.server if side is self.client else self.client
        if other is None:
            self.abort()
            return
        if out_of.closed:
            other.close()
        else:
            out_of.on_eof()
        if len(self.gone) == 2:
            self._finish()

    def reset(self) -> None:
        for transport in (self.client, self.server):
            if transport is not None:
                _rst(transport)
        self._finish()

    def abort(self) -> None:
        for transport in (self.client, self.server):
            if transport is not None:
                transport.abort()
        self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        self.up.stop()
        self.down.stop()
        self.link._connections.discard(self)
        self.link.counters.connections_active -= 1


def _remember(store: dict[int, _V], key: int, value: _V) -> None:
    store[key] = value
    if len(store) > _MAX_STREAMS:
        del store[next(iter(store))]


_NO_TYPES: frozenset[int] = frozenset()
_TYPE_NAMES = {t.value: t.name for t in FrameType}


def _type_name(kind: int) -> str:
    return _TYPE_NAMES.get(kind, "UNKNOWN")


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, link: ProxyLink, index: int) -> None:
        self.link = link
        self.index = index
        self.conn: _Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        link = self.link
        link.counters.connections_total += 1
        link.counters.connections_active += 1
        self.conn = _Connection(link, cast(asyncio.Transport, transport), self.index)
        link._connections.add(self.conn)

    def data_received(self, data: bytes) -> None:
        if self.conn is not None and not self.conn.done:
            self.conn.up.on_data(data)

    def eof_received(self) -> bool:
        if self.conn is not None and not self.conn.done:
            self.conn.up.on_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None and not self.conn.done:
            self.conn.lost(self.conn.client, exc)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.down.pause("peer")

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.down.resume("peer")


class _UpstreamProtocol(asyncio.Protocol):
    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.conn.done:
            self.conn.down.on_data(data)

    def eof_received(self) -> bool:
        if not self.conn.done:
            self.conn.down.on_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.conn.done and self.transport is not None:
            self.conn.lost(self.transport, exc)

    def pause_writing(self) -> None:
        self.conn.up.pause("peer")

    def resume_writing(self) -> None:
        self.conn.up.resume("peer")
