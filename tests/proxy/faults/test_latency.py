"""Latency: the delay and jitter it adds, on its own and on a link (both
loops), and with a method filter, only to that method's streams."""

from __future__ import annotations

import asyncio
import random
import time

import hpack
import pytest

from etcdlab.common.timescale import TimeScale
from etcdlab.proxy.faults import UPSTREAM
from etcdlab.proxy.faults.base import Piece, ShapeContext
from etcdlab.proxy.faults.latency import Latency
from etcdlab.proxy.h2frames import FLAG_END_HEADERS, PREFACE, Frame, FrameType
from etcdlab.proxy.link import Address, ProxyLink
from tests.proxy.links import OVERRIDE, both_loops, event_loop_policy, roundtrip  # noqa: F401
from tests.waiting import eventually

pytestmark = OVERRIDE


def test_latency_with_jitter_stays_within_bounds() -> None:
    latency = Latency(0.05, jitter=0.01).scaled(TimeScale(0.5))
    pieces = latency.shape(
        [Piece(1, 0.0) for _ in range(200)], ShapeContext(now=0.0, rng=random.Random(0))
    )
    assert all(0.02 - 1e-9 <= p.release <= 0.03 + 1e-9 for p in pieces)


@both_loops
async def test_latency_delays_each_direction(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False) as link:
        link.add(Latency(0.2).scaled(TimeScale(0.5)))  # both directions: 0.1 s each way
        started = time.monotonic()
        assert await roundtrip(link.address, b"ping") == b"ping"
        assert time.monotonic() - started >= 0.2


@both_loops
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


def test_a_negative_latency_names_the_field() -> None:
    with pytest.raises(ValueError, match="latency"):
        Latency(-0.1)


def test_a_jitter_beyond_the_latency_is_refused_naming_it() -> None:
    # A delay cut at 0 would leave some bytes undelayed and the mean above the latency.
    with pytest.raises(ValueError, match=r"^jitter must not exceed the latency \(50 ms\), not 60"):
        Latency(0.05, jitter=0.06)
    assert Latency(0.05, jitter=0.05).scaled(TimeScale(0.1)).jitter == pytest.approx(0.005)
