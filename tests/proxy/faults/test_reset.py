"""Reset: open connections reset when it is added (both loops)."""

from __future__ import annotations

import asyncio

import pytest

from etcdlab.proxy.faults.reset import Reset
from etcdlab.proxy.link import Address, ProxyLink
from tests.proxy.links import OVERRIDE, both_loops, event_loop_policy  # noqa: F401
from tests.waiting import eventually

pytestmark = [OVERRIDE, both_loops]


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
