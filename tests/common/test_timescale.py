from __future__ import annotations

import math

import pytest

from etcdlab.common.timescale import TimeScale


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, -math.inf, "ten", None])
def test_a_factor_outside_zero_to_infinity_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^--time-scale must be a positive finite number"):
        TimeScale(bad, "--time-scale")  # type: ignore[arg-type]


def test_scaled_and_unscaled_are_inverse() -> None:
    scale = TimeScale("0.2")
    assert scale.scaled(10.0) == pytest.approx(2.0)
    assert scale.unscaled(scale.scaled(7.5)) == pytest.approx(7.5)
    assert isinstance(scale, float) and scale == 0.2
