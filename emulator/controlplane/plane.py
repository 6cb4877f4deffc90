"""The whole emulated control plane in one event loop, reporting to a listener.

* ``apiservers`` apiservers, each an :class:`~etcdlab.client.etcd.EtcdClient` with the
  analysis's settings, a watch cache, and the livez ``etcd`` and readyz
  ``etcd-readiness`` checks (:mod:`etcdlab.client.health`), each over its own
  client like the real apiserver's, asked every ``health_check_interval``;
* leader-elected components: two kube-controller-manager candidates (the leader
  runs the Deployment, StatefulSet and DaemonSet controllers), two scheduler
  candidates, and ``components`` more leases to load etcd, each contested by
  ``candidates`` candidates spread over the apiservers;
* a user who changes the workloads every ``churn_period``, so controllers have
  work while the fault is on (the engine stops it when the faults end, so the
  time to converge afterwards is measurable);
* records of every check answer (livez as ``apiserver-N``, readyz as
  ``apiserver-N/etcd-readiness``) and of every
  connection change of the apiservers' clients (``transport_state``,
  ``keepalive_failure``);
* samplers: workqueue depths, informer cache sizes, the ground-truth reconcile
  progress, and the event loop's own lag.

A candidate whose elector steps down "restarts" (a fresh elector after
``restart_delay``), like a kube-controller-manager process that exits on lost
leadership and is restarted by its supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from etcdlab.client.config import ClientConfig
from etcdlab.client.connection import ConnectivityState
from etcdlab.client.errors import EtcdError
from etcdlab.client.etcd import EtcdClient
from etcdlab.client.health import LIVEZ, READYZ, EtcdCheck, poll
from etcdlab.common.clock import Clock
from etcdlab.common.timeline import EventKind
from etcdlab.common.timescale import TimeScale
from etcdlab.controlplane.apiserver import (
    APIServer,
    CacheConfig,
    Conflict,
    WatchCache,
)
from etcdlab.controlplane.controllers import (
    CONTROLLER_TYPES,
    DAEMONSETS,
    DEPLOYMENTS,
    NODES,
    STATEFULSETS,
    Controller,
    ControllerConfig,
    Informers,
    workload_progress,
)
from etcdlab.controlplane.listener import PlaneListener
from etcdlab.election.config import LeaderElectionConfig
from etcdlab.election.elector import LeaderCallbacks, LeaderElector
from etcdlab.election.lock import EtcdLeaseLock, ObservedRecord, ResourceLock
from etcdlab.election.record import LeaderElectionRecord

KCM_LEASE = "kube-controller-manager"
SCHEDULER_LEASE = "kube-scheduler"


@dataclass(frozen=True)
class PlaneConfig:
    """Sizes and timings of the emulated control plane (timings in seconds).

    ``client`` is the apiserver's etcd client (the analysis's keepalive 30 s / 10 s,
    dial 20 s, checks 2 s); ``election`` holds client-go's default
    LeaseDuration 15 s, RenewDeadline 10 s, RetryPeriod 2 s (identity and lease
    name are filled in per candidate). ``request_timeout`` is the apiserver's
    ``--request-timeout``: the longest one request waits on etcd.
    ``election_request_timeout`` bounds each read and write of a Lease record:
    client-go's leader-election client gives every request max(1 s,
    RenewDeadline / 2) (``resourcelock.NewFromKubeconfig``), and the apiserver
    passes that deadline on to etcd. Without it a renewal waits for etcd's own
    request timeout (5 s + 2 election timeouts), whose 5 s no time scale shrinks.
    """

    apiservers: int = 2
    components: int = 4
    candidates: int = 2
    nodes: int = 5
    deployments: int = 6
    statefulsets: int = 6
    daemonsets: int = 2
    replicas: int = 3
    churn_period: float = 15.0
    sample_period: float = 0.5
    lag_period: float = 0.05
    restart_delay: float = 1.0
    request_timeout: float = 60.0
    election_request_timeout: float = 5.0
    seed: int = 0
    client: ClientConfig = field(default_factory=ClientConfig)
    election: LeaderElectionConfig = field(
        default_factory=lambda: LeaderElectionConfig(identity="template")
    )
    controllers: ControllerConfig = field(default_factory=ControllerConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)

    def __post_init__(self) -> None:
        for name in ("apiservers", "candidates", "nodes", "replicas"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("components", "deployments", "statefulsets", "daemonsets"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in (
            "sample_period",
            "lag_period",
            "restart_delay",
            "request_timeout",
            "election_request_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.churn_period < 0:
            raise ValueError("churn_period must not be negative")

    def scaled(self, time_scale: float) -> PlaneConfig:
        scale = TimeScale(time_scale)
        return replace(
            self,
            churn_period=scale.scaled(self.churn_period),
            sample_period=scale.scaled(self.sample_period),
            restart_delay=scale.scaled(self.restart_delay),
            request_timeout=scale.scaled(self.request_timeout),
            election_request_timeout=scale.scaled(self.election_request_timeout),
            client=self.client.scaled(scale),
            election=self.election.scaled(scale),
            controllers=self.controllers.scaled(scale),
            cache=self.cache.scaled(scale),
        )

    @property
    def objects(self) -> int:
        """Workload objects at rest: nodes, workloads, ReplicaSets and pods."""
        return (
            self.nodes
            + self.deployments * (2 + self.replicas)
            + self.statefulsets * (1 + self.replicas)
            + self.daemonsets * (1 + self.nodes)
        )


class RecordingLock:
    """A :class:`ResourceLock` that records the election steps the analysis names.

    A write failing while its candidate leads is a failed renewal; a leader
    reading the record is on the slow path (its optimistic update failed); a
    write failing while it does not lead is a failed acquisition.
    """

    def __init__(
        self, inner: ResourceLock, listener: PlaneListener, identity: str, lease: str
    ) -> None:
        self._inner = inner
        self.key = inner.key
        self._listener = listener
        self._identity = identity
        self._lease = lease
        self.elector: LeaderElector | None = None

    def describe(self) -> str:
        return self._inner.describe()

    @property
    def revision(self) -> int | None:
        return self._inner.revision

    @property
    def _leading(self) -> bool:
        return self.elector is not None and self.elector.leading

    async def get(self) -> ObservedRecord:
        if self._leading:
            self._listener.event(self._identity, EventKind.SLOW_PATH, self._lease)
        return await self._inner.get()

    async def create(self, record: LeaderElectionRecord) -> None:
        await self._write(self._inner.create(record))

    async def update(self, record: LeaderElectionRecord) -> None:
        await self._write(self._inner.update(record))

    async def _write(self, write: Awaitable[None]) -> None:
        leading = self._leading
        try:
            await write
        except BaseException:
            # Cancelled included: the elector abandons a write at its renew deadline.
            kind = EventKind.RENEW_FAILED if leading else EventKind.ACQUIRE_FAILED
            self._listener.event(self._identity, kind, self._lease)
            raise


class ElectedComponent:
    """One candidate for one lease, restarted whenever it loses leadership."""

    def __init__(
        self,
        identity: str,
        lease: str,
        api: APIServer,
        clock: Clock,
        listener: PlaneListener,
        config: PlaneConfig,
        work: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.identity = identity
        self.lease = lease
        self.api = api
        self._clock = clock
        self._listener = listener
        self._config = config
        self._work = work
        self._rng = random.Random(f"{config.seed}/{identity}")
        self.elector: LeaderElector | None = None

    async def run(self) -> None:
        election = replace(self._config.election, identity=self.identity, name=self.lease)
        while True:
            lock = RecordingLock(
                EtcdLeaseLock(
                    self.api, name=self.lease, timeout=self._config.election_request_timeout
                ),
                self._listener,
                self.identity,
                self.lease,
            )
            self.elector = LeaderElector(
                election,
                lock,
                LeaderCallbacks(on_started_leading=self._lead, on_stopped_leading=lambda: None),
                clock=self._clock,
                rng=self._rng,
                listener=self,
            )
            lock.elector = self.elector
            await self.elector.run()
            await self._clock.sleep(self._config.restart_delay)

    async def _lead(self) -> None:
        if self._work is not None:
            await self._work()
        else:
            await asyncio.Event().wait()

    # LeadershipListener
    def started_leading(self, identity: str, at: float, term: int) -> None:
        self._listener.leader(self.lease, identity, True)

    def renewed(self, identity: str, at: float) -> None:
        pass

    def stopped_leading(self, identity: str, at: float) -> None:
        self._listener.leader(self.lease, identity, False)


class ControllerManager:
    """The work of a kube-controller-manager leader: informers plus controllers."""

    def __init__(self, api: APIServer, clock: Clock, listener: PlaneListener, config: PlaneConfig):
        self._api = api
        self._clock = clock
        self._listener = listener
        self._config = config
        self.controllers: list[Controller] = []
        self.informers: Informers | None = None

    async def run(self) -> None:
        informers = Informers(
            self._api, self._clock, self._config.controllers.informers, self._listener
        )
        controllers = [
            kind(self._api, informers, self._clock, self._config.controllers, self._listener)
            for kind in CONTROLLER_TYPES
        ]
        self.informers, self.controllers = informers, controllers
        try:
            await asyncio.gather(
                *(i.run() for i in list(informers.by_kind.values())),
                *(c.run() for c in controllers),
            )
        finally:
            self.informers, self.controllers = None, []


class ControlPlane:
    def __init__(
        self,
        endpoints: Sequence[str],
        clock: Clock,
        listener: PlaneListener,
        config: PlaneConfig,
        truth_endpoints: Sequence[str] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._listener = listener
        self._rng = random.Random(config.seed)
        client_config = replace(config.client, request_timeout=config.request_timeout)
        self.clients: list[EtcdClient] = []
        self.apiservers: list[APIServer] = []
        self.caches: list[WatchCache] = []
        self.checks: list[tuple[str, EtcdCheck]] = []
        for i in range(config.apiservers):
            # Rotated so that a sticky client starts on a different member each.
            rotated = [*endpoints[i % len(endpoints) :], *endpoints[: i % len(endpoints)]]
            name = f"apiserver-{i}"
            own = replace(client_config, seed=config.seed + i)
            client = EtcdClient(rotated, own, clock=clock, name=name, listener=self)
            cache = WatchCache(client, clock, config.cache, listener, f"{name}/cache")
            self.clients.append(client)
            self.caches.append(cache)
            self.apiservers.append(APIServer(name, client, clock, listener, cache))
            # Livez is recorded under the apiserver's name, readyz beside it (as
            # the Go reference does); each check has a client of its own.
            for check, timeout, component in (
                (LIVEZ, own.health_check_timeout, name),
                (READYZ, own.ready_check_timeout, f"{name}/{READYZ}"),
            ):
                own_client = EtcdClient(
                    rotated, own, clock=clock, name=f"{name}/{check}", listener=self
                )
                self.checks.append(
                    (component, EtcdCheck(check, own_client, timeout, own.health_key))
                )
        # Ground truth for reconcile progress, read past the faults when possible.
        self.observer = EtcdClient(
            list(truth_endpoints or endpoints),
            replace(client_config, request_timeout=config.sample_period * 4),
            clock=clock,
            name="observer",
        )
        # Followed by watch: listing a thousand objects per sample would itself
        # stall the event loop being measured.
        self.truth = WatchCache(self.observer, clock, config.cache, None, "observer")
        self.managers: list[ControllerManager] = []
        self.components: list[ElectedComponent] = []
        leases = [KCM_LEASE, SCHEDULER_LEASE, *(f"component-{i}" for i in range(config.components))]
        for lease in leases:
            for c in range(config.candidates):
                api = self.apiservers[c % len(self.apiservers)]
                work = None
                if lease == KCM_LEASE:
                    manager = ControllerManager(api, clock, listener, config)
                    self.managers.append(manager)
                    work = manager.run
                self.components.append(
                    ElectedComponent(f"{lease}-{c}", lease, api, clock, listener, config, work)
                )
        self._tasks: list[asyncio.Task[None]] = []
        self.progress: dict[str, tuple[int, int]] = {}
        self.churning = True

    # -- lifecycle --------------------------------------------------------------

    async def create_objects(self) -> None:
        """Create the nodes and workloads (skipping any that exist)."""
        api = APIServer("setup", self.observer, self._clock)
        wanted: list[tuple[str, str, dict[str, Any]]] = [
            *((NODES, f"node-{i}", {}) for i in range(self.config.nodes)),
            *(
                (DEPLOYMENTS, f"web-{i}", {"replicas": self.config.replicas, "template": "v1"})
                for i in range(self.config.deployments)
            ),
            *(
                (STATEFULSETS, f"db-{i}", {"replicas": self.config.replicas})
                for i in range(self.config.statefulsets)
            ),
            *((DAEMONSETS, f"agent-{i}", {}) for i in range(self.config.daemonsets)),
        ]
        for kind, name, spec in wanted:
            if await api.get(kind, name) is None:
                await api.create(kind, name, spec)

    def start(self) -> None:
        spawn = self._spawn
        spawn(self.truth.run())
        for cache in self.caches:
            spawn(cache.run())
        for answers_as, check in self.checks:
            spawn(self._probe(answers_as, check))
        for component in self.components:
            spawn(component.run())
        spawn(self._sample_loop())
        spawn(self._lag_loop())
        if self.config.churn_period:
            spawn(self._churn_loop())

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(job))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in [*self.clients, *(check.client for _, check in self.checks), self.observer]:
            await client.close()

    def failed_tasks(self) -> list[BaseException]:
        """Exceptions that ended a background job early (each is a bug)."""
        return [
            error
            for t in self._tasks
            if t.done() and not t.cancelled() and (error := t.exception()) is not None
        ]

    # -- what it measures ---------------------------------------------------------

    def converged(self) -> bool:
        return bool(self.progress) and all(d == t for d, t in self.progress.values())

    def leaders(self) -> dict[str, str]:
        """Lease -> the candidate that believes it leads (one of them, if several)."""
        result: dict[str, str] = {}
        for component in self.components:
            if component.elector is not None and component.elector.leading:
                result[component.lease] = component.identity
        return result

    async def sample(self) -> None:
        record = self._listener
        depths: dict[str, int] = {}
        caches: dict[str, int] = {}
        for manager in self.managers:
            for controller in manager.controllers:
                depths[controller.name] = depths.get(controller.name, 0) + controller.take_peak()
            if manager.informers is not None:
                for kind, informer in manager.informers.by_kind.items():
                    caches[kind] = max(caches.get(kind, 0), len(informer.store))
        for controller_type in CONTROLLER_TYPES:
            record.gauge(f"workqueue/{controller_type.name}", depths.get(controller_type.name, 0))
        for kind, size in caches.items():
            record.gauge(f"informer_cache/{kind}", size)
        if self.truth.ready.is_set():
            # How far each apiserver's watch cache trails etcd (the observer's
            # watch, past the faults): a cache left behind serves stale reads.
            record.gauge("etcd_revision", self.truth.revision)
            for api in self.apiservers:
                if api.cache is not None and api.cache.ready.is_set():
                    behind = max(0, self.truth.revision - api.cache.revision)
                    record.gauge(f"watch_cache_behind/{api.name}", behind)
            self.progress = workload_progress(self.truth.objects.values())
            for name, (done, total) in self.progress.items():
                if total:
                    record.gauge(f"progress/{name}", done / total)

    async def _probe(self, component: str, check: EtcdCheck) -> None:
        """Ask ``check`` like a prober would, recording every answer."""

        def report(error: str | None) -> None:
            self._listener.health(component, error is None)

        await poll(check, self.config.client.health_check_interval, self._clock, report)

    # ClientListener: the apiservers' connections
    def connection_state(
        self, client: str, endpoint: str, state: ConnectivityState, error: str | None
    ) -> None:
        detail = f"{endpoint} {state} {client}" + (f": {error}" if error else "")
        self._listener.event(client, EventKind.TRANSPORT_STATE, detail)

    def keepalive_closed(self, client: str, endpoint: str) -> None:
        self._listener.event(client, EventKind.KEEPALIVE_FAILURE, f"{endpoint} {client}")

    async def _sample_loop(self) -> None:
        while True:
            await self.sample()
            await self._clock.sleep(self.config.sample_period)

    async def _lag_loop(self) -> None:
        # Real time on purpose: the lag of this loop is what is being measured.
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.config.lag_period)
            self._listener.gauge(
                "event_loop_lag", max(0.0, loop.time() - started - self.config.lag_period)
            )

    async def _churn_loop(self) -> None:
        api = self.apiservers[-1]
        rounds = 0
        while True:
            await self._clock.sleep(self.config.churn_period)
            if not self.churning:
                return
            rounds += 1
            # A user whose edit failed tries again next round; the failure is recorded.
            with contextlib.suppress(EtcdError, Conflict):
                await self._churn(api, rounds)

    async def _churn(self, api: APIServer, rounds: int) -> None:
        rng = self._rng
        if self.config.deployments:
            dep = await api.get(DEPLOYMENTS, f"web-{rng.randrange(self.config.deployments)}")
            if dep is not None:
                spec = dict(dep.spec)
                if rng.random() < 0.5:
                    spec["template"] = f"v{rounds + 1}"
                spec["replicas"] = rng.randint(1, self.config.replicas + 1)
                await api.update(dep, spec)
        if self.config.statefulsets:
            sts = await api.get(STATEFULSETS, f"db-{rng.randrange(self.config.statefulsets)}")
            if sts is not None:
                await api.update(
                    sts, {**sts.spec, "replicas": rng.randint(1, self.config.replicas + 1)}
                )
        if self.config.daemonsets and rounds % 3 == 0:
            name = f"node-{self.config.nodes + rounds // 3}"
            await api.create(NODES, name, {})
