"""Which connection a call goes over: a connection per endpoint and a picker.

:class:`Balancer` keeps one :class:`~etcdlab.client.connection.Connection` per
endpoint, all connecting from the start, and a picker over the ones that are
READY, rebuilt whenever a connection changes state (as gRPC builds a new picker
on every state update). Calls wait for a ready connection (clientv3 sets
``WaitForReady``): when none is ready a call waits, up to its deadline, instead
of failing.

* :class:`RoundRobin` is gRPC's ``round_robin`` (``endpointsharding``'s picker),
  which clientv3 asks for in its resolver's service config since v3.4: each pick
  takes the next ready connection, starting at a random one every time the
  picker is rebuilt. Connections that are connecting, idle or in transient
  failure take no calls.
* :class:`Sticky` keeps every call on one ready connection until it stops being
  ready, then moves to the next ready one in endpoint order: the pinned endpoint
  of etcd <= 3.3 clients.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Protocol

from etcdlab.client.connection import Connection, ConnectionEvents, ConnectivityState, Route
from etcdlab.common.clock import Clock, within


class Picker(Protocol):
    def update(self, ready: Sequence[Connection]) -> None:
        """The READY connections, in endpoint order, after any state change."""
        ...

    def pick(self) -> Connection | None:
        """The connection for the next call, or None when none is ready."""
        ...


class RoundRobin:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._ready: list[Connection] = []
        self._next = 0

    def update(self, ready: Sequence[Connection]) -> None:
        self._ready = list(ready)
        self._next = self._rng.randrange(len(self._ready)) if self._ready else 0

    def pick(self) -> Connection | None:
        if not self._ready:
            return None
        self._next = (self._next + 1) % len(self._ready)
        return self._ready[self._next]


class Sticky:
    def __init__(self, endpoints: Sequence[str]) -> None:
        self._order = list(endpoints)
        self._pinned: Connection | None = None
        self._last: str | None = None

    def update(self, ready: Sequence[Connection]) -> None:
        if self._pinned is not None and self._pinned in ready:
            return
        if not ready:
            self._pinned = None
            return
        # The next ready one after the endpoint pinned last, in endpoint order
        # (at first: whichever connected first).
        start = 0 if self._last is None else self._order.index(self._last) + 1
        count = len(self._order)
        self._pinned = min(ready, key=lambda c: (self._order.index(c.address) - start) % count)
        self._last = self._pinned.address

    def pick(self) -> Connection | None:
        return self._pinned


class BalancerListener(Protocol):
    def state_changed(self, connection: Connection, error: str | None) -> None: ...

    def keepalive_closed(self, connection: Connection) -> None: ...


ConnectionFactory = Callable[[str, ConnectionEvents], Connection]


class Balancer:
    """See the module docstring. ``listener`` hears every connection's changes."""

    def __init__(
        self,
        endpoints: Sequence[str],
        connect: ConnectionFactory,
        picker: Picker,
        clock: Clock,
        listener: BalancerListener | None = None,
    ) -> None:
        self._picker = picker
        self._clock = clock
        self._listener = listener
        self.connections = [connect(address, self) for address in endpoints]
        self._changed: asyncio.Event = asyncio.Event()

    def start(self) -> None:
        for connection in self.connections:
            connection.start()

    async def close(self) -> None:
        for connection in self.connections:
            await connection.close()

    def connection(self, address: str) -> Connection:
        for connection in self.connections:
            if connection.address == address:
                return connection
        raise ValueError(f"unknown endpoint {address!r}")

    def why_not_ready(self) -> str:
        """The connections' states and last errors, as gRPC's "latest balancer
        error" in a deadline that passed while waiting for a connection."""
        return "; ".join(
            f"{c.address} {c.state}" + (f": {c.last_error}" if c.last_error else "")
            for c in self.connections
        )

    @property
    def ready(self) -> list[Connection]:
        return [c for c in self.connections if c.state is ConnectivityState.READY]

    async def pick(self, timeout: float | None) -> Route:
        """A ready connection (and its transport) from the picker, waiting for one
        for at most ``timeout`` seconds (None: as long as it takes); raises
        ``TimeoutError``."""
        return await self._wait(self._picker.pick, timeout)

    async def wait_ready(self, connection: Connection, timeout: float | None) -> Route:
        """``connection`` once it is ready (``TimeoutError`` after ``timeout``)."""
        return await self._wait(lambda: connection, timeout)

    async def _wait(self, choose: Callable[[], Connection | None], timeout: float | None) -> Route:
        deadline = None if timeout is None else self._clock.now() + timeout
        while True:
            chosen = choose()
            if chosen is not None and chosen.transport is not None:
                return Route(chosen, chosen.transport)
            self._changed.clear()
            if deadline is None:
                await self._changed.wait()
                continue
            left = deadline - self._clock.now()
            if left <= 0:
                raise TimeoutError("no ready connection")
            await within(self._clock, left, self._changed.wait())

    # ConnectionEvents
    def state_changed(self, connection: Connection, error: str | None) -> None:
        self._picker.update(self.ready)
        self._changed.set()
        if self._listener is not None:
            self._listener.state_changed(connection, error)

    def keepalive_closed(self, connection: Connection) -> None:
        if self._listener is not None:
            self._listener.keepalive_closed(connection)
