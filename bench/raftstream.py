"""A one-way message stream shaped like etcd's rafthttp, for the loss bench.

etcd keeps, per pair of members and per direction, long-lived HTTP/1.1
streams (``server/etcdserver/api/rafthttp/stream.go``): the member that
receives dials ``GET /raft/stream/message/<its id>`` to its peer, and the
peer writes its raft messages down the response as they come, each one
write (8-byte big-endian length, then the message; the writer flushes
whenever its queue is empty), while the dialling side only ACKs. On the
follower-to-leader stream that is a MsgHeartbeatResp per heartbeat (10/s
at etcd's default 100 ms interval) and a MsgAppResp per append; the leader's
appends go on the ``msgappv2`` stream beside it, heartbeats alone on this one.

Here the sender is the server (the peer being dialled) and the receiver the
client, as in etcd, so a fault proxy in front of the sender sits where a
peer-link proxy does. Each message carries its sequence number and the time
it was written on the sender's clock; sender and receiver run in one
process, so the receiver reads its one-way delay on the same clock.
Messages go at fixed times: heartbeats every 100 ms, the rest of the offered
rate as appends spread evenly between them.

With a heal, the loss is removed after the lossy part of the schedule and the
senders go on at the same rate until every stream has delivered the first
message written after the heal (TCP delivers in order, so everything written
before it too): how long that takes is the connection's recovery.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# rafthttp's prefix (the length of what follows), then our sequence number and
# the time the sender wrote the message (perf_counter seconds).
FRAME = struct.Struct(">QQd")
HEARTBEAT_INTERVAL = 0.1  # etcd's default --heartbeat-interval
# Bytes per write on the wire (a raft message, its 8-byte length and the HTTP
# chunk's framing), as captured on a 3-member etcd 3.5 cluster's peer links
# under a light write load (docs/BENCHMARKS.md, "Raft's peer streams"): 60
# for a heartbeat or its response, 392-424 for an append or a forwarded
# proposal carrying one 300-byte value.
HEARTBEAT_BYTES = 60
APPEND_BYTES = 400
# What the dialling side sends first and the answer it waits for, about as long
# as rafthttp's (its headers name the members, cluster and versions).
REQUEST = (
    b"GET /raft/stream/message/8e9e05c52164694d HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"User-Agent: etcdlab\r\nX-Etcd-Cluster-Id: cdf818194e3a8c32\r\n"
    b"X-Peer-Urls: http://127.0.0.1:2380\r\nX-Raft-To: 91bc3c398fb3c146\r\n"
    b"X-Server-From: 8e9e05c52164694d\r\nX-Server-Version: 3.5.0\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    b"X-Server-Version: 3.5.0\r\nTransfer-Encoding: chunked\r\n\r\n"
)
WARMUP = 1.0  # seconds of heartbeats sent and received before the loss is armed


def encode(sequence: int, sent: float, size: int) -> bytes:
    """One message of ``size`` bytes on the wire."""
    if size < FRAME.size:
        raise ValueError(f"a message takes at least {FRAME.size} bytes, not {size}")
    return FRAME.pack(size - 8, sequence, sent) + bytes(size - FRAME.size)


class Decoder:
    """Messages out of a byte stream cut anywhere."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, float]]:
        """(sequence, sent) of every message ``data`` completes."""
        self._buffer += data
        done = []
        while len(self._buffer) >= FRAME.size:
            rest, sequence, sent = FRAME.unpack_from(self._buffer)
            if len(self._buffer) < 8 + rest:
                break
            del self._buffer[: 8 + rest]
            done.append((sequence, sent))
        return done


def schedule(rate: float, seconds: float) -> list[tuple[float, int]]:
    """(offset from the start, bytes) of each message a stream offering
    ``rate`` messages per second sends in ``seconds``: heartbeats every 100 ms
    (or all of the rate, below 10/s), the rest appends evenly in between."""
    heartbeats = min(rate, 1 / HEARTBEAT_INTERVAL)
    messages = [(n / heartbeats, HEARTBEAT_BYTES) for n in range(int(seconds * heartbeats))]
    appends = rate - heartbeats
    if appends > 0:
        # Half a gap in, so that appends do not all coincide with a heartbeat.
        offsets = ((n + 0.5) / appends for n in range(int(seconds * appends)))
        messages += [(offset, APPEND_BYTES) for offset in offsets]
    return sorted(messages)


