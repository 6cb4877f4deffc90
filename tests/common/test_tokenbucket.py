"""Go's rate.Limiter semantics: Allow refuses without a token, Reserve goes into debt."""

from __future__ import annotations

import pytest

from etcdlab.common.clock import FakeClock
from etcdlab.common.tokenbucket import TokenBucket


async def test_allow_takes_the_burst_then_one_token_per_interval() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, clock, burst=2)
    assert [bucket.allow() for _ in range(3)] == [True, True, False]
    await clock.advance(0.25)
    assert not bucket.allow()
    await clock.advance(0.25)
    assert bucket.allow() and not bucket.allow()
    await clock.advance(100)
    assert [bucket.allow() for _ in range(3)] == [True, True, False]


async def test_reserve_waits_out_the_debt() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, clock, burst=1)
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)
    await clock.advance(0.3)
    assert bucket.reserve() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("rate", "burst", "field"), [(0, 1, "rate"), (1, 0, "burst")])
def test_bad_parameters_name_the_field(rate: float, burst: int, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TokenBucket(rate, FakeClock(), burst)
