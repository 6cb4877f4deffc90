"""A client connection, its upstream connection, and the HTTP/2 state between them.

The connection opens the upstream side (after any delay a lost SYN would
cost), routes each direction's bytes through its :class:`~etcdlab.proxy.pipe.Pipe`,
follows the streams' paths, asks the frame faults about PING and DATA frames,
and closes both sides together. Raw (peer) links read the dialing member from
the first HTTP/1.1 request instead.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import TYPE_CHECKING, TypeVar, cast

from etcdlab.proxy.faults.base import DOWNSTREAM, UPSTREAM, Action, FrameFault, Shaper
from etcdlab.proxy.grpcwire import (
    GRPC_UNAVAILABLE,
    MessageCursor,
    exact_messages,
    rst_stream,
    trailers_frame,
    window_update,
)
from etcdlab.proxy.h2frames import (
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    HEADER_TYPES,
    TYPE_DATA,
    TYPE_HEADERS,
    TYPE_PING,
    TYPE_RST_STREAM,
    Frame,
    FrameType,
    ProtocolError,
)
from etcdlab.proxy.hpackpaths import RequestHeaders
from etcdlab.proxy.pipe import Pipe
from etcdlab.proxy.plan import Plan
from etcdlab.proxy.sockets import nodelay, reset_transport
from etcdlab.proxy.streamlanes import CONNECTION, FrameTag

if TYPE_CHECKING:
    from etcdlab.proxy.link import ProxyLink

log = logging.getLogger("etcdlab.proxy")

_V = TypeVar("_V")

# Bytes of a peer connection searched for its first request's headers.
_SNIFF_LIMIT = 8192
# Streams remembered per connection (paths, answered, killed): oldest forgotten first.
_MAX_STREAMS = 4096
# As plain globals for per-frame code (see h2frames.TYPE_DATA).
_DROP = Action.DROP
_KILL_STREAM = Action.KILL_STREAM


class Connection:
    """A client connection, its upstream connection, and their HTTP/2 state."""

    def __init__(self, link: ProxyLink, client: asyncio.Transport, index: int) -> None:
        self.link = link
        self.index = index
        self.client = client
        self.server: asyncio.Transport | None = None
        self.requests = RequestHeaders() if link.http2 else None
        # Which stream calls which method (kept by the request headers' reader).
        self.paths: dict[int, str] = {} if self.requests is None else self.requests.paths
        self.up = Pipe(self, UPSTREAM)
        self.down = Pipe(self, DOWNSTREAM)
        self.answered: dict[int, None] = {}
        self.killed: dict[int, None] = {}
        # Raw links read the dialing member from the first request's headers.
        self.dialer: str | None = None
        self.sniff: bytearray | None = None if link.http2 else bytearray()
        self.gone: set[asyncio.Transport] = set()
        self.done = False
        self.up.pause("connecting")
        self.up.source = client
        client.pause_reading()
        self.replan()
        # When the SYN (upstream), then the SYN-ACK (downstream), is sent again,
        # and for which fault: either lost delays the connect. Drawn as the
        # client's SYN arrives, under the faults on then.
        self.opening: list[tuple[float, Shaper]] = []
        for pipe in (self.up, self.down):
            for shaper in link.plans[pipe.plan_key].shapers:
                after = self.opening[-1][0] if self.opening else 0.0
                self.opening.extend((after + at, shaper) for at in shaper.connect_sends(pipe.rng))

    async def connect(self) -> None:
        link = self.link
        loop = asyncio.get_running_loop()
        try:
            if self.opening:
                start = loop.time()
                delaying = {shaper for _, shaper in self.opening}
                for at, _ in self.opening:
                    await asyncio.sleep(max(0.0, start + at - loop.time()))
                    if delaying.isdisjoint(self._shapers()):
                        break  # the faults were removed: this send gets through
                link.counters.delay(loop.time() - start)
            transport, _ = await loop.create_connection(
                lambda: UpstreamProtocol(self), link.upstream[0], link.upstream[1]
            )
        except OSError as error:
            log.info("link %s: upstream connect failed: %s", link.name, error)
            link.counters.upstream_failures += 1
            self.abort()
            return
        if self.done:
            transport.abort()
            return
        nodelay(transport.get_extra_info("socket"))
        self.attach_server(transport)

    def attach_server(self, transport: asyncio.Transport) -> None:
        """The upstream connection is up: bytes flow both ways from now on."""
        self.server = transport
        self.up.attach(self.client, transport)
        self.down.attach(transport, self.client)
        self.up.resume("connecting")
        self.up.flush()

    def _shapers(self) -> set[Shaper]:
        """The shapers acting on either direction now."""
        plans = self.link.plans
        return {s for pipe in (self.up, self.down) for s in plans[pipe.plan_key].shapers}

    def replan(self) -> None:
        link = self.link
        for pipe in (self.up, self.down):
            key = self.dialer if (pipe.direction, self.dialer) in link.plans else None
            pipe.plan_key = (pipe.direction, link.variant(pipe.direction, key, self.index))
            plan = link.plans[pipe.plan_key]
            if pipe.fault_state:
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
            if link.http2:
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

    def observe(self, pipe: Pipe, frames: list[Frame]) -> None:
        """Frame-blind forwarding: only watch request header blocks go by (the
        server's frames are not read at all outside frame mode)."""
        assert pipe.direction == UPSTREAM and self.requests is not None
        self.requests.watch(frames)
        _trim(self.paths)
        seen = self.link.counters.frames
        kinds = [frame.type for frame in frames]
        for kind in set(kinds):
            key = (pipe.direction, _type_name(kind))
            seen[key] = seen.get(key, 0) + kinds.count(kind)

    def watched(self, pipe: Pipe, blocks: int) -> None:
        """Count the request header blocks a watcher followed (it has put
        their streams' paths in)."""
        _trim(self.paths)
        if blocks:
            seen = self.link.counters.frames
            key = (pipe.direction, _type_name(TYPE_HEADERS))
            seen[key] = seen.get(key, 0) + blocks

    def on_frames(
        self,
        pipe: Pipe,
        pieces: list[bytes | Frame],
        plan: Plan,
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
            if kind == TYPE_RST_STREAM:
                self._forget(stream_id)
            out.append(frame.raw)
            if tags is not None:
                header = kind in HEADER_TYPES
                ends = header and bool(frame.flags & FLAG_END_HEADERS)
                tags.append(FrameTag(stream_id, path, header, ends))
        return out

    def _observe_headers(self, pipe: Pipe, frame: Frame) -> None:
        if pipe.direction == UPSTREAM:
            assert self.requests is not None
            self.requests.feed(frame)
            _trim(self.paths)
        else:
            if frame.type == TYPE_HEADERS:
                _remember(self.answered, frame.stream_id, None)
            if frame.flags & FLAG_END_STREAM:
                self._forget(frame.stream_id)

    @property
    def max_stream(self) -> int:
        """The highest stream id the client's request headers have named."""
        return 0 if self.requests is None else self.requests.max_stream

    def _drops(self, pipe: Pipe, frame: Frame, faults: tuple[FrameFault, ...]) -> bool:
        counters = self.link.counters
        back = self.down if pipe is self.up else self.up
        if frame.type == TYPE_PING:
            for fault in faults:
                if fault.on_ping(pipe.rng) is _DROP:
                    counters.applied(fault, "ping_dropped")
                    return True
            return False
        if frame.type != TYPE_DATA:
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
            if action is _DROP:
                counters.applied(fault, "message_dropped")
                back.inject(window_update(stream_id, length))
                back.inject(window_update(0, length))
                return True
            if action is _KILL_STREAM:
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

    def protocol_error(self, pipe: Pipe, error: ProtocolError) -> None:
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

    def reverse(self, pipe: Pipe) -> Pipe:
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
                reset_transport(transport)
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
        # Count the header blocks still waiting to be followed.
        self.up.catch_up()
        self.up.stop()
        self.down.stop()
        self.link.forget(self)


def _remember(store: dict[int, _V], key: int, value: _V) -> None:
    store[key] = value
    _trim(store)


def _trim(store: dict[int, _V]) -> None:
    if len(store) > _MAX_STREAMS:
        # The oldest quarter in one go: finding a dict's first key scans every
        # slot deleted before it, so one at a time cost about 1.5 us per call
        # on a connection past _MAX_STREAMS streams (every call opens one).
        for old in list(itertools.islice(store, _MAX_STREAMS // 4)):
            del store[old]


_TYPE_NAMES = {t.value: t.name for t in FrameType}


def _type_name(kind: int) -> str:
    return _TYPE_NAMES.get(kind, "UNKNOWN")


class ClientProtocol(asyncio.Protocol):
    def __init__(self, link: ProxyLink, index: int) -> None:
        self.link = link
        self.index = index
        self.conn: Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        link = self.link
        self.conn = Connection(link, cast(asyncio.Transport, transport), self.index)
        link.adopt(self.conn)

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


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self, conn: Connection) -> None:
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
