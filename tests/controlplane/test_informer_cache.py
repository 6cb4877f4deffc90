"""The informer's cache and the apiserver's watch cache across broken watches.

On a FakeClock over in-memory fakes, not etcd: ``FakeAPI`` stands in for the
apiserver's list and watch (the informer's side), ``FakeRegistry`` for the etcd
client's get and watch (the watch cache's side). Each watch the fakes hand out
is fed and broken by the test, so the outage lasts exactly as long as the test
says, which a pause of real members against real keepalives cannot promise.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import pytest

from etcdlab.client.errors import ClusterUnavailableError, CompactedError, EtcdError
from etcdlab.client.etcd import EtcdClient
from etcdlab.client.watch import WatchBatch
from etcdlab.common.clock import FakeClock
from etcdlab.common.timeline import EventKind, Recorder, Timeline
from etcdlab.common.timescale import TimeScale
from etcdlab.controlplane.apiserver import (
    APIServer,
    CacheConfig,
    Gone,
    Object,
    WatchCache,
    WatchEvent,
    encode,
)
from etcdlab.controlplane.informer import Informer, InformerConfig
from etcdlab.protos import kv_pb2, rpc_pb2

BROKEN = ClusterUnavailableError("watch closed: no leader")


class FakeWatchFeed:
    """One watch handed out by a fake: the test puts items, an exception ends it."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.items: asyncio.Queue[object] = asyncio.Queue()
        self.cancelled = False

    def break_with(self, error: BaseException) -> None:
        self.items.put_nowait(error)


class FakeAPI:
    """The apiserver's list and watch of one kind, in memory."""

    name = "fake-api"

    def __init__(self) -> None:
        self.objects: dict[str, Object] = {}
        self.revision = 0
        self.list_error: EtcdError | None = None
        self.lists = 0
        self.watches: list[FakeWatchFeed] = []

    def put(self, name: str, **spec: str) -> Object:
        self.revision += 1
        self.objects[name] = Object("pods", name, dict(spec), self.revision)
        return self.objects[name]

    async def list(self, kind: str) -> tuple[list[Object], int]:
        assert kind == "pods", f"listing {kind}"
        self.lists += 1
        if self.list_error is not None:
            raise self.list_error
        return [o for o in self.objects.values() if o.kind == kind], self.revision

    async def watch(self, kind: str, from_revision: int) -> AsyncIterator[WatchEvent]:
        assert kind == "pods", f"watching {kind}"
        feed = FakeWatchFeed(from_revision)
        self.watches.append(feed)
        while True:
            item = await feed.items.get()
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, WatchEvent)
            yield item


Informed = tuple[FakeClock, FakeAPI, Informer, list[Object], Timeline]


@pytest.fixture
async def informed() -> AsyncIterator[Informed]:
    clock, api = FakeClock(), FakeAPI()
    api.put("a", owner="rs1")
    api.put("b", owner="rs1")
    api.put("c")
    timeline = Timeline("t", seed=0, time_scale=TimeScale(1.0))
    informer = Informer(
        cast(APIServer, api),
        "pods",
        clock,
        InformerConfig(resync_period=0, relist_backoff=1.0),
        Recorder(timeline, clock),  # the listener: what the plane reports
    )
    seen: list[Object] = []
    informer.add_handler(seen.append)
    task = asyncio.create_task(informer.run())
    await clock.advance(0)
    yield clock, api, informer, seen, timeline
    task.cancel()
    await asyncio.wait((task,))


async def test_list_fills_the_cache_and_the_watch_starts_after_it(
    informed: Informed,
) -> None:
    _, api, informer, seen, _ = informed
    assert informer.synced.is_set()
    assert sorted(informer.store) == ["a", "b", "c"]
    assert informer.name == "fake-api/pods"
    assert [o.name for o in seen] == ["a", "b", "c"]
    assert informer.owned_by("nobody") == []
    assert [o.name for o in informer.owned_by("rs1")] == ["a", "b"]
    assert [w.start for w in api.watches] == [api.revision + 1]


