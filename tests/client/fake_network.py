"""Fake connections without sockets (nothing here talks to etcd), for the
balancer's and the state machine's tests on a FakeClock: each endpoint accepts,
refuses or ignores connection attempts as the test says, and a ready
connection is lost when the test drops it."""

from __future__ import annotations

import asyncio
import collections
import random
from typing import cast

import grpc

from etcdlab.client.backoff import ConnectionBackoff
from etcdlab.client.balancer import Balancer, Picker
from etcdlab.client.config import ClientConfig
from etcdlab.client.connection import (
    ConnectFailed,
    Connection,
    ConnectionEvents,
    ConnectivityState,
)
from etcdlab.common.clock import FakeClock

ACCEPT, REFUSE, HANG = "accept", "refuse", "hang"


class FakeChannel:
    """What a fake call is given: which endpoint and which connection it went over."""

    def __init__(self, address: str, serial: int) -> None:
        self.address = address
        self.serial = serial


class FakeTransport:
    def __init__(self, network: FakeNetwork, address: str, serial: int) -> None:
        self._network = network
        self.address = address
        self.fake_channel = FakeChannel(address, serial)
        self._lost = asyncio.Event()
        self.closed = False

    @property
    def channel(self) -> grpc.aio.Channel:
        return cast(grpc.aio.Channel, self.fake_channel)

    async def connect(self) -> None:
        behaviour = self._network.behaviour[self.address]
        if behaviour == REFUSE:
            raise ConnectFailed("connection refused")
        if behaviour == HANG:
            await asyncio.Event().wait()

    async def lost(self) -> None:
        await self._lost.wait()

    async def close(self, grace: float | None) -> None:
        self.closed = True

    def drop(self) -> None:
        self._lost.set()


class FakeNetwork:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.behaviour: dict[str, str] = collections.defaultdict(lambda: ACCEPT)
        self.dials: list[tuple[float, str, float]] = []
        """(time, address, connect timeout) of every connection attempt."""
        self.transports: dict[str, list[FakeTransport]] = collections.defaultdict(list)

    def dial(self, address: str, connect_timeout: float) -> FakeTransport:
        self.dials.append((self.clock.now(), address, connect_timeout))
        transport = FakeTransport(self, address, len(self.dials))
        self.transports[address].append(transport)
        return transport

    def dial_times(self, address: str) -> list[float]:
        return [t for t, a, _ in self.dials if a == address]

    def drop(self, address: str) -> None:
        """The ready connection to ``address`` is lost."""
        self.transports[address][-1].drop()


class StateLog:
    """A balancer listener that keeps every state change."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.changes: list[tuple[float, str, ConnectivityState, str | None]] = []
        self.keepalive: list[str] = []

    def state_changed(self, connection: Connection, error: str | None) -> None:
        self.changes.append((self.clock.now(), connection.address, connection.state, error))

    def keepalive_closed(self, connection: Connection) -> None:
        self.keepalive.append(connection.address)

    def states(self, address: str) -> list[ConnectivityState]:
        return [state for _, a, state, _ in self.changes if a == address]


def make_balancer(
    endpoints: list[str], picker: Picker, clock: FakeClock, network: FakeNetwork, seed: int = 0
) -> tuple[Balancer, StateLog]:
    config = ClientConfig()
    log = StateLog(clock)

    def connect(address: str, events: ConnectionEvents) -> Connection:
        backoff = ConnectionBackoff.of(config, random.Random(f"{seed}/{address}"))
        return Connection(
            address, dial=network.dial, backoff=backoff, clock=clock, events=events, drain=1.0
        )

    return Balancer(endpoints, connect, picker, clock, listener=log), log