@dataclass
class Tally:
    """What one stream's receiver saw: the send and arrival time of each message."""

    sent: list[float] = field(default_factory=list)
    arrived: list[float | None] = field(default_factory=list)
    outstanding: int = 0  # messages sent and not received yet

    def wrote(self, sent: float) -> int:
        self.sent.append(sent)
        self.arrived.append(None)
        self.outstanding += 1
        return len(self.sent) - 1

    def got(self, sequence: int, at: float) -> None:
        self.arrived[sequence] = at
        self.outstanding -= 1


def summary(tallies: list[Tally], start: float, end: float, cut: float) -> dict[str, object]:
    """One run's figures: messages sent in [start, end) (loop clock) and their
    delays, each undelivered one counted as its wait until ``cut``, when the run
    stopped waiting; how many arrived by ``end``, how many were still on the
    way then (the backlog), and the longest silence at a receiver between
    ``start`` and ``end`` (etcd drops a stream that is silent for 5 s)."""
    delays: list[float] = []
    delivered = backlog = undelivered = 0
    silence = 0.0
    for tally in tallies:
        last = start
        arrivals = sorted(at for at in tally.arrived if at is not None and start <= at < end)
        for at in [*arrivals, end]:
            silence = max(silence, at - last)
            last = at
        for sent, arrived in zip(tally.sent, tally.arrived, strict=True):
            if not start <= sent < end:
                continue
            delays.append((cut if arrived is None else arrived) - sent)
            undelivered += arrived is None
            if arrived is not None and arrived < end:
                delivered += 1
            else:
                backlog += 1
    return {
        "seconds": end - start,
        "delays": delays,
        "delivered": delivered,
        "backlog": backlog,
        "undelivered": undelivered,
        "silence": silence,
    }


def recovery(tallies: list[Tally], marks: list[int], heal: float) -> dict[str, float | int | None]:
    """How the streams recovered from a heal at ``heal`` (loop clock), each
    stream's first message written after it being ``marks[i]``: the messages
    written before it and not received by then (the backlog), and the seconds
    after it until all of those had arrived (0 if none was on the way) and
    until every stream had delivered its first message written after it;
    None where that did not happen before the run stopped."""
    backlog = 0
    drained: float | None = 0.0
    first: float | None = 0.0
    for tally, mark in zip(tallies, marks, strict=True):
        for at in tally.arrived[:mark]:
            backlog += at is None or at > heal
            if drained is not None:
                drained = None if at is None else max(drained, at - heal)
        after = tally.arrived[mark] if mark < len(tally.arrived) else None
        first = None if first is None or after is None else max(first, after - heal)
    return {"backlog": backlog, "drained": drained, "first": first}


class Streams:
    """Every stream's tally, an event set while nothing is on the way, and one
    set once every stream has delivered the message of its mark."""

    def __init__(self, count: int, clock: Callable[[], float]) -> None:
        self.tallies = [Tally() for _ in range(count)]
        self.clock = clock
        self.idle = asyncio.Event()
        self.marks: list[int] | None = None
        self.reached = asyncio.Event()

    def mark(self) -> list[int]:
        """From now on, wait for the next message of each stream (see reached)."""
        self.marks = [len(tally.sent) for tally in self.tallies]
        return self.marks

    def _check_marks(self) -> None:
        if self.marks is not None and all(
            mark < len(tally.arrived) and tally.arrived[mark] is not None
            for tally, mark in zip(self.tallies, self.marks, strict=True)
        ):
            self.reached.set()

    def send(self, writer: asyncio.StreamWriter, index: int, size: int) -> None:
        sent = self.clock()
        writer.write(encode(self.tallies[index].wrote(sent), sent, size))
        self.idle.clear()

    async def receive(self, reader: asyncio.StreamReader, index: int) -> None:
        decoder, tally = Decoder(), self.tallies[index]
        while data := await reader.read(65536):
            now = self.clock()
            for sequence, _ in decoder.feed(data):
                tally.got(sequence, now)
            if not any(tally.outstanding for tally in self.tallies):
                self.idle.set()
            self._check_marks()

    async def drained(self, limit: float) -> bool:
        """Wait up to ``limit`` seconds until every message sent has arrived."""
        try:
            await asyncio.wait_for(self.idle.wait(), limit)
        except TimeoutError:
            return False
        return True


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(RESPONSE)


