"""One proxied link: a listening socket, an upstream address, faults, counters.

Each accepted connection gets an upstream connection and two pipes, one per
direction (:mod:`etcdlab.proxy.connection`, :mod:`etcdlab.proxy.pipe`). The
link keeps the faults and, for each direction, the plan its connections follow
(:mod:`etcdlab.proxy.plan`); it decides per connection which faults a toxicity
below 1 spares.

Faults arrive already on the run's clock (:meth:`Fault.scaled`): the link
adds exactly the delays they say.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

from etcdlab.proxy.connection import ClientProtocol, Connection
from etcdlab.proxy.counters import Counters
from etcdlab.proxy.faults.base import DOWNSTREAM, UPSTREAM, Fault, spelled
from etcdlab.proxy.plan import Plan, Variant, plan
from etcdlab.proxy.sockets import nodelay, reset_socket

log = logging.getLogger("etcdlab.proxy")

Address = tuple[str, int]
# Connections accepted per turn of the event loop: a burst of connects waits
# in the kernel's queue instead of stalling traffic on open connections.
ACCEPT_BATCH = 8
# The kernel's queue of connections not yet accepted (capped by somaxconn).
_BACKLOG = 1024


def check_fits(fault: Fault, link: str, *, http2: bool) -> None:
    """ValueError unless ``fault`` can act on the link named ``link`` (checked before
    a link listens too: ``etcdlab proxy`` refuses such a fault before starting)."""
    reason = fault.needs_http2()
    # In the words of the control API, where a link is a proxy with "http2".
    if reason is not None and not http2:
        raise ValueError(f"{reason}, and proxy {spelled(link)} is raw TCP (http2 false)")
    if fault.dialer is not None and http2:
        raise ValueError(
            f"dialer: a dialer filter needs raw TCP, and proxy {spelled(link)} speaks HTTP/2 "
            "(http2 true)"
        )


class ProxyLink:
    """A fault-injecting TCP proxy for one upstream, usable as an async context manager.

    ``listen`` port 0 lets the OS pick (read :attr:`address` after start).
    ``http2`` makes the link follow HTTP/2 frames (gRPC links); peer links
    speak HTTP/1.1 and run as raw TCP with ``http2=False`` (no frame faults,
    no method filters). Randomness comes from ``seed`` and ``name`` only, per
    connection and direction, so adding a link never changes another's
    decisions. ``buffer_limit`` bounds the bytes a pipe holds (delayed or blackholed)
    before it stops reading from the sender. ``write_deadline`` (seconds, on no
    run's clock: the application's own timer) is the upstream server's: a write
    of its that a loss's full send buffer blocks that long fails, and the
    connection with it (:mod:`etcdlab.proxy.blocking`); etcd's peer listener
    has 5 s.
    """

    def __init__(
        self,
        name: str,
        upstream: Address,
        listen: Address = ("127.0.0.1", 0),
        *,
        seed: int = 0,
        http2: bool = True,
        buffer_limit: int = 1 << 20,
        write_deadline: float | None = None,
    ) -> None:
        if not name or "/" in name:
            raise ValueError("name must be non-empty and contain no '/'")
        if buffer_limit < 1:
            raise ValueError("buffer_limit must be positive")
        if write_deadline is not None and not write_deadline > 0:
            raise ValueError(
                f"write_deadline must be a positive number of seconds, not {write_deadline}"
            )
        self.name = name
        self.upstream = upstream
        self.listen = listen
        self.seed = seed
        self.http2 = http2
        self.buffer_limit = buffer_limit
        self.write_deadline = write_deadline
        self.counters = Counters()
        # (direction, variant) -> plan, see _replan; the variant is a dialer or
        # None, or (dialer, faults skipped) for connections a toxicity spared.
        self.plans: dict[tuple[str, Variant], Plan] = {
            (UPSTREAM, None): Plan(),
            (DOWNSTREAM, None): Plan(),
        }
        self.frame_aware = False
        self._faults: dict[str, Fault] = {}
        self._listener: socket.socket | None = None
        self._bound: Address | None = None
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._connection_index = 0

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Listen (again, on the address it had, once it has listened)."""
        if self._listener is not None:
            return
        loop = asyncio.get_running_loop()
        host, port = self._bound or self.listen
        try:
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except (OSError, UnicodeError) as error:
            # A name that does not resolve is bad input, not a failure here.
            reason = getattr(error, "strerror", None) or error
            message = f"listen: link {self.name} cannot resolve {spelled(host)}: {reason}"
            raise ValueError(message) from None
        family, _, _, _, address = infos[0]
        try:
            listener = socket.create_server(address, family=family, backlog=_BACKLOG)
        except OSError as error:
            # create_server's strerror names the address again.
            reason = os.strerror(error.errno) if error.errno else error
            raise OSError(f"link {self.name} cannot listen on {host}:{port}: {reason}") from None
        listener.setblocking(False)
        loop.add_reader(listener.fileno(), self._accept, listener)
        self._listener = listener
        bound = listener.getsockname()[:2]
        self._bound = str(bound[0]), int(bound[1])
        log.info("link %s listening on %s:%d -> %s:%d", self.name, *self.address, *self.upstream)

    def _accept(self, listener: socket.socket) -> None:
        # The reader callback fires again on the next turn while more are queued.
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                # Out of file descriptors and the like: the connection waits.
                log.warning("link %s: accept failed: %s", self.name, error)
                return
            # Refused connections take a number too: each draws its own toxicity.
            self._connection_index += 1
            index = self._connection_index
            refusal = self._refusal(index)
            if refusal is not None:
                self.counters.applied(refusal, "refused")
                self.counters.connections_rejected += 1
                reset_socket(sock)
                continue
            sock.setblocking(False)
            nodelay(sock)
            self._spawn(self._serve(sock, index))

    async def _serve(self, sock: socket.socket, index: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.connect_accepted_socket(
                lambda: ClientProtocol(self, index), sock
            )
        except OSError as error:
            log.info("link %s: accepted connection lost at once: %s", self.name, error)
            sock.close()
            return
        conn = protocol.conn
        if conn is not None:
            await conn.connect()

    async def disable(self) -> None:
        """Stop listening and close every connection (Toxiproxy's ``enabled: false``);
        faults and counters stay, and :meth:`start` listens on the same address."""
        if self._stop_listening():
            log.info("link %s disabled", self.name)

    @property
    def enabled(self) -> bool:
        return self._listener is not None

    def _stop_listening(self) -> bool:
        """Close the listening socket and every connection; False if not listening."""
        listener, self._listener = self._listener, None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()
        for conn in list(self._connections):
            conn.abort()
        return listener is not None

    async def close(self) -> None:
        self._stop_listening()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> ProxyLink:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def address(self) -> Address:
        """The listening (host, port); the port is the real one once started
        (kept while the link is disabled)."""
        if self._bound is None:
            raise RuntimeError(f"link {self.name} is not started")
        return self._bound

    @property
    def connections(self) -> int:
        return len(self._connections)

    # -- faults --------------------------------------------------------------

    @property
    def faults(self) -> tuple[Fault, ...]:
        return tuple(self._faults.values())

    def add(self, fault: Fault) -> Fault:
        """Apply ``fault`` (on the run's clock) now; returns it."""
        self._check(fault)
        if fault.name in self._faults:
            raise ValueError(f"link {self.name} already has a fault named {fault.name!r}")
        self._faults[fault.name] = fault
        self._replan()
        if fault.resets_open:
            self.reset_connections(fault)
        return fault

    def _check(self, fault: Fault) -> None:
        check_fits(fault, self.name, http2=self.http2)

    def remove(self, fault: Fault | str) -> Fault:
        name = fault if isinstance(fault, str) else fault.name
        try:
            removed = self._faults.pop(name)
        except KeyError:
            raise KeyError(f"link {self.name} has no fault named {name!r}") from None
        self._replan()
        return removed

    def replace(self, fault: Fault) -> Fault:
        """Swap the fault of the same name for ``fault`` (the control API's update)."""
        if fault.name not in self._faults:
            raise KeyError(f"link {self.name} has no fault named {fault.name!r}")
        self._check(fault)
        self._faults[fault.name] = fault
        self._replan()
        return fault

    def clear(self) -> None:
        self._faults.clear()
        self._replan()

    def reset_connections(self, cause: Fault | None = None) -> None:
        for conn in list(self._connections):
            if cause is not None and (
                cause.dialer not in (None, conn.dialer) or not self.applies(cause, conn.index)
            ):
                continue
            conn.reset()
            self.counters.connections_reset += 1
            if cause is not None:
                self.counters.applied(cause, "reset")

    def _replan(self) -> None:
        # One plan per direction for connections of no particular dialer, and
        # one per dialer some fault names (its faults plus the general ones).
        # Connections that a toxicity below 1 spares get variants (see variant).
        faults = self._faults.values()
        self.plans = {}
        for dialer in {None, *(f.dialer for f in faults)}:
            for direction in (UPSTREAM, DOWNSTREAM):
                self.plans[direction, dialer] = self._plan(direction, dialer, frozenset())
        self.frame_aware = any(f.frame_aware for f in faults)
        for conn in self._connections:
            conn.replan()

    def _plan(self, direction: str, dialer: str | None, skipped: frozenset[str]) -> Plan:
        return plan(
            (
                f
                for f in self._faults.values()
                if f.dialer in (None, dialer) and f.name not in skipped
            ),
            direction,
        )

    def applies(self, fault: Fault, index: int) -> bool:
        """Does ``fault`` act on connection number ``index``? With a toxicity below 1
        a draw decides, the same for the same seed, link, connection and fault."""
        if fault.toxicity >= 1.0:
            return True
        draw = random.Random(f"{self.seed}/{self.name}/{index}/toxicity/{fault.name}").random()
        return draw < fault.toxicity

    def variant(self, direction: str, dialer: str | None, index: int) -> Variant:
        """The plan variant of connection ``index``: its dialer's, minus the faults
        whose toxicity spares it."""
        skipped = frozenset(
            f.name for f in self._faults.values() if f.toxicity < 1.0 and not self.applies(f, index)
        )
        if not skipped:
            return dialer
        variant = (dialer, skipped)
        if (direction, variant) not in self.plans:
            self.plans[direction, variant] = self._plan(direction, dialer, skipped)
        return variant

    def _refusal(self, index: int) -> Fault | None:
        if self.plans[UPSTREAM, None].refusal is None:
            return None
        return next(
            (
                f
                for f in self._faults.values()
                if f.refuses and f.dialer is None and self.applies(f, index)
            ),
            None,
        )

    def rng(self, index: int, direction: str) -> random.Random:
        return random.Random(f"{self.seed}/{self.name}/{index}/{direction}")

    def adopt(self, conn: Connection) -> None:
        """``conn`` was accepted."""
        self._connections.add(conn)
        self.counters.connections_total += 1
        self.counters.connections_active += 1

    def forget(self, conn: Connection) -> None:
        """``conn`` is closed."""
        self._connections.discard(conn)
        self.counters.connections_active -= 1

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
