"""Fault proxy links in front of every etcd member, served from a background thread.

The links run on their own event loop in a daemon thread, so they keep moving
bytes (and timing faults) while the caller's loop is busy or blocked, and the
same object serves sync code, pytest-asyncio and anyio alike. Every method is
thread-safe: it runs the work on the links' loop and waits for it.

:class:`FaultScope` applies faults for the duration of a ``with`` or
``async with`` block and removes them on the way out, also when the block
raises or is cancelled. Faults go to the links through the proxy's driver
(:class:`~etcdlab.proxy.driver.LinkFaults`), which scales them by the suite's
time scale as they enter.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from etcdlab.common.timescale import TimeScale
from etcdlab.proxy.driver import LinkFaults
from etcdlab.proxy.faults import Fault
from etcdlab.proxy.faults.blackhole import Blackhole
from etcdlab.proxy.faults.latency import Latency
from etcdlab.proxy.faults.loss import Loss
from etcdlab.proxy.faults.registry import from_keywords
from etcdlab.proxy.faults.reset import Reset
from etcdlab.proxy.link import ProxyLink

T = TypeVar("T")

# Seconds to wait for the links' loop to do one small job (start, add a fault).
_CALL_TIMEOUT = 30.0

Members = int | Sequence[int] | None
"""One member index, several, or None for every member."""


def _split(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"endpoint {endpoint!r} is not HOST:PORT")
    return host, int(port)


class FaultProxy:
    """One :class:`ProxyLink` per upstream endpoint, named ``member0``, ``member1``...

    ``addresses`` are the ``host:port`` strings clients should dial instead of
    the members. Use as a context manager (sync or async) or call
    :meth:`start` / :meth:`close`; ``close`` also runs at interpreter exit.
    Faults are written in real seconds and scaled by ``time_scale``.
    """

    def __init__(self, upstreams: Sequence[str], *, seed: int = 0, time_scale: float = 1.0) -> None:
        if isinstance(upstreams, str) or not upstreams:
            raise ValueError("upstreams must be a non-empty sequence of HOST:PORT")
        self.links = [
            ProxyLink(f"member{index}", _split(endpoint), seed=seed)
            for index, endpoint in enumerate(upstreams)
        ]
        self.driver = LinkFaults({link.name: link for link in self.links}, TimeScale(time_scale))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> FaultProxy:
        if self._thread is not None:
            raise RuntimeError("fault proxy already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name="etcdlab-fault-proxy", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)
        try:
            for link in self.links:
                self._run(link.start())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every link (dropping its connections) and the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        atexit.unregister(self.close)

        async def close_links() -> None:
            for link in self.links:
                link.clear()
                await link.close()

        try:
            asyncio.run_coroutine_threadsafe(close_links(), loop).result(_CALL_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_CALL_TIMEOUT)
            loop.close()
            self._loop = None
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> FaultProxy:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- where clients connect -------------------------------------------------

    @property
    def addresses(self) -> list[str]:
        return [f"{host}:{port}" for host, port in (link.address for link in self.links)]

    # -- faults ----------------------------------------------------------------

    def members(self, members: Members) -> list[int]:
        """Member indexes ``members`` names, validated."""
        if members is None:
            return list(range(len(self.links)))
        chosen = [members] if isinstance(members, int) else list(members)
        for index in chosen:
            if not 0 <= index < len(self.links):
                raise ValueError(f"member {index} out of range (0..{len(self.links) - 1})")
        return chosen

    def add(self, members: Members, fault: Fault) -> list[tuple[int, Fault]]:
        """Apply ``fault`` to the links of ``members``; returns what to :meth:`remove`."""
        chosen = self.members(members)
        self._run(self.driver.apply((self.links[index].name, fault) for index in chosen))
        return [(index, fault) for index in chosen]

    def remove(self, applied: Iterable[tuple[int, Fault]]) -> None:
        """Remove faults :meth:`add` applied (those already gone are ignored)."""
        pairs = list(applied)

        async def work() -> None:
            for index, fault in pairs:
                await self.driver.remove(self.links[index].name, fault.name)

        self._run(work())

    def clear(self) -> None:
        """Remove every fault from every link."""

        def work() -> None:
            for link in self.links:
                link.clear()

        self._call(work)

    def apply(self, members: Members, fault: Fault) -> FaultScope:
        """A scope applying ``fault`` to ``members`` while a ``with`` block runs."""
        self.members(members)
        return FaultScope(self, members, fault)

    # -- the links' loop -------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("fault proxy is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_CALL_TIMEOUT)

    def _call(self, work: Callable[[], T]) -> T:
        async def run() -> T:
            return work()

        return self._run(run())


class FaultScope:
    """A fault applied on entry and removed on exit; ``with`` or ``async with``."""

    def __init__(self, proxy: FaultProxy, members: Members, fault: Fault) -> None:
        self.proxy = proxy
        self.members = members
        self.fault = fault
        self._applied: list[tuple[int, Fault]] = []

    def __enter__(self) -> Fault:
        self._applied = self.proxy.add(self.members, self.fault)
        return self.fault

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        applied, self._applied = self._applied, []
        self.proxy.remove(applied)

    async def __aenter__(self) -> Fault:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class Faults:
    """Shorthands for common faults as scopes: ``with faults.loss(0, 0.3): ...``.

    ``member`` is an index, a list of indexes, or None for every member.
    """

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def loss(self, member: Members, probability: float, **options: Any) -> FaultScope:
        """TCP-faithful packet loss (late bytes, head-of-line blocking), both directions."""
        return self.proxy.apply(member, Loss(probability, **options))

    def latency(self, member: Members, latency: float, jitter: float = 0.0) -> FaultScope:
        """Added one-way delay (each direction) with uniform jitter."""
        return self.proxy.apply(member, Latency(latency, jitter))

    def blackhole(self, member: Members) -> FaultScope:
        """Nothing passes, connections stay open (a partition)."""
        return self.proxy.apply(member, Blackhole())

    def reset(self, member: Members) -> FaultScope:
        """Existing and new connections are reset."""
        return self.proxy.apply(member, Reset())

    def fault(self, kind: str, member: Members, **attributes: Any) -> FaultScope:
        """Any fault kind of ``etcdlab.proxy.faults.KINDS`` by name (``loss``, ``frames``...),
        attributes in Python units (seconds)."""
        return self.proxy.apply(member, make_fault(kind, attributes))


# Short names accepted for fault attributes (the marker's ``p=0.3``).
_ALIASES = {"p": "probability"}


def make_fault(kind: str, attributes: dict[str, Any]) -> Fault:
    """A fault of ``kind`` from keyword attributes; ValueError naming what is wrong."""
    return from_keywords(kind, {_ALIASES.get(k, k): v for k, v in attributes.items()})
