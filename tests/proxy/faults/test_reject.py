"""Reject: new connections refused, open ones untouched (both loops)."""

from __future__ import annotations

import asyncio

import pytest

from etcdlab.proxy.faults.reject import Reject
from etcdlab.proxy.link import Address, ProxyLink
from tests.proxy.links import OVERRIDE, both_loops, event_loop_policy, roundtrip  # noqa: F401

pytestmark = [OVERRIDE, both_loops]


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
