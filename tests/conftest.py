"""Shared fixtures: real local etcd, proxy links in front of it and an echo
server behind them, cleaned up even when a test fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from etcdlab.cluster.local import LocalCluster, ServerFlags
from etcdlab.common.timescale import TimeScale
from etcdlab.proxy.faults import Fault
from etcdlab.proxy.link import Address, ProxyLink

# The time scale of the single member the proxy tests put a link in front of.
PROXY_TIME_SCALE = TimeScale(0.1)


def scaled(fault: Fault) -> Fault:
    """``fault`` on the clock of the ``member`` fixture's runs."""
    return fault.scaled(PROXY_TIME_SCALE)


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    """A fresh 3-member cluster with fast raft timings for tests that break it."""
    with LocalCluster(3, flags=ServerFlags.scaled(0.2)) as local:
        yield local


@pytest.fixture(scope="session")
def shared_cluster() -> Iterator[LocalCluster]:
    """One 3-member cluster for tests that only read and write keys."""
    with LocalCluster(3) as local:
        yield local


@pytest.fixture
async def channel(shared_cluster: LocalCluster) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(shared_cluster.endpoints[0]) as chan:
        yield chan


@pytest.fixture(scope="module")
def member() -> Iterator[Address]:
    """One etcd member (timings scaled by PROXY_TIME_SCALE): its client address."""
    with LocalCluster(1, flags=ServerFlags.scaled(PROXY_TIME_SCALE)) as local:
        host, port = local.endpoints[0].rsplit(":", 1)
        yield host, int(port)


@pytest.fixture
async def link(member: Address) -> AsyncIterator[ProxyLink]:
    """A proxy link in front of ``member``, no faults yet (give it :func:`scaled` ones)."""
    async with ProxyLink("member0", member, seed=1) as proxied:
        yield proxied


@pytest.fixture
async def echo() -> AsyncIterator[Address]:
    """A TCP server that sends back whatever it reads."""

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
