"""The link over raw TCP and HTTP/2 bytes: real sockets, an echo server upstream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from proxy.faults import DOWNSTREAM, UPSTREAM, Blackhole, Latency, Pause, Reject, Reset
from proxy.h2frames import PREFACE
from proxy.link import ProxyLink
from tests.waiting import eventually

Address = tuple[str, int]


@pytest.fixture
async def echo() -> AsyncIterator[Address]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    async with server:
        yield host, port


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


async def test_latency_delays_each_direction(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False, time_scale=0.5) as link:
        link.add(Latency(0.2))  # both directions, scaled: 0.1 s each way
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
        link.pause()
        reader, writer = await asyncio.open_connection(*link.address)
        writer.write(b"hello")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(5), 0.2)
        assert link.counters.bytes[UPSTREAM] == 0
        link.resume()
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
