"""Pause: the link stops reading from the sender (both loops)."""

from __future__ import annotations

import asyncio

import pytest

from etcdlab.proxy.faults import UPSTREAM
from etcdlab.proxy.faults.pause import Pause
from etcdlab.proxy.link import Address, ProxyLink
from tests.proxy.links import OVERRIDE, both_loops, event_loop_policy  # noqa: F401

pytestmark = [OVERRIDE, both_loops]


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
