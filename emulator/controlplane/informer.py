"""client-go style informers: list, then watch, into a local cache with indexes.

The cache survives the apiserver or etcd being unavailable: a broken list or
watch only means a pause and a relist (recorded as ``relist``), during which the
controllers keep reading what they last saw. Handlers are told about adds,
updates and deletes (a relist reports the difference against the cache) and, every
``resync_period``, an update for every object, so a handler that only enqueues
keys eventually revisits everything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace

from etcdlab.client.errors import EtcdError
from etcdlab.common.clock import Clock
from etcdlab.common.timeline import EventKind
from etcdlab.common.timescale import TimeScale
from etcdlab.controlplane.apiserver import APIServer, Gone, Object, WatchEvent
from etcdlab.controlplane.listener import PlaneListener

Handler = Callable[[Object], None]


@dataclass(frozen=True)
class InformerConfig:
    """``resync_period``: every object is handed to the handlers again this often
    (0 disables it). ``relist_backoff``: pause after a failed list or a broken watch."""

    resync_period: float = 30.0
    relist_backoff: float = 1.0

    def __post_init__(self) -> None:
        if self.resync_period < 0:
            raise ValueError("resync_period must not be negative")
        if self.relist_backoff <= 0:
            raise ValueError("relist_backoff must be positive")

    def scaled(self, time_scale: float) -> InformerConfig:
        scale = TimeScale(time_scale)
        return replace(
            self,
            resync_period=scale.scaled(self.resync_period),
            relist_backoff=scale.scaled(self.relist_backoff),
        )


class Informer:
    def __init__(
        self,
        api: APIServer,
        kind: str,
        clock: Clock,
        config: InformerConfig | None = None,
        listener: PlaneListener | None = None,
        name: str = "",
    ) -> None:
        self.api = api
        self.kind = kind
        self.config = config or InformerConfig()
        self.name = name or f"{api.name}/{kind}"
        self._clock = clock
        self._listener = listener
        self.store: dict[str, Object] = {}
        self._by_owner: dict[str, set[str]] = {}
        self._handlers: list[Handler] = []
        self.synced = asyncio.Event()

    def add_handler(self, handler: Handler) -> None:
        """``handler(obj)`` on every add, update, delete and resync of an object."""
        self._handlers.append(handler)

    def owned_by(self, owner: str) -> list[Object]:
        return [self.store[name] for name in sorted(self._by_owner.get(owner, ()))]

    async def run(self) -> None:
        resync = asyncio.create_task(self._resync()) if self.config.resync_period else None
        try:
            while True:
                try:
                    revision = await self._list()
                    async for change in self.api.watch(self.kind, revision + 1):
                        self._apply(change)
                except (EtcdError, Gone):
                    pass
                # The watch ended or failed: relist (the cache stays meanwhile).
                if self._listener is not None:
                    self._listener.event(self.name, EventKind.RELIST)
                await self._clock.sleep(self.config.relist_backoff)
        finally:
            if resync is not None:
                resync.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await resync

    async def _list(self) -> int:
        objects, revision = await self.api.list(self.kind)
        fresh = {o.name: o for o in objects}
        for name in [n for n in self.store if n not in fresh]:
            self._apply(WatchEvent("delete", self.store[name]))
        for obj in objects:
            current = self.store.get(obj.name)
            if current is None or current.revision != obj.revision:
                self._apply(WatchEvent("put", obj))
        self.synced.set()
        return revision

    def _apply(self, change: WatchEvent) -> None:
        obj = change.object
        previous = self.store.get(obj.name)
        if previous is not None and previous.owner is not None:
            self._by_owner.get(previous.owner, set()).discard(obj.name)
        if change.type == "delete":
            self.store.pop(obj.name, None)
            obj = previous or obj
        else:
            self.store[obj.name] = obj
            if obj.owner is not None:
                self._by_owner.setdefault(obj.owner, set()).add(obj.name)
        for handler in self._handlers:
            handler(obj)

    async def _resync(self) -> None:
        while True:
            await self._clock.sleep(self.config.resync_period)
            for obj in list(self.store.values()):
                for handler in self._handlers:
                    handler(obj)