async def test_watch_events_update_the_cache_and_the_owner_index(
    informed: Informed,
) -> None:
    clock, api, informer, seen, _ = informed
    feed = api.watches[-1]
    moved = api.put("b", owner="rs2")
    feed.items.put_nowait(WatchEvent("put", moved))
    feed.items.put_nowait(WatchEvent("put", api.put("c")))
    feed.items.put_nowait(WatchEvent("delete", Object("pods", "a", {}, 9)))
    # A delete of an object never seen (its add came before the list) is passed on.
    feed.items.put_nowait(WatchEvent("delete", Object("pods", "z", {}, 10)))
    await clock.advance(0)
    assert seen.pop() == Object("pods", "z", {}, 10)
    assert sorted(informer.store) == ["b", "c"]
    assert informer.store["b"] == moved
    assert informer.owned_by("rs1") == []
    assert informer.owned_by("rs2") == [moved]
    # A delete is handed over as the object the cache last held.
    assert seen[-1] == Object("pods", "a", {"owner": "rs1"}, 1)


async def test_a_failed_watch_keeps_the_cache_until_a_relist_succeeds(
    informed: Informed,
) -> None:
    clock, api, informer, seen, timeline = informed
    before = dict(informer.store)
    handed = len(seen)
    api.list_error = ClusterUnavailableError("no endpoint")
    api.watches[-1].break_with(BROKEN)
    await clock.advance(0)
    assert [(e.component, e.kind) for e in timeline.events] == [("fake-api/pods", EventKind.RELIST)]
    # An outage of many backoffs: lists fail, the cache is what it was.
    await clock.advance(30.0)
    assert api.lists == 1 + 30
    assert informer.store == before
    assert informer.owned_by("rs1") == [before["a"], before["b"]]
    assert len(seen) == handed
    # Back: the relist reports only the difference.
    api.list_error = None
    del api.objects["a"]
    changed = api.put("b", owner="rs1", image="new")
    await clock.advance(1.0)
    assert informer.store == {"b": changed, "c": before["c"]}
    # Only the difference: c is unchanged and not handed over again.
    assert seen[handed:] == [before["a"], changed]
    assert api.watches[-1].start == api.revision + 1


async def test_a_gone_watch_relists_after_the_backoff(
    informed: Informed,
) -> None:
    clock, api, informer, _, _ = informed
    api.watches[-1].break_with(Gone("too old"))
    await clock.advance(0.5)
    assert api.lists == 1 and len(api.watches) == 1
    await clock.advance(0.5)
    assert api.lists == 2 and len(api.watches) == 2
    assert sorted(informer.store) == ["a", "b", "c"]


async def test_resync_hands_every_object_to_the_handlers_each_period() -> None:
    clock, api = FakeClock(), FakeAPI()
    api.put("a")
    informer = Informer(
        cast(APIServer, api), "pods", clock, InformerConfig(resync_period=10.0), name="rs-pods"
    )
    assert informer.name == "rs-pods"
    seen: list[str] = []
    informer.add_handler(lambda o: seen.append(o.name))
    task = asyncio.create_task(informer.run())
    await clock.advance(9.0)
    assert seen == ["a"]
    await clock.advance(1.0)
    assert seen == ["a", "a"]
    await clock.advance(10.0)
    assert seen == ["a", "a", "a"]
    task.cancel()
    await asyncio.wait((task,))
    # Cancelling the informer ends its resync too.
    await clock.advance(30.0)
    assert seen == ["a", "a", "a"]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"resync_period": -1.0}, "^resync_period must not be negative$"),
        ({"relist_backoff": 0.0}, "^relist_backoff must be positive$"),
    ],
)
def test_informer_config_names_the_bad_field(fields: dict[str, float], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        InformerConfig(**fields)


def test_informer_config_scales_both_periods() -> None:
    scaled = InformerConfig(resync_period=30.0, relist_backoff=1.0).scaled(0.1)
    assert (scaled.resync_period, scaled.relist_backoff) == pytest.approx((3.0, 0.1))


# -- the apiserver's watch cache --------------------------------------------------


def kv(name: str, revision: int, **spec: str) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(
        key=f"/registry/pods/{name}".encode(), value=encode(dict(spec)), mod_revision=revision
    )


def put(name: str, revision: int, **spec: str) -> kv_pb2.Event:
    return kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv(name, revision, **spec))


