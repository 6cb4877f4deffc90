"""Shared fixtures: a real local etcd cluster, cleaned up even when a test fails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from emulator.cluster import LocalCluster, ServerFlags


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
