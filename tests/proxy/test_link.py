"""The link over raw TCP and HTTP/2 bytes: real sockets, an echo server upstream."""

from __future__ import annotations

import asyncio
import socket

import pytest

from etcdlab.proxy.faults import DOWNSTREAM, UPSTREAM
from etcdlab.proxy.faults.frames import FrameLoss
from etcdlab.proxy.faults.latency import Latency
from etcdlab.proxy.h2frames import FLAG_END_HEADERS, PREFACE, Frame, FrameType
from etcdlab.proxy.link import ACCEPT_BATCH, Address, ProxyLink
from etcdlab.proxy.pipe import FOLLOW_BATCH
from tests.proxy.links import OVERRIDE, both_loops, event_loop_policy, roundtrip  # noqa: F401
from tests.waiting import eventually, settled

pytestmark = [OVERRIDE, both_loops]


async def test_bytes_pass_both_ways(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False) as link:
        payload = bytes(range(256)) * 1000
        assert await roundtrip(link.address, payload) == payload
        await eventually(lambda: link.connections == 0, 5, "connection closed")
        assert link.counters.bytes == {UPSTREAM: len(payload), DOWNSTREAM: len(payload)}
        assert link.counters.connections_active == 0


async def test_both_sides_of_a_connection_send_without_delay(echo: Address) -> None:
    # Nagle's algorithm with delayed ACKs costs about 40 ms per small write.
    async with ProxyLink("raw", echo, http2=False) as link:
        reader, writer = await asyncio.open_connection(*link.address)
        try:
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
            (conn,) = link._connections
            for transport in (conn.client, conn.server):
                assert transport is not None
                sock = transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        finally:
            writer.close()


async def test_a_burst_of_connects_larger_than_one_accept_batch_is_served(
    echo: Address,
) -> None:
    # The link accepts a few connections per turn of the loop; the rest wait in
    # the kernel's queue and must still be served, each with its own bytes.
    async with ProxyLink("raw", echo, http2=False) as link:
        payloads = [f"connection {i}".encode() * 100 for i in range(5 * ACCEPT_BATCH)]
        echoed = await asyncio.gather(*(roundtrip(link.address, p) for p in payloads))
        assert echoed == payloads
        assert link.counters.connections_total == len(payloads)


async def test_malformed_http2_closes_only_that_connection(echo: Address) -> None:
    async with ProxyLink("h2", echo, http2=True) as link:
        good_reader, good_writer = await asyncio.open_connection(*link.address)
        settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        good_writer.write(PREFACE + settings)
        assert await good_reader.readexactly(len(PREFACE) + 9) == PREFACE + settings
        bad_reader, bad_writer = await asyncio.open_connection(*link.address)
        bad_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(bad_reader.read(), 5) == b""
        bad_writer.close()
        # The good connection still works after its neighbour was thrown out.
        good_writer.write(settings)
        assert await good_reader.readexactly(9) == settings
        assert link.counters.protocol_errors == 1
        good_writer.close()


async def test_a_connection_whose_upstream_refuses_is_closed_and_counted() -> None:
    # Bound but not listening: a connect to it is refused for as long as it stays bound.
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        async with ProxyLink("dead", bound.getsockname(), http2=False) as link:
            reader, writer = await asyncio.open_connection(*link.address)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert link.counters.upstream_failures == 1
            assert link.counters.protocol_errors == 0


async def test_names_are_unique_and_removable(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False) as link:
        fault = link.add(Latency(0.1))
        assert fault.name == "latency_both"
        with pytest.raises(ValueError, match="already has"):
            link.add(Latency(0.2))
        link.remove("latency_both")
        with pytest.raises(KeyError):
            link.remove(fault)