def delete(name: str, revision: int) -> kv_pb2.Event:
    return kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=kv(name, revision))


class FakeWatch:
    """What ``EtcdClient.watch`` returns, fed by the test."""

    def __init__(self, feed: FakeWatchFeed) -> None:
        self.feed = feed

    def __aiter__(self) -> FakeWatch:
        return self

    async def __anext__(self) -> WatchBatch:
        item = await self.feed.items.get()
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, WatchBatch)
        return item

    async def cancel(self) -> None:
        self.feed.cancelled = True


class FakeRegistry:
    """The etcd client's get and watch of the registry prefix, in memory."""

    def __init__(self) -> None:
        self.kvs: list[kv_pb2.KeyValue] = []
        self.revision = 0
        self.get_error: EtcdError | None = None
        self.gets = 0
        self.watches: list[FakeWatchFeed] = []

    async def get(self, key: bytes, *, range_end: bytes = b"") -> rpc_pb2.RangeResponse:
        assert (key, range_end) == (b"/registry/", b"/registry0"), "the whole registry"
        self.gets += 1
        if self.get_error is not None:
            raise self.get_error
        return rpc_pb2.RangeResponse(
            kvs=self.kvs, header=rpc_pb2.ResponseHeader(revision=self.revision)
        )

    def watch(
        self, key: bytes, *, range_end: bytes, start_revision: int, progress_notify: bool
    ) -> FakeWatch:
        assert progress_notify, "the cache's freshness rests on progress notifications"
        assert (key, range_end) == (b"/registry/", b"/registry0"), "the whole registry"
        feed = FakeWatchFeed(start_revision)
        self.watches.append(feed)
        return FakeWatch(feed)

    def send(self, revision: int, *events: kv_pb2.Event) -> None:
        batch = WatchBatch(events=events, revision=revision, is_progress_notify=not events)
        self.watches[-1].items.put_nowait(batch)


Cached = tuple[FakeClock, FakeRegistry, WatchCache, Timeline]


@pytest.fixture
async def cached() -> AsyncIterator[Cached]:
    clock, registry = FakeClock(), FakeRegistry()
    registry.kvs = [kv("a", 3, owner="rs1"), kv("b", 4)]
    registry.revision = 5
    timeline = Timeline("t", seed=0, time_scale=TimeScale(1.0))
    cache = WatchCache(
        cast(EtcdClient, registry),
        clock,
        CacheConfig(freshness=5.0, history=3, relist_backoff=1.0),
        Recorder(timeline, clock),
    )
    task = asyncio.create_task(cache.run())
    await clock.advance(0)
    yield clock, registry, cache, timeline
    task.cancel()
    await asyncio.wait((task,))


async def next_event(events: AsyncIterator[WatchEvent]) -> WatchEvent:
    return await asyncio.wait_for(anext(events), 1)


async def test_before_its_first_list_the_cache_is_empty_and_not_fresh() -> None:
    cache = WatchCache(cast(EtcdClient, FakeRegistry()), FakeClock())
    assert cache.list("pods") == ([], 0)
    assert not cache.fresh and not cache.ready.is_set() and cache.watchers == 0


async def test_the_cache_lists_then_follows_from_the_next_revision(
    cached: Cached,
) -> None:
    clock, registry, cache, _ = cached
    assert cache.ready.is_set() and cache.revision == 5
    assert [w.start for w in registry.watches] == [6]
    objects, revision = cache.list("pods")
    assert sorted(o.name for o in objects) == ["a", "b"] and revision == 5
    assert cache.list("nodes") == ([], 5)
    registry.send(7, put("c", 6), delete("a", 7), delete("never-seen", 7))
    await clock.advance(0)
    assert cache.get("pods", "c") == Object("pods", "c", {}, 6)
    assert cache.get("pods", "a") is None
    assert cache.revision == 7


