"""Blackhole: bytes held, not lost, and delivered when it is removed (both loops)."""

from __future__ import annotations

import asyncio

import pytest

from etcdlab.proxy.faults import DOWNSTREAM
from etcdlab.proxy.faults.blackhole import Blackhole
from etcdlab.proxy.link import Address, ProxyLink
from tests.proxy.links import OVERRIDE, both_loops, event_loop_policy  # noqa: F401
from tests.waiting import eventually

pytestmark = [OVERRIDE, both_loops]


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
