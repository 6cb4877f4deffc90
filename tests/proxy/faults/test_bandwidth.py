"""Bandwidth: bytes spaced out at the rate, on their own and on a link (both loops)."""

from __future__ import annotations

import random
import time

import pytest

from etcdlab.common.timescale import TimeScale
from etcdlab.proxy.faults import UPSTREAM
from etcdlab.proxy.faults.bandwidth import Bandwidth
from etcdlab.proxy.faults.base import Piece, ShapeContext
from etcdlab.proxy.link import Address, ProxyLink
from tests.proxy.links import OVERRIDE, both_loops, event_loop_policy, roundtrip  # noqa: F401

pytestmark = OVERRIDE


def test_bandwidth_spaces_bytes_out() -> None:
    context = ShapeContext(now=0.0, rng=random.Random(1))
    limit = Bandwidth(10)  # 10 KB/s
    first = limit.shape([Piece(10240, 0.0)], context)
    second = limit.shape([Piece(5120, 0.2)], context)
    assert [(p.size, p.release) for p in first] == [(10240, 1.0)]
    assert [(p.size, p.release) for p in second] == [(5120, 1.5)]


@both_loops
async def test_bandwidth_limits_the_rate(echo: Address) -> None:
    async with ProxyLink("raw", echo, http2=False) as link:
        # 40 KB/s, scaled by 0.5 to 80 KB/s: 20 KB takes 0.25 s.
        link.add(Bandwidth(40, direction=UPSTREAM).scaled(TimeScale(0.5)))
        started = time.monotonic()
        assert await roundtrip(link.address, b"z" * 20480) == b"z" * 20480
        # uvloop's clock and timers have millisecond resolution.
        assert time.monotonic() - started >= 0.25 - 0.002


def test_a_rate_of_zero_names_the_field() -> None:
    with pytest.raises(ValueError, match="rate"):
        Bandwidth(0)