async def test_freshness_follows_events_and_progress_notifications(
    cached: Cached,
) -> None:
    clock, registry, cache, _ = cached
    await clock.advance(5.0)
    assert cache.fresh  # exactly `freshness` after the list
    await clock.advance(0.5)
    assert not cache.fresh
    registry.send(9)  # a progress notification: nothing changed up to 9
    await clock.advance(0)
    assert cache.fresh and cache.revision == 9


async def test_subscribers_get_history_then_live_events_of_their_kind(
    cached: Cached,
) -> None:
    clock, registry, cache, _ = cached
    registry.send(7, put("c", 6), kv_event_of_other_kind(7))
    registry.send(8, put("c", 8, image="v2"))
    await clock.advance(0)
    events = cache.subscribe("pods", 7)
    first = await next_event(events)
    assert first == WatchEvent("put", Object("pods", "c", {"image": "v2"}, 8))
    assert cache.watchers == 1
    registry.send(9, delete("c", 9))
    await clock.advance(0)
    gone = await next_event(events)
    assert gone == WatchEvent("delete", Object("pods", "c", {"image": "v2"}, 9))
    await events.aclose()
    assert cache.watchers == 0


def kv_event_of_other_kind(revision: int) -> kv_pb2.Event:
    return kv_pb2.Event(
        type=kv_pb2.Event.PUT,
        kv=kv_pb2.KeyValue(key=b"/registry/nodes/n1", value=b"{}", mod_revision=revision),
    )


async def test_a_revision_older_than_the_history_is_gone(
    cached: Cached,
) -> None:
    clock, registry, cache, _ = cached
    with pytest.raises(Gone, match=r"^revision 5 is older than the cache's history$"):
        await anext(cache.subscribe("pods", 5))  # the list's revision: before the history
    registry.send(6, put("c", 6))
    registry.send(7, put("d", 7))
    registry.send(8, put("e", 8))
    await clock.advance(0)
    # The history (3 events) still starts right after the list.
    assert (await next_event(cache.subscribe("pods", 6))).object.name == "c"
    registry.send(9, put("f", 9))  # pushes revision 6 out
    await clock.advance(0)
    with pytest.raises(Gone):
        await anext(cache.subscribe("pods", 6))
    assert (await next_event(cache.subscribe("pods", 7))).object.name == "d"


async def test_a_broken_watch_relists_and_tells_subscribers_to_relist(
    cached: Cached,
) -> None:
    clock, registry, cache, timeline = cached
    events = cache.subscribe("pods", 6)
    waiting = asyncio.ensure_future(anext(events))
    await clock.advance(0)
    registry.watches[-1].break_with(CompactedError(5))
    registry.kvs = [kv("b", 4), kv("z", 12)]
    registry.revision = 12
    await clock.advance(0)
    with pytest.raises(Gone, match=r"^watch cache relisted$"):
        await waiting
    assert registry.watches[0].cancelled
    assert cache.watchers == 0
    assert [(e.component, e.kind) for e in timeline.events] == [("watch-cache", EventKind.RELIST)]
    # The objects stay until the relist, one backoff later, replaces them.
    assert cache.get("pods", "a") is not None
    await clock.advance(1.0)
    assert sorted(o.name for o in cache.list("pods")[0]) == ["b", "z"]
    assert cache.revision == 12 and registry.watches[-1].start == 13


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"freshness": 0.0}, "^freshness must be positive$"),
        ({"history": 0}, "^history must be at least 1$"),
        ({"relist_backoff": 0.0}, "^relist_backoff must be positive$"),
    ],
)
def test_cache_config_names_the_bad_field(fields: dict[str, float], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        CacheConfig(**fields)  # type: ignore[arg-type]


async def test_a_failing_handler_ends_the_informer_with_its_error() -> None:
    clock, api = FakeClock(), FakeAPI()
    api.put("a")
    informer = Informer(cast(APIServer, api), "pods", clock, InformerConfig(resync_period=5.0))

    def broken(obj: Object) -> None:
        raise RuntimeError(f"handler failed on {obj.name}")

    informer.add_handler(broken)
    task = asyncio.create_task(informer.run())
    await clock.advance(0)
    assert task.done() and not task.cancelled()
    assert str(task.exception()) == "handler failed on a"
