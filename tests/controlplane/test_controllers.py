"""The emulated apiserver, watch cache, informers and controllers on real etcd."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from etcdlab.client.config import ClientConfig
from etcdlab.client.etcd import EtcdClient
from etcdlab.cluster.local import LocalCluster
from etcdlab.common.clock import MonotonicClock, within
from etcdlab.common.timeline import ErrorClass, EventKind, Recorder, Timeline
from etcdlab.common.timescale import TimeScale
from etcdlab.controlplane.apiserver import (
    APIServer,
    CacheConfig,
    Conflict,
    Gone,
    WatchCache,
    count_ops,
)
from etcdlab.controlplane.controllers import (
    CONTROLLER_TYPES,
    DAEMONSETS,
    DEPLOYMENTS,
    NODES,
    PODS,
    STATEFULSETS,
    ControllerConfig,
    Informers,
    workload_progress,
)
from etcdlab.controlplane.informer import Informer, InformerConfig
from etcdlab.protos import rpc_pb2
from tests.waiting import eventually

CLOCK = MonotonicClock()


@contextlib.asynccontextmanager
async def running(*jobs: Awaitable[None]) -> AsyncIterator[None]:
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # A job that died early would make the test wait for nothing.
        assert all(t.cancelled() or t.exception() is None for t in tasks)


def recorder() -> Recorder:
    return Recorder(Timeline("test", seed=0, time_scale=TimeScale(1.0)), CLOCK)


async def all_done(direct: APIServer) -> bool:
    objects = []
    for kind in (NODES, PODS, DEPLOYMENTS, "replicasets", STATEFULSETS, DAEMONSETS):
        objects.extend((await direct.list(kind))[0])
    progress = workload_progress(objects)
    return all(done == total for done, total in progress.values())


def waiter(direct: APIServer) -> Callable[[], Awaitable[bool]]:
    return lambda: all_done(direct)


async def test_controllers_converge_and_follow_spec_changes(cluster: LocalCluster) -> None:
    record = recorder()
    async with EtcdClient(cluster.endpoints) as client:
        cache = WatchCache(client, CLOCK, CacheConfig(freshness=2.0), record)
        api = APIServer("apiserver-0", client, CLOCK, record, cache)
        direct = APIServer("direct", client, CLOCK)
        for i in range(3):
            await direct.create(NODES, f"node-{i}", {})
        await direct.create(DEPLOYMENTS, "web", {"replicas": 3, "template": "v1"})
        await direct.create(STATEFULSETS, "db", {"replicas": 3})
        await direct.create(DAEMONSETS, "agent", {})
        informers = Informers(api, CLOCK, InformerConfig(resync_period=0), record)
        controllers = [
            kind(api, informers, CLOCK, ControllerConfig(), record) for kind in CONTROLLER_TYPES
        ]
        jobs = [cache.run(), *(i.run() for i in list(informers.by_kind.values()))]
        async with running(*jobs, *(c.run() for c in controllers)):
            await eventually(waiter(direct), 30, "the workloads to converge")
            assert cache.watchers == len(informers.by_kind), "informers watch via the cache"
            pods = {p.name for p in (await direct.list(PODS))[0]}
            assert pods == {
                "web-v1-0", "web-v1-1", "web-v1-2", "db-0", "db-1", "db-2",
                "agent-node-0", "agent-node-1", "agent-node-2",
            }  # fmt: skip
            web = await direct.get(DEPLOYMENTS, "web")
            db = await direct.get(STATEFULSETS, "db")
            assert web is not None and db is not None
            await direct.update(web, {"replicas": 2, "template": "v2"})
            await direct.update(db, {"replicas": 1})
            await direct.create(NODES, "node-3", {})
            await eventually(waiter(direct), 30, "the workloads to follow the changes")
            pods = {p.name for p in (await direct.list(PODS))[0]}
            assert {p for p in pods if p.startswith("web")} == {"web-v2-0", "web-v2-1"}
            assert {p for p in pods if p.startswith("db")} == {"db-0"}
            assert "agent-node-3" in pods
            assert {rs.name for rs in (await direct.list("replicasets"))[0]} == {"web-v2"}
    reconciles = record.timeline.reconciles
    assert {r.controller for r in reconciles} == {"deployment", "statefulset", "daemonset"}
    # The first DaemonSet reconcile creates a pod on each of the three nodes.
    first_ds = next(r for r in reconciles if r.controller == "daemonset" and r.ops)
    assert first_ds.ops >= 3
    # StatefulSet pods come one per reconcile.
    assert max(r.ops for r in reconciles if r.controller == "statefulset") <= 2


async def test_cache_serves_fresh_reads_and_falls_through_when_stale(
    cluster: LocalCluster,
) -> None:
    record = recorder()
    async with EtcdClient(cluster.endpoints) as client:
        cache = WatchCache(client, CLOCK, CacheConfig(freshness=0.3), record)
        api = APIServer("apiserver-0", client, CLOCK, record, cache)
        await api.create(NODES, "n1", {"zone": "a"})
        async with running(cache.run()):
            await eventually(lambda: cache.get(NODES, "n1") is not None, 10, "the cache to fill")
            node = await api.get(NODES, "n1")
            assert node is not None and node.spec == {"zone": "a"}
            assert record.timeline.requests[-1].source == "cache"
        # Nothing feeds the cache any more: once stale, reads go to etcd.
        await eventually(lambda: not cache.fresh, 5, "the cache to go stale")
        node = await api.get(NODES, "n1")
        assert node is not None and record.timeline.requests[-1].source == "etcd"


async def test_updates_are_compare_and_swap_and_counted(cluster: LocalCluster) -> None:
    async with EtcdClient(cluster.endpoints) as client:
        api = APIServer("apiserver-0", client, CLOCK)
        with count_ops() as ops:
            first = await api.create(DEPLOYMENTS, "d", {"replicas": 1})
            await api.update(first, {"replicas": 2})
            with pytest.raises(Conflict):
                await api.update(first, {"replicas": 3})
            with pytest.raises(Conflict):
                await api.create(DEPLOYMENTS, "d", {})
        assert ops[0] == 4
        current = await api.get(DEPLOYMENTS, "d")
        assert current is not None and current.spec == {"replicas": 2}


async def test_watcher_behind_the_cache_history_gets_gone(cluster: LocalCluster) -> None:
    async with EtcdClient(cluster.endpoints) as client:
        cache = WatchCache(client, CLOCK, CacheConfig(history=3))
        api = APIServer("apiserver-0", client, CLOCK, cache=cache)
        async with running(cache.run()):
            await asyncio.wait_for(cache.ready.wait(), 10)
            start = cache.revision
            for i in range(6):
                await api.create(NODES, f"n{i}", {})
            await eventually(lambda: len(cache.list(NODES)[0]) == 6, 10, "six nodes cached")
            with pytest.raises(Gone):
                async for _ in api.watch(NODES, start + 1):
                    pass
            recent = api.watch(NODES, cache.revision)
            change = await asyncio.wait_for(anext(recent), 5)
            assert change.object.name == "n5"
            await recent.aclose()


async def test_informer_keeps_its_cache_through_an_outage(cluster: LocalCluster) -> None:
    """Quorum lost for longer than keepalive + its timeout: the informer's watch
    really ends (the member left running has no leader, and keepalive closes a
    stream held by a paused one), its relist cannot finish meanwhile, and the
    cache keeps everything it had; once quorum is back the relist ends and the
    informer catches up."""
    record = recorder()
    config = ClientConfig().scaled(0.1)  # keepalive 3 s + 1 s
    detection = config.keepalive_time + config.keepalive_timeout
    async with EtcdClient(cluster.endpoints, config) as client:
        api = APIServer("apiserver-0", client, CLOCK, record)
        for i in range(5):
            await api.create(PODS, f"p{i}", {"owner": "statefulsets/s"})
        informer = Informer(api, PODS, CLOCK, InformerConfig(relist_backoff=0.1), record)
        seen: list[str] = []
        informer.add_handler(lambda obj: seen.append(obj.name))

        def relists() -> int:
            events = record.timeline.events
            return sum(e.kind is EventKind.RELIST and e.component == informer.name for e in events)

        def cached() -> set[str]:
            return set(informer.store)

        async with running(informer.run()):
            await asyncio.wait_for(informer.synced.wait(), 10)
            assert cached() == {f"p{i}" for i in range(5)}
            assert [p.name for p in informer.owned_by("statefulsets/s")] == [
                f"p{i}" for i in range(5)
            ]
            assert relists() == 0
            leader = cluster.wait_leader()
            cut = [leader, (leader + 1) % 3]
            for member in cut:
                cluster.pause(member)
            paused = time.monotonic()
            kept: list[set[str]] = []
            try:
                # The outage lasts past keepalive + timeout, and until the watch
                # broke and the informer went to relist (which waits for quorum):
                # the cache is checked all along.
                def broken() -> bool:
                    kept.append(cached())
                    return relists() >= 1 and time.monotonic() - paused > detection

                await eventually(broken, detection + 30, "the watch to break")
            finally:
                for member in cut:
                    cluster.resume(member)
            assert all(names == {f"p{i}" for i in range(5)} for names in kept), "cache emptied"
            await api.create(PODS, "late", {"owner": "statefulsets/s"})
            await eventually(lambda: "late" in informer.store, 30, "the informer to catch up")
            assert "late" in seen and len(informer.owned_by("statefulsets/s")) == 6


async def test_an_abandoned_request_is_recorded_as_a_context_error(cluster: LocalCluster) -> None:
    # The elector gives up a lock request at its request timeout by cancelling
    # it; the Go reference records such a request as a context error after
    # the time it waited, and so must the apiserver.
    record = recorder()
    read = [rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"/registry/leases/x"))]
    async with EtcdClient(cluster.endpoints) as client:
        api = APIServer("apiserver-0", client, CLOCK, record)
        await api.txn([], read, idempotent=True)  # connections ready before the stall
        for member in range(3):
            cluster.pause(member)
        try:
            with pytest.raises(TimeoutError):
                await within(CLOCK, 0.5, api.txn([], read, idempotent=True))
        finally:
            for member in range(3):
                cluster.resume(member)
    answered, abandoned = record.finish().requests
    assert (answered.op, answered.error) == ("txn", None)
    assert (abandoned.op, abandoned.error) == ("txn", ErrorClass.CONTEXT)
    assert abandoned.latency >= 0.5
    # Named as it went out: the member that kept it waiting.
    assert abandoned.member in cluster.endpoints
