"""Deployment, StatefulSet and DaemonSet controllers over simulated objects.

The shapes follow Kubernetes, reduced to what touches etcd:

* a Deployment (``replicas``, ``template``) owns one ReplicaSet per template;
  the current one is scaled to ``replicas``, old ones to zero and then deleted;
  each ReplicaSet's pods are created in one reconcile (the ReplicaSet controller
  is folded into the Deployment controller here);
* a StatefulSet (``replicas``) owns pods ``<name>-0 .. <name>-(n-1)``, created one
  per reconcile in ordinal order and removed from the highest ordinal down;
* a DaemonSet owns one pod per node, reconciled across all nodes at once.

Every controller follows the client-go pattern: informer handlers only enqueue
keys; workers take a key, reconcile it from the informer caches, and on failure
put it back rate-limited. A pod has no kubelet: it is running once it exists.
Owners are written ``<kind>/<name>`` in the object's ``owner`` field.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from etcdlab.client.errors import EtcdError
from etcdlab.common.clock import Clock
from etcdlab.controlplane.apiserver import APIServer, Conflict, Object, count_ops
from etcdlab.controlplane.informer import Informer, InformerConfig
from etcdlab.controlplane.listener import PlaneListener
from etcdlab.controlplane.ratelimit import RateLimitConfig, default_controller_rate_limiter
from etcdlab.controlplane.workqueue import RateLimitingQueue, ShutDown

PODS, NODES = "pods", "nodes"
DEPLOYMENTS, REPLICASETS = "deployments", "replicasets"
STATEFULSETS, DAEMONSETS = "statefulsets", "daemonsets"


@dataclass(frozen=True)
class ControllerConfig:
    """``workers``: keys reconciled in parallel per controller (kube-controller-manager's
    ``--concurrent-*-syncs``). ``rate_limits``: the workqueue's retry limits.
    ``informers``: list/watch/resync timings."""

    workers: int = 2
    rate_limits: RateLimitConfig = field(default_factory=RateLimitConfig)
    informers: InformerConfig = field(default_factory=InformerConfig)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")

    def scaled(self, time_scale: float) -> ControllerConfig:
        return replace(
            self,
            rate_limits=self.rate_limits.scaled(time_scale),
            informers=self.informers.scaled(time_scale),
        )


class Informers:
    """One informer per kind, shared by the controllers of one manager."""

    def __init__(
        self, api: APIServer, clock: Clock, config: InformerConfig, listener: PlaneListener | None
    ) -> None:
        self._api = api
        self._clock = clock
        self._config = config
        self._listener = listener
        self.by_kind: dict[str, Informer] = {}

    def __getitem__(self, kind: str) -> Informer:
        if kind not in self.by_kind:
            self.by_kind[kind] = Informer(
                self._api, kind, self._clock, self._config, self._listener
            )
        return self.by_kind[kind]

    async def wait_synced(self) -> None:
        await asyncio.gather(*(i.synced.wait() for i in self.by_kind.values()))


class Controller:
    name: ClassVar[str]
    kind: ClassVar[str]
    # Kinds whose objects are owned by this controller's objects, directly or
    # through an intermediate kind (a pod's owner's owner is a Deployment).
    owned: ClassVar[tuple[str, ...]] = (PODS,)

    def __init__(
        self,
        api: APIServer,
        informers: Informers,
        clock: Clock,
        config: ControllerConfig | None = None,
        listener: PlaneListener | None = None,
    ) -> None:
        self.api = api
        self.informers = informers
        self.config = config or ControllerConfig()
        self._clock = clock
        self._listener = listener
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(
            default_controller_rate_limiter(clock, self.config.rate_limits), clock
        )
        self.reconciles = 0
        self.failures = 0
        self._peak = 0
        informers[self.kind].add_handler(lambda obj: self.enqueue(obj.name))
        for kind in self.owned:
            informers[kind].add_handler(self._owned_changed)
        for kind, handler in self._related_handlers().items():
            informers[kind].add_handler(handler)

    def _related_handlers(self) -> dict[str, Callable[[Object], None]]:
        """Handlers for kinds that are neither this controller's nor owned by it."""
        return {}

    @property
    def depth(self) -> int:
        """Keys queued or waiting out a retry delay."""
        return len(self.queue) + self.queue.waiting

    def take_peak(self) -> int:
        """The largest depth since the last call (a sampler would miss short bursts)."""
        peak, self._peak = max(self._peak, self.depth), self.depth
        return peak

    def enqueue(self, key: str) -> None:
        self.queue.add(key)
        self._peak = max(self._peak, self.depth)

    def _owned_changed(self, obj: Object) -> None:
        owner = self._owner_of(obj)
        if owner is not None:
            self.enqueue(owner)

    def _owner_of(self, obj: Object) -> str | None:
        kind, _, name = (obj.owner or "").partition("/")
        return name if kind == self.kind else None

    async def run(self) -> None:
        """Wait for the caches, then reconcile until cancelled."""
        await self.informers.wait_synced()
        workers = [asyncio.create_task(self._worker()) for _ in range(self.config.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            self.queue.shut_down()
            for worker in workers:
                worker.cancel()
            for worker in workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            started = self._clock.now()
            ok = True
            with count_ops() as ops:
                try:
                    await self.reconcile(key)
                except (EtcdError, Conflict):
                    ok = False
            self.reconciles += 1
            if ok:
                self.queue.forget(key)
            else:
                self.failures += 1
                self.queue.add_rate_limited(key)
                self._peak = max(self._peak, self.depth)
            self.queue.done(key)
            if self._listener is not None:
                self._listener.reconcile(self.name, key, self._clock.now() - started, ops[0], ok)

    async def reconcile(self, name: str) -> None:
        raise NotImplementedError

    def _store(self, kind: str) -> dict[str, Object]:
        return self.informers[kind].store

    async def _set_status(self, obj: Object, ready: int) -> None:
        if obj.spec.get("ready") != ready:
            await self.api.update(obj, {**obj.spec, "ready": ready})

    async def _create_pod(self, name: str, owner: str, node: str, **extra: Any) -> None:
        await self.api.create(PODS, name, {"owner": owner, "node": node, **extra})


def _nodes(controller: Controller) -> list[str]:
    return sorted(controller._store(NODES)) or ["node-0"]


class DeploymentController(Controller):
    name = "deployment"
    kind = DEPLOYMENTS
    owned = (REPLICASETS,)

    def _related_handlers(self) -> dict[str, Callable[[Object], None]]:
        # A pod's owner is a ReplicaSet; its change concerns the Deployment
        # that owns that ReplicaSet.
        return {PODS: self._pod_changed}

    def _pod_changed(self, pod: Object) -> None:
        kind, _, rs_name = (pod.owner or "").partition("/")
        rs = self._store(REPLICASETS).get(rs_name) if kind == REPLICASETS else None
        if rs is not None:
            self._owned_changed(rs)

    async def reconcile(self, name: str) -> None:
        deployment = self._store(DEPLOYMENTS).get(name)
        if deployment is None:
            return
        replicas = int(deployment.spec.get("replicas", 1))
        target = f"{name}-{deployment.spec.get('template', 'v1')}"
        owner = f"{DEPLOYMENTS}/{name}"
        sets = {rs.name: rs for rs in self.informers[REPLICASETS].owned_by(owner)}
        if target not in sets:
            sets[target] = await self.api.create(
                REPLICASETS, target, {"owner": owner, "replicas": replicas}
            )
        ready = 0
        for rs in sets.values():
            want = replicas if rs.name == target else 0
            if rs.spec.get("replicas") != want:
                rs = await self.api.update(rs, {**rs.spec, "replicas": want})
            pods = await self._scale_pods(rs, want)
            if rs.name == target:
                ready = pods
            elif pods == 0:
                await self.api.delete(rs)
        await self._set_status(deployment, ready)

    async def _scale_pods(self, rs: Object, want: int) -> int:
        owner = f"{REPLICASETS}/{rs.name}"
        pods = self.informers[PODS].owned_by(owner)
        taken = {p.name for p in pods}
        nodes = _nodes(self)
        free = (f"{rs.name}-{i}" for i in range(want + len(pods)) if f"{rs.name}-{i}" not in taken)
        for index in range(want - len(pods)):
            await self._create_pod(next(free), owner, nodes[index % len(nodes)])
        for pod in sorted(pods, key=lambda p: p.name, reverse=True)[: max(0, len(pods) - want)]:
            await self.api.delete(pod)
        return want


class StatefulSetController(Controller):
    name = "statefulset"
    kind = STATEFULSETS

    async def reconcile(self, name: str) -> None:
        sts = self._store(STATEFULSETS).get(name)
        if sts is None:
            return
        replicas = int(sts.spec.get("replicas", 1))
        owner = f"{STATEFULSETS}/{name}"
        pods = {int(p.spec.get("ordinal", 0)): p for p in self.informers[PODS].owned_by(owner)}
        missing = [i for i in range(replicas) if i not in pods]
        extra = sorted((i for i in pods if i >= replicas), reverse=True)
        nodes = _nodes(self)
        # Ordered: one pod per reconcile; its add event brings the set back.
        if missing:
            ordinal = missing[0]
            await self._create_pod(
                f"{name}-{ordinal}", owner, nodes[ordinal % len(nodes)], ordinal=ordinal
            )
        elif extra:
            await self.api.delete(pods[extra[0]])
        await self._set_status(sts, len([i for i in pods if i < replicas]))


class DaemonSetController(Controller):
    name = "daemonset"
    kind = DAEMONSETS

    def _related_handlers(self) -> dict[str, Callable[[Object], None]]:
        return {NODES: self._node_changed}

    def _node_changed(self, node: Object) -> None:
        for ds in self._store(DAEMONSETS):
            self.enqueue(ds)

    async def reconcile(self, name: str) -> None:
        ds = self._store(DAEMONSETS).get(name)
        if ds is None:
            return
        owner = f"{DAEMONSETS}/{name}"
        nodes = set(self._store(NODES))
        pods = {str(p.spec.get("node")): p for p in self.informers[PODS].owned_by(owner)}
        for node in sorted(nodes - set(pods)):
            await self._create_pod(f"{name}-{node}", owner, node)
        for node in sorted(set(pods) - nodes):
            await self.api.delete(pods[node])
        await self._set_status(ds, len(nodes))


CONTROLLER_TYPES: tuple[type[Controller], ...] = (
    StatefulSetController,
    DeploymentController,
    DaemonSetController,
)


def workload_progress(objects: Iterable[Object]) -> dict[str, tuple[int, int]]:
    """Ground truth per controller: (workloads whose pods match the spec, workloads)."""
    by_kind: dict[str, dict[str, Object]] = {}
    for obj in objects:
        by_kind.setdefault(obj.kind, {})[obj.name] = obj
    pods_of: dict[str, set[str]] = {}
    for pod in by_kind.get(PODS, {}).values():
        pods_of.setdefault(pod.owner or "", set()).add(pod.name)
    nodes = set(by_kind.get(NODES, {}))

    def deployment_done(dep: Object) -> bool:
        target = f"{dep.name}-{dep.spec.get('template', 'v1')}"
        owner = f"{DEPLOYMENTS}/{dep.name}"
        sets = [rs for rs in by_kind.get(REPLICASETS, {}).values() if rs.owner == owner]
        if [rs.name for rs in sets] != [target]:
            return False
        want = int(dep.spec.get("replicas", 1))
        return len(pods_of.get(f"{REPLICASETS}/{target}", ())) == want

    def sts_done(sts: Object) -> bool:
        want = {f"{sts.name}-{i}" for i in range(int(sts.spec.get("replicas", 1)))}
        return pods_of.get(f"{STATEFULSETS}/{sts.name}", set()) == want

    def ds_done(ds: Object) -> bool:
        want = {f"{ds.name}-{node}" for node in nodes}
        return pods_of.get(f"{DAEMONSETS}/{ds.name}", set()) == want

    checks = (
        (StatefulSetController.name, STATEFULSETS, sts_done),
        (DeploymentController.name, DEPLOYMENTS, deployment_done),
        (DaemonSetController.name, DAEMONSETS, ds_done),
    )
    return {
        name: (sum(done(o) for o in by_kind.get(kind, {}).values()), len(by_kind.get(kind, {})))
        for name, kind, done in checks
    }
