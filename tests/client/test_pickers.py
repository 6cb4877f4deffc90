"""The pickers' choices and the balancer's waits, on ``StubConnection``s (stand-ins
for connections whose state the test sets, no sockets) and a FakeClock.

test_balancer.py runs the same balancer over fake networks with real connection
state machines; here each rule of the pickers is checked on its own.
"""

from __future__ import annotations

import asyncio
import random
from typing import cast

import pytest

from etcdlab.client.balancer import Balancer, RoundRobin, Sticky
from etcdlab.client.connection import Connection, ConnectionEvents, ConnectivityState, Transport
from etcdlab.common.clock import FakeClock

ENDPOINTS = ["m0:2379", "m1:2379", "m2:2379"]
READY, IDLE = ConnectivityState.READY, ConnectivityState.IDLE


class StubConnection:
    def __init__(self, address: str) -> None:
        self.address = address
        self.state = IDLE
        self.last_error: str | None = None
        self.transport: Transport | None = None

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class Stubs:
    def __init__(self, picker: RoundRobin | Sticky) -> None:
        self.clock = FakeClock()
        self.made: dict[str, StubConnection] = {}
        self.balancer = Balancer(ENDPOINTS, self._connect, picker, self.clock)

    def _connect(self, address: str, events: ConnectionEvents) -> Connection:
        self.made[address] = StubConnection(address)
        return cast(Connection, self.made[address])

    def set(self, address: str, state: ConnectivityState, error: str | None = None) -> None:
        stub = self.made[address]
        stub.state, stub.last_error = state, error
        stub.transport = cast(Transport, object()) if state is READY else None
        self.balancer.state_changed(cast(Connection, stub), error)

    async def picks(self, n: int) -> list[str]:
        return [(await self.balancer.pick(0)).address for _ in range(n)]


async def test_sticky_pins_the_first_ready_endpoint_and_keeps_it_while_ready() -> None:
    stubs = Stubs(Sticky(ENDPOINTS))
    assert stubs.balancer.ready == []
    stubs.set("m2:2379", READY)
    stubs.set("m0:2379", READY)  # m2 connected first: it stays pinned
    assert await stubs.picks(3) == ["m2:2379"] * 3
    stubs.set("m1:2379", READY)
    assert await stubs.picks(2) == ["m2:2379"] * 2


async def test_sticky_moves_to_the_next_ready_endpoint_after_the_pinned_one() -> None:
    picker = Sticky(ENDPOINTS)
    stubs = Stubs(picker)
    assert picker.pick() is None  # nothing ready yet
    stubs.set("m0:2379", READY)
    stubs.set("m2:2379", READY)
    assert await stubs.picks(1) == ["m0:2379"]  # both ready at once: endpoint order
    stubs.set("m1:2379", READY)
    stubs.set("m0:2379", IDLE)
    assert await stubs.picks(1) == ["m1:2379"]  # after m0 comes m1
    stubs.set("m0:2379", READY)
    stubs.set("m1:2379", IDLE)
    assert await stubs.picks(1) == ["m2:2379"]  # after m1: m2, though m0 is ready too
    stubs.set("m1:2379", READY)
    stubs.set("m2:2379", IDLE)
    assert await stubs.picks(1) == ["m0:2379"]  # wrapping round, past m1
    stubs.set("m0:2379", IDLE)
    stubs.set("m1:2379", IDLE)
    assert picker.pick() is None


def test_sticky_given_several_ready_at_first_takes_the_first_endpoint() -> None:
    picker = Sticky(ENDPOINTS)
    ready = [cast(Connection, StubConnection(a)) for a in ("m0:2379", "m2:2379")]
    picker.update(ready)
    assert picker.pick() is ready[0]


async def test_round_robin_rotates_from_a_seeded_start() -> None:
    picks = []
    for _ in range(2):
        stubs = Stubs(RoundRobin(random.Random(3)))
        for address in ENDPOINTS:
            stubs.set(address, READY)
        picks.append(await stubs.picks(6))
    assert picks[0] == picks[1]
    assert picks[0][:3] == picks[0][3:] and sorted(picks[0][:3]) == ENDPOINTS


def test_an_unknown_endpoint_is_named() -> None:
    with pytest.raises(ValueError, match=r"^unknown endpoint 'm9:2379'$"):
        Stubs(RoundRobin(random.Random(1))).balancer.connection("m9:2379")


def test_why_not_ready_gives_each_state_and_last_error() -> None:
    stubs = Stubs(RoundRobin(random.Random(1)))
    stubs.set("m0:2379", ConnectivityState.TRANSIENT_FAILURE, "connection refused")
    stubs.set("m1:2379", READY)
    assert stubs.balancer.why_not_ready() == (
        f"m0:2379 {ConnectivityState.TRANSIENT_FAILURE}: connection refused; "
        f"m1:2379 {READY}; m2:2379 {IDLE}"
    )


async def test_waits_end_at_their_timeout_or_when_a_connection_gets_ready() -> None:
    stubs = Stubs(RoundRobin(random.Random(1)))
    m1 = stubs.balancer.connection("m1:2379")
    waiting = asyncio.ensure_future(stubs.balancer.wait_ready(m1, 0.5))
    picking = asyncio.ensure_future(stubs.balancer.pick(0.5))
    await stubs.clock.advance(0.3)
    assert not picking.done()
    stubs.set("m0:2379", READY)
    await stubs.clock.advance(0)
    assert (await picking).address == "m0:2379"
    await stubs.clock.advance(0.2)
    assert waiting.done()
    with pytest.raises(TimeoutError):
        await waiting
