"""Shared fixtures: real local etcd, proxy links in front of it and an echo
server behind them, cleaned up even when a test fails; and the one way a test
says it needs a tool this machine may lack (:func:`require_tool`, :func:`require`).

Every test runs under pytest-timeout's per-test limit (``timeout`` in
pyproject.toml), so a hang fails with a traceback instead of stalling the run;
the few tests that legitimately run longer carry ``@pytest.mark.timeout(...)``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import NoReturn

import grpc
import pytest

from etcdlab.cluster.local import LocalCluster, ServerFlags
from etcdlab.common.timescale import TimeScale
from etcdlab.proxy.faults import Fault
from etcdlab.proxy.link import Address, ProxyLink

# CI installs every tool the tests use (.ci/run), so there a missing one is a
# broken set-up, not a reason to skip: CI=true turns the skip into a failure.
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require(missing: str | None) -> None:
    """Skip the calling test (fail it under CI=true) when ``missing`` is a reason
    this machine cannot run it ("needs root ...", "needs nft ..."); None: go on."""
    if missing is not None:
        _unavailable(missing)


def require_tool(tool: str, install: str) -> str:
    """The path of the program ``tool``; without it the calling test skips, or
    fails under CI=true. ``install`` says how to get it."""
    path = shutil.which(tool)
    if path is None:
        _unavailable(f"needs {tool} ({install})")
    return path


def _unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason}: CI=true, where every tool is installed (.ci/run)", pytrace=False)
    pytest.skip(reason)


# The time scale of the single member the proxy tests put a link in front of.
PROXY_TIME_SCALE = TimeScale(0.1)


def scaled(fault: Fault) -> Fault:
    """``fault`` on the clock of the ``member`` fixture's runs."""
    return fault.scaled(PROXY_TIME_SCALE)


def segments_lost(links: Iterable[ProxyLink | None]) -> int:
    """Segments the loss faults on ``links`` dropped (and had sent again)."""
    return sum(
        count
        for link in links
        if link is not None
        for (_, what), count in link.counters.faults_applied.items()
        if what == "segment_lost"
    )


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