async def run(
    listener: socket.socket,
    target: str,
    streams: int,
    rate: float,
    seconds: float,
    arm: Callable[[], None],
    disarm: Callable[[], None],
    drain: float,
    heal: float = 0.0,
) -> dict[str, object]:
    """``streams`` receivers dial ``target`` (a proxy in front of ``listener``),
    each is sent ``schedule(rate, seconds)`` with the loss armed, and the run
    waits up to ``drain`` seconds more for what is still on the way. With
    ``heal`` (seconds), the loss is removed instead once the schedule ends and
    the senders go on at ``rate`` for up to ``heal`` seconds, until each stream
    has delivered its first message written after the heal; the figures are
    those of the lossy part, and under "heal" its ``recovery``."""
    clock = time.perf_counter
    writers: list[asyncio.StreamWriter] = []
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    server = await asyncio.start_server(accept, sock=listener)
    host, port = target.rsplit(":", 1)
    lanes = Streams(streams, clock)
    readers: list[asyncio.Task[None]] = []
    dialled: list[asyncio.StreamWriter] = []
    armed = False
    try:
        for index in range(streams):
            reader, out = await asyncio.open_connection(host, int(port))
            out.transport.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
            dialled.append(out)
            out.write(REQUEST)
            peer_reader, writer = await accepted.get()
            # Go's sockets, etcd's too, send without Nagle's delay.
            writer.transport.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
            await _answer(peer_reader, writer)
            await reader.readuntil(RESPONSE[-4:])
            writers.append(writer)
            readers.append(asyncio.create_task(lanes.receive(reader, index)))
        # A few messages through each stream before the loss, as on a live link.
        await _paced(lanes, writers, schedule(1 / HEARTBEAT_INTERVAL, WARMUP))
        if not await lanes.drained(10):
            raise RuntimeError("the stream's warm-up messages did not arrive within 10 s")
        arm()
        armed = True
        start = clock()
        await _paced(lanes, writers, schedule(rate, seconds))
        end = start + seconds
        if (wait := end - clock()) > 0:
            await asyncio.sleep(wait)  # the offered schedule's end, not a synchronisation
        if not heal:
            await lanes.drained(drain)
            return summary(lanes.tallies, start, end, clock())
        # The heal counts from the request to remove the loss: it takes effect
        # somewhere in the call (the proxy may deliver what it held before it
        # answers), and what arrives meanwhile is read and stamped as it comes.
        armed = False
        healed, at = clock(), time.time()
        await asyncio.to_thread(disarm)
        removal = clock() - healed
        marks = lanes.mark()
        sending = asyncio.create_task(_paced(lanes, writers, schedule(rate, heal)))
        try:
            await asyncio.wait_for(lanes.reached.wait(), heal)
        except TimeoutError:
            pass  # not recovered within the wait: recovery() says so
        finally:
            sending.cancel()
        return {
            **summary(lanes.tallies, start, healed, clock()),
            # The heal's wall-clock time too, to find it in a capture.
            "heal": {**recovery(lanes.tallies, marks, healed), "at": at, "removal": removal},
        }
    finally:
        if armed:
            disarm()
        for task in readers:
            task.cancel()
        for writer in [*writers, *dialled]:
            writer.close()
        server.close()
        await server.wait_closed()


async def _paced(
    lanes: Streams, writers: list[asyncio.StreamWriter], messages: list[tuple[float, int]]
) -> None:
    """Write each (offset, bytes) on every stream at its offset from now."""
    start = lanes.clock()
    for offset, size in messages:
        wait = start + offset - lanes.clock()
        if wait > 0:
            await asyncio.sleep(wait)  # the offered rate's pace
        for index, writer in enumerate(writers):
            lanes.send(writer, index, size)