async def test_slow_reader_makes_the_proxy_push_back() -> None:
    written = 0
    stop = asyncio.Event()

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        chunk = b"x" * 65536
        try:
            while not stop.is_set():
                writer.write(chunk)
                await writer.drain()
                written += len(chunk)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(firehose, "127.0.0.1", 0)
    async with server, ProxyLink("raw", server.sockets[0].getsockname()[:2], http2=False) as link:
        link.add(Latency(0.001))  # route every byte through the delay queue
        _reader, writer = await asyncio.open_connection(*link.address)
        # The client reads nothing: the server must end up blocked, having
        # written no more than the socket buffers and the link's bounded queue.
        await eventually(lambda: written > 0, 5, "server started writing")

        def bounded() -> int:
            # Without back-pressure the server writes on: fail before memory runs out.
            assert written < 64 * 1024 * 1024, "the server was never pushed back"
            return written

        await settled(bounded, 0.3, 30, "the server to be pushed back")
        (conn,) = link._connections
        assert conn.down.queued_bytes <= link.buffer_limit + 65536 * 4
        stop.set()
        writer.close()


class FakeServer:
    """An HTTP/2 "server" whose bytes the test writes by hand."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.writer: asyncio.StreamWriter | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        while data := await reader.read(65536):
            self.received.extend(data)
        writer.close()


async def test_a_frame_fault_finds_the_servers_frames_on_an_open_connection() -> None:
    # Server-to-client bytes are not followed until a frame fault needs them.
    # Added in the middle of a server frame, the fault sends the server a PING
    # of the proxy's own; the bytes up to its ACK pass untouched (a PING
    # frame's bytes inside a DATA payload included), the ACK itself does not
    # reach the client, and the fault acts on every frame after it.
    fake = FakeServer()
    settings = Frame.build(FrameType.SETTINGS, 0, 0, b"").raw
    ping = Frame.build(FrameType.PING, 0, 0, b"server!!").raw
    payload = b"x" * 100 + ping + b"y" * 100
    data = Frame.build(FrameType.DATA, 0, 1, payload).raw
    small = Frame.build(FrameType.DATA, 0, 1, b"after").raw
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    async with server, ProxyLink("h2", server.sockets[0].getsockname()[:2]) as link:
        reader, writer = await asyncio.open_connection(*link.address)
        writer.write(PREFACE + settings)
        await eventually(lambda: len(fake.received) == len(PREFACE + settings), 5, "preface")
        assert fake.writer is not None
        fake.writer.write(settings + data[:150])
        assert await reader.readexactly(len(settings) + 150) == settings + data[:150]
        fault = link.add(FrameLoss(1.0, pings=True, direction=DOWNSTREAM))
        await eventually(lambda: len(fake.received) == len(PREFACE + settings) + 17, 5, "PING")
        ours = bytes(fake.received[-17:])
        assert ours[:9] == b"\x00\x00\x08\x06\x00\x00\x00\x00\x00"
        ack = Frame.build(FrameType.PING, 0x1, 0, ours[9:]).raw
        fake.writer.write(data[150:] + ack + ping + small)
        assert await reader.readexactly(len(data) - 150 + len(small)) == data[150:] + small
        assert link.counters.faults_applied[(fault.name, "ping_dropped")] == 1
        writer.close()


async def test_bad_http2_after_the_preface_is_found_in_the_next_batch(echo: Address) -> None:
    # Client bytes are followed in batches while no fault needs them: a bad
    # frame after a good preface closes the connection once its batch is read.
    async with ProxyLink("h2", echo, http2=True) as link:
        reader, writer = await asyncio.open_connection(*link.address)
        settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        writer.write(PREFACE + settings)
        assert await reader.readexactly(len(PREFACE) + 9) == PREFACE + settings
        # A CONTINUATION with no HEADERS before it, then a batch's worth of bytes.
        writer.write(Frame.build(FrameType.CONTINUATION, FLAG_END_HEADERS, 1, b"").raw)
        writer.write(Frame.build(FrameType.DATA, 0, 1, b"z" * FOLLOW_BATCH).raw)
        await eventually(lambda: link.counters.protocol_errors == 1, 5, "protocol error")
        await eventually(lambda: link.connections == 0, 5, "connection closed")
        writer.close()
