"""One endpoint's connection: gRPC's subchannel state machine on the injected clock.

The states are gRPC's: IDLE, CONNECTING, READY, TRANSIENT_FAILURE, SHUTDOWN
(grpc-go ``addrConn`` under the ``pick_first`` child that ``round_robin``
keeps per endpoint):

* IDLE -> CONNECTING at once (``round_robin`` takes every idle child out of
  idle), one connection attempt given ``max(min_connect_timeout, backoff)``;
* CONNECTING -> READY when the HTTP/2 handshake completes, and the backoff
  starts over;
* CONNECTING -> TRANSIENT_FAILURE when the attempt fails or times out, then
  the backoff (1 s, x1.6, +-20%, at most 120 s) on the injected clock, then
  IDLE (and so CONNECTING again);
* READY -> IDLE when the connection is lost (keepalive, GOAWAY, reset): calls
  in flight on it fail with UNAVAILABLE, and a new attempt starts at once,
  without backoff.

Each attempt dials a fresh :class:`Transport` (a grpcio channel that makes one
connection), so grpcio's own reconnect timers never run: every wait is the
state machine's, on its clock, scaled like every other timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Protocol

import grpc

from etcdlab.client.backoff import ConnectionBackoff
from etcdlab.client.config import ClientConfig
from etcdlab.client.errors import EtcdError
from etcdlab.common.clock import Clock, within

log = logging.getLogger(__name__)


class ConnectivityState(StrEnum):
    IDLE = "IDLE"
    CONNECTING = "CONNECTING"
    READY = "READY"
    TRANSIENT_FAILURE = "TRANSIENT_FAILURE"
    SHUTDOWN = "SHUTDOWN"


class ConnectFailed(Exception):
    """A connection attempt ended without a ready connection."""


class Transport(Protocol):
    """One connection attempt and, once ready, the connection calls go over."""

    @property
    def channel(self) -> grpc.aio.Channel: ...

    async def connect(self) -> None:
        """Return once the connection is ready; raise :class:`ConnectFailed` if
        the attempt fails. Cancelled when the attempt's time is up."""
        ...

    async def lost(self) -> None:
        """Return once the ready connection is lost."""
        ...

    async def close(self, grace: float | None) -> None:
        """Close; calls in flight may finish for ``grace`` seconds (None: cancel them)."""
        ...


# Dials ``address``, allowing ``connect_timeout`` for the attempt.
Dialer = Callable[[str, float], Transport]


class ConnectionEvents(Protocol):
    """What a connection tells its owner (the balancer)."""

    def state_changed(self, connection: Connection, error: str | None) -> None: ...

    def keepalive_closed(self, connection: Connection) -> None: ...


class GrpcTransport:
    """A grpcio channel making one connection to one address."""

    def __init__(self, address: str, options: list[tuple[str, int]]) -> None:
        self._channel = grpc.aio.insecure_channel(address, options=options)

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._channel

    async def connect(self) -> None:
        states = grpc.ChannelConnectivity
        state = self._channel.get_state(try_to_connect=True)
        while state != states.READY:
            if state in (states.TRANSIENT_FAILURE, states.SHUTDOWN):
                raise ConnectFailed(f"connection failed ({state.name})")
            await self._channel.wait_for_state_change(state)
            after = self._channel.get_state()
            if after == states.IDLE and state == states.CONNECTING:
                raise ConnectFailed("connection closed during the handshake")
            state = after

    async def lost(self) -> None:
        state = grpc.ChannelConnectivity.READY
        while state == grpc.ChannelConnectivity.READY:
            await self._channel.wait_for_state_change(state)
            state = self._channel.get_state()

    async def close(self, grace: float | None) -> None:
        await self._channel.close(grace)


