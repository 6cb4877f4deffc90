"""Several links in one process, sharing a seed."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from etcdlab.proxy.link import Address, ProxyLink

_LAG_PERIOD = 0.05


class ProxyServer:
    """A named set of :class:`ProxyLink`, started and closed together.

    Every link draws its randomness from ``(seed, link name)``, so links can be
    added or removed without changing the decisions of the others.
    """

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed
        self.links: dict[str, ProxyLink] = {}
        # How late the event loop ran a 50 ms timer: worst and latest, seconds.
        self.loop_lag_max = 0.0
        self.loop_lag_last = 0.0
        self._lag_task: asyncio.Task[None] | None = None

    async def add_link(
        self,
        name: str,
        upstream: Address,
        listen: Address = ("127.0.0.1", 0),
        *,
        http2: bool = True,
        write_deadline: float | None = None,
    ) -> ProxyLink:
        if name in self.links:
            raise ValueError(f"a link named {name!r} already exists")
        link = ProxyLink(
            name, upstream, listen, seed=self.seed, http2=http2, write_deadline=write_deadline
        )
        await link.start()
        self.links[name] = link
        if self._lag_task is None:
            self._lag_task = asyncio.create_task(self._watch_lag())
        return link

    async def _watch_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(_LAG_PERIOD)
            self.loop_lag_last = max(0.0, loop.time() - started - _LAG_PERIOD)
            self.loop_lag_max = max(self.loop_lag_max, self.loop_lag_last)

    async def remove_link(self, name: str) -> None:
        link = self.links.pop(name, None)
        if link is None:
            raise KeyError(f"no link named {name!r}")
        await link.close()

    async def close(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
            self._lag_task = None
        links, self.links = list(self.links.values()), {}
        for link in links:
            await link.close()

    async def __aenter__(self) -> ProxyServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
