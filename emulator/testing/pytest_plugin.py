"""pytest plugin: real etcd, fault proxies and the emulator client as fixtures.

Installed with etcdlab through the ``pytest11`` entry point, so a test suite
only has to ask for the fixtures:

- ``etcd_cluster``: a local cluster of real etcd members (``LocalCluster``).
- ``etcd_endpoints``: client endpoints of the cluster under test, local or not.
- ``etcdlab_settings``: the options below, parsed and validated once.
- ``fault_proxy``: a :class:`~etcdlab.testing.fault_proxy.FaultProxy`, one fault
  proxy link in front of each member, served from a background thread (so it
  works from sync tests, pytest-asyncio and anyio, and keeps moving bytes while
  the test's loop is busy). Fresh per test; every fault is gone after the test.
- ``faults``: scopes applying a fault for a block, sync or async:
  ``async with faults.loss(0, 0.3): ...`` (also ``latency``, ``blackhole``,
  ``reset``, and ``fault(kind, member, **attributes)`` for any kind).
- ``etcd_client``: an :class:`~etcdlab.client.etcd.EtcdClient` dialing the proxy
  addresses with a time-scaled :class:`~etcdlab.client.config.ClientConfig`
  (a pytest-asyncio fixture; defined when pytest-asyncio is installed).
- ``etcd_client_factory``: builds such clients for ``async with`` inside the
  test, for anyio tests or several clients (a sync fixture, so it works with any
  async plugin): ``async with etcd_client_factory() as client: ...``.

Marker: ``@pytest.mark.etcdlab_fault("loss", member=0, p=0.3)`` applies a fault
of a ``etcdlab.proxy.faults.KINDS`` kind (``member`` omitted: every member) to the
``fault_proxy`` links for the whole test; stack several markers for several faults.

Options: ``--etcdlab-members N``, ``--etcdlab-time-scale F`` (shrinks etcd's
raft and keepalive timings, the client's timings and the delays faults add, for
fast suites), ``--etcdlab-endpoints A,B,C`` (use an existing cluster),
``--etcdlab-session-cluster`` (one cluster for the whole session instead of a
fresh one per test) and ``--etcdlab-seed N`` (the proxy's fault randomness).
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from etcdlab.client.config import ClientConfig
from etcdlab.client.etcd import EtcdClient
from etcdlab.client.retry import RetryPolicy
from etcdlab.cluster.local import MAX_MEMBERS, MEMBERS_BOUND, LocalCluster, ServerFlags
from etcdlab.common.timescale import TimeScale
from etcdlab.proxy.faults import Fault
from etcdlab.testing.fault_proxy import FaultProxy, Faults, Members, make_fault


@dataclass(frozen=True)
class EtcdlabSettings:
    members: int
    time_scale: TimeScale
    endpoints: tuple[str, ...]
    session_cluster: bool
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.members <= MAX_MEMBERS:
            raise pytest.UsageError(
                f"--etcdlab-members must be between 1 and {MAX_MEMBERS} ({MEMBERS_BOUND}): "
                f"{self.members}"
            )
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
    group.addoption(
        "--etcdlab-seed",
        type=int,
        default=0,
        help="seed of the fault proxy's randomness (default 0)",
    )


_SETTINGS = pytest.StashKey[EtcdlabSettings]()


def _time_scale(value: float) -> TimeScale:
    try:
        return TimeScale(value, "--etcdlab-time-scale")
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


def pytest_configure(config: pytest.Config) -> None:
    # Validated here so a bad option stops the run with one line, before any test.
    raw = str(config.getoption("etcdlab_endpoints"))
    config.stash[_SETTINGS] = EtcdlabSettings(
        members=int(config.getoption("etcdlab_members")),
        time_scale=_time_scale(config.getoption("etcdlab_time_scale")),
        endpoints=tuple(part.strip() for part in raw.split(",") if part.strip()),
        session_cluster=bool(config.getoption("etcdlab_session_cluster")),
        seed=int(config.getoption("etcdlab_seed")),
    )
    config.addinivalue_line(
        "markers",
        "etcdlab_fault(kind, member=None, **attributes): apply a fault proxy fault "
        "(e.g. 'loss', member=0, p=0.3) for the whole test",
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


@pytest.fixture
def fault_proxy(
    etcdlab_settings: EtcdlabSettings, etcd_endpoints: list[str]
) -> Iterator[FaultProxy]:
    """Fault proxy links in front of every member, named ``member0``... in member order.

    Faults applied by ``etcdlab_fault`` markers are active from the start; all
    links close after the test, pass or fail.
    """
    proxy = FaultProxy(
        etcd_endpoints, seed=etcdlab_settings.seed, time_scale=etcdlab_settings.time_scale
    )
    with proxy:
        yield proxy


@pytest.fixture
def faults(fault_proxy: FaultProxy) -> Faults:
    """Fault scopes on ``fault_proxy``: ``with``/``async with faults.loss(0, 0.3):``."""
    return Faults(fault_proxy)


def _marked_faults(item: pytest.Item, members: int) -> list[tuple[Members, Fault]]:
    """The faults ``item``'s ``etcdlab_fault`` markers ask for; UsageError naming the
    test and what is wrong."""
    faults: list[tuple[Members, Fault]] = []
    for marker in item.iter_markers("etcdlab_fault"):
        try:
            if len(marker.args) != 1 or not isinstance(marker.args[0], str):
                raise ValueError("needs one positional argument: the fault kind")
            attributes = dict(marker.kwargs)
            member = attributes.pop("member", None)
            chosen = [] if member is None else [member] if isinstance(member, int) else member
            if not all(isinstance(m, int) and 0 <= m < members for m in chosen):
                raise ValueError(f"member must be None or indexes 0..{members - 1}: {member!r}")
            faults.append((member, make_fault(marker.args[0], attributes)))
        except ValueError as error:
            raise pytest.UsageError(f"{item.nodeid}: etcdlab_fault: {error}") from None
    return faults


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Checked before any test runs: a bad marker stops the session with one line
    # (a UsageError raised in a fixture would be a test error with a traceback).
    settings = config.stash[_SETTINGS]
    for item in items:
        _marked_faults(item, len(settings.endpoints) or settings.members)


@pytest.fixture(autouse=True)
def _etcdlab_marked_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("etcdlab_fault") is None:
        yield
        return
    proxy: FaultProxy = request.getfixturevalue("fault_proxy")
    applied = []
    for member, fault in _marked_faults(request.node, len(proxy.links)):
        applied.extend(proxy.add(member, fault))
    yield
    proxy.remove(applied)


ClientFactory = Callable[..., EtcdClient]


@pytest.fixture
def etcd_client_factory(
    etcdlab_settings: EtcdlabSettings, fault_proxy: FaultProxy
) -> ClientFactory:
    """``factory(config=None, retry=None, name="client") -> EtcdClient`` through the proxy.

    The client is not connected until used; open it with ``async with`` in the
    test's own event loop (what anyio tests need). ``config`` defaults to
    ``ClientConfig().scaled(time_scale)``.
    """

    def factory(
        config: ClientConfig | None = None,
        *,
        retry: RetryPolicy | None = None,
        name: str = "client",
        **kwargs: Any,
    ) -> EtcdClient:
        chosen = config or ClientConfig().scaled(etcdlab_settings.time_scale)
        return EtcdClient(fault_proxy.addresses, chosen, retry=retry, name=name, **kwargs)

    return factory


if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    # On the loop of the function-scoped test using it, whatever default loop scope
    # the user's suite configures: a client's background tasks run on its own loop.
    @pytest_asyncio.fixture(loop_scope="function")
    async def etcd_client(etcd_client_factory: ClientFactory) -> AsyncIterator[EtcdClient]:
        """An EtcdClient through ``fault_proxy``, closed after the test (pytest-asyncio)."""
        async with etcd_client_factory() as client:
            yield client