class Route:
    """The connection and transport one call or stream went over."""

    __slots__ = ("connection", "transport")

    def __init__(self, connection: Connection, transport: Transport) -> None:
        self.connection = connection
        self.transport = transport

    @property
    def address(self) -> str:
        return self.connection.address

    @property
    def channel(self) -> grpc.aio.Channel:
        return self.transport.channel

    def failed(self, error: EtcdError) -> None:
        """The call or stream failed with ``error`` (see :meth:`Connection.call_failed`)."""
        self.connection.call_failed(self.transport, error)


def grpc_dialer(config: ClientConfig) -> Dialer:
    def dial(address: str, connect_timeout: float) -> Transport:
        return GrpcTransport(address, config.channel_options(connect_timeout))

    return dial


def is_keepalive_failure(error: EtcdError) -> bool:
    """The failure of a call whose connection a keepalive ping timeout closed."""
    details = error.details.lower()
    return error.code == grpc.StatusCode.UNAVAILABLE and (
        "ping timeout" in details or "keepalive" in details
    )


class Connection:
    """See the module docstring. ``transport`` is set while READY."""

    def __init__(
        self,
        address: str,
        *,
        dial: Dialer,
        backoff: ConnectionBackoff,
        clock: Clock,
        events: ConnectionEvents,
        drain: float,
    ) -> None:
        self.address = address
        self.state = ConnectivityState.IDLE
        self.transport: Transport | None = None
        self.retries = 0
        """Consecutive failed attempts (gRPC's backoff index)."""
        self.connected = 0
        """Connections that became ready."""
        self.keepalive_failures = 0
        """Connections closed by a keepalive timeout, as calls on them reported it."""
        self.last_error: str | None = None
        self._dial = dial
        self._backoff = backoff
        self._clock = clock
        self._events = events
        # Calls in flight on a lost connection get this long to finish (a
        # drained GOAWAY); a dead connection's calls have failed already.
        self._drain = drain
        self._closed_by_keepalive: Transport | None = None
        self._retired: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Connection({self.address}, {self.state})"

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"connection {self.address}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for retiring in list(self._retired):
            retiring.cancel()
        await asyncio.gather(*self._retired, return_exceptions=True)
        self._set(ConnectivityState.SHUTDOWN)

    def call_failed(self, transport: Transport, error: EtcdError) -> None:
        """A call over ``transport`` failed with ``error``: notes keepalive closes."""
        if not is_keepalive_failure(error) or self._closed_by_keepalive is transport:
            return
        self._closed_by_keepalive = transport
        self.keepalive_failures += 1
        self._events.keepalive_closed(self)

    async def _run(self) -> None:
        while True:
            backoff = self._backoff.delay(self.retries)
            timeout = self._backoff.connect_timeout(backoff)
            self._set(ConnectivityState.CONNECTING)
            transport = self._dial(self.address, timeout)
            try:
                await within(self._clock, timeout, transport.connect())
            except (ConnectFailed, TimeoutError) as error:
                await transport.close(None)
                reason = (
                    f"connect timeout ({timeout:g}s)"
                    if isinstance(error, TimeoutError)
                    else str(error)
                )
                self._set(ConnectivityState.TRANSIENT_FAILURE, reason)
                await self._clock.sleep(backoff)
                self.retries += 1
                self._set(ConnectivityState.IDLE)
                continue
            except asyncio.CancelledError:
                await transport.close(None)
                raise
            self.retries = 0
            self.connected += 1
            self.transport = transport
            self._set(ConnectivityState.READY)
            try:
                await transport.lost()
            except asyncio.CancelledError:
                self.transport = None
                await transport.close(None)
                raise
            self.transport = None
            self._retire(transport)
            self._set(ConnectivityState.IDLE)

    def _retire(self, transport: Transport) -> None:
        task = asyncio.create_task(transport.close(self._drain))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    def _set(self, state: ConnectivityState, error: str | None = None) -> None:
        if state == self.state:
            return
        log.debug("%s: %s%s", self.address, state, f" ({error})" if error else "")
        self.state = state
        if error is not None:
            self.last_error = error
        self._events.state_changed(self, error)
