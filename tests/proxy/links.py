"""What the link tests share: both event loops, and a round trip through a link.

A module that imports ``event_loop_policy`` runs its async tests marked
:data:`both_loops` on asyncio and on uvloop (the CLI runs on uvloop, tests
default to asyncio); pure tests of a model stay single.
"""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from etcdlab.proxy.link import Address


@pytest.fixture
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    policy: asyncio.AbstractEventLoopPolicy = (
        uvloop.EventLoopPolicy()
        if getattr(request, "param", "asyncio") == "uvloop"
        else asyncio.DefaultEventLoopPolicy()
    )
    return policy


both_loops = pytest.mark.parametrize("event_loop_policy", ["asyncio", "uvloop"], indirect=True)
# Importing the fixture overrides pytest-asyncio's, which it warns about.
OVERRIDE = pytest.mark.filterwarnings("ignore:Overriding the .event_loop_policy. fixture")


async def roundtrip(address: Address, payload: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(payload)
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout)
    finally:
        writer.close()
