"""pytest plugin: real etcd, fault proxies and the emulator client as fixtures.

Installed with etcdlab through the ``pytest11`` entry point, so a test suite
only has to ask for the fixtures:

- ``etcd_cluster``: a local cluster of real etcd members (``LocalCluster``).
- ``etcd_endpoints``: client endpoints of the cluster under test, local or not.
- ``etcdlab_settings``: the options below, parsed and validated once.

Options: ``--etcdlab-members N``, ``--etcdlab-time-scale F`` (shrinks etcd's
raft and keepalive timings for fast suites), ``--etcdlab-endpoints A,B,C`` (use
an existing cluster) and ``--etcdlab-session-cluster`` (one cluster for the whole
session instead of a fresh one per test).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from emulator.cluster import LocalCluster, ServerFlags


@dataclass(frozen=True)
class EtcdlabSettings:
    members: int
    time_scale: float
    endpoints: tuple[str, ...]
    session_cluster: bool

    def __post_init__(self) -> None:
        if self.members < 1:
            raise pytest.UsageError("--etcdlab-members must be at least 1")
        if not self.time_scale > 0:
            raise pytest.UsageError("--etcdlab-time-scale must be positive")
        for endpoint in self.endpoints:
            host, sep, port = endpoint.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise pytest.UsageError(f"--etcdlab-endpoints: {endpoint!r} is not HOST:PORT")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("etcdlab", "etcdlab: real etcd under network faults")
    group.addoption(
        "--etcdlab-members",
        type=int,
        default=3,
        help="members of the local etcd cluster (default 3)",
    )
    group.addoption(
        "--etcdlab-time-scale",
        type=float,
        default=1.0,
        help="multiply etcd's raft and keepalive timings by this factor (default 1)",
    )
    group.addoption(
        "--etcdlab-endpoints",
        default="",
        help="comma-separated HOST:PORT of an existing cluster to use instead of a local one",
    )
    group.addoption(
        "--etcdlab-session-cluster",
        action="store_true",
        help="share one local cluster across the session instead of one per test",
    )


_SETTINGS = pytest.StashKey[EtcdlabSettings]()


def pytest_configure(config: pytest.Config) -> None:
    # Validated here so a bad option stops the run with one line, before any test.
    raw = str(config.getoption("etcdlab_endpoints"))
    config.stash[_SETTINGS] = EtcdlabSettings(
        members=int(config.getoption("etcdlab_members")),
        time_scale=float(config.getoption("etcdlab_time_scale")),
        endpoints=tuple(part.strip() for part in raw.split(",") if part.strip()),
        session_cluster=bool(config.getoption("etcdlab_session_cluster")),
    )


@pytest.fixture(scope="session")
def etcdlab_settings(pytestconfig: pytest.Config) -> EtcdlabSettings:
    return pytestconfig.stash[_SETTINGS]


def _start_cluster(settings: EtcdlabSettings) -> LocalCluster:
    return LocalCluster(settings.members, flags=ServerFlags.scaled(settings.time_scale))


@pytest.fixture(scope="session")
def _etcdlab_session_cluster(etcdlab_settings: EtcdlabSettings) -> Iterator[LocalCluster | None]:
    if etcdlab_settings.endpoints or not etcdlab_settings.session_cluster:
        yield None
        return
    with _start_cluster(etcdlab_settings) as cluster:
        yield cluster


@pytest.fixture
def etcd_cluster(
    etcdlab_settings: EtcdlabSettings, _etcdlab_session_cluster: LocalCluster | None
) -> Iterator[LocalCluster]:
    """A running local etcd cluster (members can be killed, paused, restarted).

    Skips the test when ``--etcdlab-endpoints`` points at an existing cluster,
    which etcdlab cannot kill or pause.
    """
    if etcdlab_settings.endpoints:
        pytest.skip("needs a local etcd cluster; --etcdlab-endpoints was given")
    if _etcdlab_session_cluster is not None:
        yield _etcdlab_session_cluster
        return
    with _start_cluster(etcdlab_settings) as cluster:
        yield cluster


@pytest.fixture
def etcd_endpoints(request: pytest.FixtureRequest, etcdlab_settings: EtcdlabSettings) -> list[str]:
    """Client endpoints (HOST:PORT) of the cluster under test, local or existing."""
    if etcdlab_settings.endpoints:
        return list(etcdlab_settings.endpoints)
    cluster: LocalCluster = request.getfixturevalue("etcd_cluster")
    return cluster.endpoints
