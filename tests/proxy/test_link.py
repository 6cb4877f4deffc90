"""The link over raw TCP and HTTP/2 bytes: real sockets, an echo server upstream."""

from __future__ import annotations

import asyncio
import random
import socket
import time

import hpack
import pytest
import uvloop

from etcdlab.common.timescale import TimeScale
from etcdlab.proxy.faults import DOWNSTREAM, UPSTREAM
from etcdlab.proxy.faults.bandwidth import Bandwidth
from etcdlab.proxy.faults.blackhole import Blackhole
from etcdlab.proxy.faults.frames import FrameLoss
from etcdlab.proxy.faults.latency import Latency
from etcdlab.proxy.faults.loss import Loss
from etcdlab.proxy.faults.pause import Pause
from etcdlab.proxy.faults.reject import Reject
from etcdlab.proxy.faults.reset import Reset
from etcdlab.proxy.h2frames import FLAG_END_HEADERS, PREFACE, Frame, FrameType
from etcdlab.proxy.link import ACCEPT_BATCH, ProxyLink
from etcdlab.proxy.pipe import FOLLOW_BATCH
from tests.waiting import eventually, settled

Address = tuple[str, int]

pytestmark = pytest.mark.filterwarnings("ignore:Overriding the .event_loop_policy. fixture")


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every test here runs on both loops: the CLI uses uvloop, tests default to asyncio."""
    policy: asyncio.AbstractEventLoopPolicy = (
        uvloop.EventLoopPolicy() if request.param == "uvloop" else asyncio.DefaultEventLoopPolicy()
    )
    return policy


async def roundtrip(address: Address, payload: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(payload)
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout)
    finally:
        writer.close()


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


async def test_latency_delays_each_direction(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False) as link:
        link.add(Latency(0.2).scaled(TimeScale(0.5)))  # both directions: 0.1 s each way
        started = time.monotonic()
        assert await roundtrip(link.address, b"ping") == b"ping"
        assert time.monotonic() - started >= 0.2


async def test_blackhole_holds_bytes_until_removed(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False) as link:
        fault = link.add(Blackhole(direction=DOWNSTREAM))
        reader, writer = await asyncio.open_connection(*link.address)
        writer.write(b"hello")
        await eventually(lambda: link.counters.bytes[DOWNSTREAM] == 5, 5, "echo reached proxy")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(5), 0.2)
        link.remove(fault)
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
        writer.close()


async def test_pause_stops_reading(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False) as link:
        link.add(Pause(name="pause"))
        reader, writer = await asyncio.open_connection(*link.address)
        writer.write(b"hello")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(5), 0.2)
        assert link.counters.bytes[UPSTREAM] == 0
        link.remove("pause")
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
        writer.close()
        assert not any(isinstance(f, Pause) for f in link.faults)


async def test_reject_refuses_new_connections_only(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False) as link:
        reader, writer = await asyncio.open_connection(*link.address)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"
        fault = link.add(Reject())
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await roundtrip(link.address, b"b")
        writer.write(b"c")
        assert await reader.readexactly(1) == b"c"
        link.remove(fault)
        assert await roundtrip(link.address, b"d") == b"d"
        assert link.counters.connections_rejected == 1
        writer.close()


async def test_reset_kills_existing_connections(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False) as link:
        reader, writer = await asyncio.open_connection(*link.address)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"
        link.add(Reset())
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        writer.close()
        await eventually(lambda: link.connections == 0, 5, "connection gone")
        assert link.counters.connections_reset == 1


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


async def test_names_are_unique_and_removable(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False) as link:
        fault = link.add(Latency(0.1))
        assert fault.name == "latency_both"
        with pytest.raises(ValueError, match="already has"):
            link.add(Latency(0.2))
        link.remove("latency_both")
        with pytest.raises(KeyError):
            link.remove(fault)


async def test_loss_delays_but_never_loses_or_reorders(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False, seed=2) as link:
        link.add(Loss(0.3, mss=100).scaled(TimeScale(0.05)))
        reader, writer = await asyncio.open_connection(*link.address)
        payload = bytes(range(256)) * 400
        for offset in range(0, len(payload), 1000):
            writer.write(payload[offset : offset + 1000])
        assert await asyncio.wait_for(reader.readexactly(len(payload)), 30) == payload
        writer.close()
    assert link.counters.delay_count > 0


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


async def test_bandwidth_limits_the_rate(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False) as link:
        # 40 KB/s, scaled by 0.5 to 80 KB/s: 20 KB takes 0.25 s.
        link.add(Bandwidth(40, direction=UPSTREAM).scaled(TimeScale(0.5)))
        started = time.monotonic()
        assert await roundtrip(link.address, b"z" * 20480) == b"z" * 20480
        # uvloop's clock and timers have millisecond resolution.
        assert time.monotonic() - started >= 0.25 - 0.002


async def test_lost_syn_delays_the_first_bytes_as_the_seed_says(echo: Address) -> None:
    loss = Loss(0.5, syn_rto=1.0).scaled(TimeScale(0.2))

    def expected(seed: int) -> float:
        # The first draws of connection 1's two streams decide SYN and SYN-ACK.
        return sum(
            (loss.connect_sends(random.Random(f"{seed}/raw/1/{direction}")) or [0.0])[-1]
            for direction in (UPSTREAM, DOWNSTREAM)
        )

    seed = next(s for s in range(100) if expected(s) > 0)
    async with ProxyLink("raw", echo, http2=False, seed=seed) as link:
        link.add(loss)
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(*link.address)
        writer.write(b"x")
        await asyncio.wait_for(reader.readexactly(1), 30)
        writer.close()
    # At least the SYN delay; the one byte each way may add segment losses.
    assert time.monotonic() - started >= expected(seed) - 0.002


@pytest.mark.parametrize("lost", ["syn", "data"])
async def test_removing_a_loss_lets_the_next_send_through(echo: Address, lost: str) -> None:
    """Losses are drawn as if the fault lasted; once it is removed the next
    retransmission (of the SYN, or of the data) gets through, as on a clean
    network, instead of the rest of a long run of losses."""
    # SYN sent again at 0.1, 0.3, 0.7 s...; data at 0.02, 0.04, 0.08 s...
    loss = Loss(0.99, direction=UPSTREAM, name="lossy").scaled(TimeScale(0.1))
    seed = 1
    # Without the heal the SYN (or the byte) would wait for minutes.
    assert len(loss.connect_sends(random.Random(f"{seed}/raw/1/{UPSTREAM}"))) > 8
    async with ProxyLink("raw", echo, http2=False, seed=seed) as link:
        if lost == "syn":
            link.add(loss)
        reader, writer = await asyncio.open_connection(*link.address)
        if lost == "data":
            writer.write(b"clean")
            assert await asyncio.wait_for(reader.readexactly(5), 5) == b"clean"
            link.add(loss)
        await eventually(lambda: link.connections == 1, 5, "the connection accepted")
        writer.write(b"x")
        if lost == "data":
            key = (loss.name, "segment_lost")
            await eventually(lambda: key in link.counters.faults_applied, 5, "the byte lost")
        link.remove(loss)
        healed = time.monotonic()
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
        # The next send comes within one (small) timeout of the heal.
        assert time.monotonic() - healed < 1.0
        writer.close()


async def test_method_latency_holds_only_its_streams_and_releases_them_on_removal() -> None:
    received = bytearray()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.extend(data)
        writer.close()

    encoder = hpack.Encoder()

    def headers(stream: int, path: str) -> bytes:
        block = encoder.encode([(":method", "POST"), (":path", path), (":scheme", "http")])
        return Frame.build(FrameType.HEADERS, FLAG_END_HEADERS, stream, block).raw

    def data(stream: int, payload: bytes) -> bytes:
        return Frame.build(FrameType.DATA, 0, stream, payload).raw

    settings = Frame.build(FrameType.SETTINGS, 0, 0, b"").raw
    range1 = headers(1, "/etcdserverpb.KV/Range")
    lease3 = headers(3, "/etcdserverpb.Lease/LeaseKeepAlive")
    range5 = headers(5, "/etcdserverpb.KV/Range")
    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    async with server, ProxyLink("h2", server.sockets[0].getsockname()[:2]) as link:
        fault = link.add(Latency(3600, method="etcdserverpb.Lease", direction=UPSTREAM))
        _reader, writer = await asyncio.open_connection(*link.address)
        # Stream 3 (a lease call) is held; stream 1's DATA overtakes it, and
        # stream 5's header block waits behind stream 3's (HPACK order).
        writer.write(PREFACE + settings + range1 + lease3 + data(1, b"r1") + range5)
        writer.write(data(3, b"k3") + data(5, b"r5"))
        passed = PREFACE + settings + range1 + data(1, b"r1")
        await eventually(lambda: len(received) >= len(passed), 5, "unheld frames")
        assert bytes(received) == passed
        assert link.counters.faults_applied[(fault.name, "frame_delayed")] == 2
        link.remove(fault)
        held = lease3 + range5 + data(3, b"k3") + data(5, b"r5")
        await eventually(lambda: len(received) >= len(passed + held), 5, "held frames")
        assert bytes(received) == passed + held
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
